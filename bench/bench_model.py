"""Cost of the cry model alone on one core: multiply-adds, file size, onnxruntime CPU per window
and per audio-second (windows per second from the model's own hop), for one window alone (live)
and for windows in a long run of frames (replay).

    python bench/bench_model.py [--model pi_monitor/models/cry.onnx]

Budget (issue 13): file <= 2 MB; the whole replay at most half of YAMNet's CPU
(bench_pipeline.py).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse
import time
from pathlib import Path

import numpy as np

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DEFAULT_MODEL

from model_cost import model_cost


def cpu_per_window(classifier: CryClassifier, windows: int, calls: int = 200) -> float:
    """CPU seconds per window when `windows` windows come in one run of frames."""
    info = classifier.info
    frames = info.window_frames + (windows - 1) * info.window_hop_frames
    run = np.random.default_rng(0).normal(-8, 3, (frames, info.features.n_mels))
    run = run.astype(np.float32)
    for _ in range(10):
        classifier.predict(run)
    best = float("inf")
    for _ in range(3):  # best of three: the shared host moves single runs
        start = time.process_time()
        for _ in range(calls):
            classifier.predict(run)
        best = min(best, (time.process_time() - start) / (calls * windows))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    cost = model_cost(args.model)
    classifier = CryClassifier(args.model)
    print(f"model: {args.model} ({cost.file_bytes / 1e6:.2f} MB, target <= 2 MB)")
    print(
        f"{cost.macs_per_window / 1e6:.2f} M multiply-adds for one window alone (live), "
        f"{cost.macs_per_hop / 1e6:.2f} M for each further window of a long run (replay); "
        f"x {cost.windows_per_second:.2f} windows/s = {cost.macs_per_second_live / 1e6:.1f} M "
        f"live, {cost.macs_per_second_replay / 1e6:.1f} M replay per audio-second"
    )
    for windows in (1, 8, 40):
        per_window = cpu_per_window(classifier, windows)
        print(
            f"onnxruntime, 1 thread, {windows} windows per call: {per_window * 1e6:.1f} us CPU "
            f"per window = {per_window * cost.windows_per_second * 1e3:.3f} ms per audio-second"
        )


if __name__ == "__main__":
    main()
