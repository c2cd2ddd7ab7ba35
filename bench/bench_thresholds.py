"""Where the detector's thresholds stop meaning anything: the shipped model's window scores on a
seeded sample of the corpus, as the share of windows at or above each threshold, for cry and
non-cry clips and per non-cry category (quiet rooms and white noise set the off-threshold's floor).

    .venv/bin/python bench/bench_thresholds.py [--model pi_monitor/models/cry.onnx] [--clips 150]

The bounds in `pi_monitor/config.py` (on-threshold 0.5 to 0.99, off-threshold from 0.2) cite
these figures. Needs ../shared/cry-data.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np

from pi_monitor.audio import FileSource
from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DEFAULT_MODEL, DetectorSettings
from pi_monitor.events import Score
from pi_monitor.pipeline import Pipeline

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "cry-data"
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def window_scores(classifier: CryClassifier, path: Path) -> list[float]:
    pipeline = Pipeline(classifier, DetectorSettings())
    events = []
    for block in FileSource(path, classifier.info.features.sample_rate).blocks():
        events += pipeline.process(block)
    events += pipeline.finish()
    return [e.score for e in events if isinstance(e, Score)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--clips", type=int, default=150, help="clips per label")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    classifier = CryClassifier(args.model)
    rows = list(csv.DictReader((args.corpus / "manifest.csv").open()))
    rng = random.Random(args.seed)
    print("label / category: windows, share of windows with score >= threshold")
    print(" " * 36 + "".join(f"{t:>7}" for t in THRESHOLDS))
    for label in ("cry", "not_cry"):
        clips = [r for r in rows if r["label"] == label]
        rng.shuffle(clips)
        by_category: dict[str, list[float]] = {}
        for clip in clips[: args.clips]:
            scores = window_scores(classifier, args.corpus / clip["path"])
            by_category.setdefault(clip["category"], []).extend(scores)
        groups = {label: [s for v in by_category.values() for s in v]}
        if label == "not_cry":
            groups |= {f"  {c}": v for c, v in sorted(by_category.items()) if v}
        for name, scores in groups.items():
            x = np.array(scores)
            shares = "".join(f"{(x >= t).mean():7.3f}" for t in THRESHOLDS)
            print(f"{name:<28}{len(x):>8}{shares}")


if __name__ == "__main__":
    main()
