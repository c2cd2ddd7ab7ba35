"""Cost of the cry model alone on one core: multiply-adds, file size, onnxruntime CPU per window
and per audio-second (windows per second from the model's own hop).

    python bench/bench_model.py [--model models/cry.onnx]

Budget (issue 6): file <= 500 kB, <= 10 M multiply-adds per audio-second; the whole pipeline
(bench_pipeline.py) <= 0.5 ms CPU per audio-second.
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


def cpu_per_window(classifier: CryClassifier, batch: int, calls: int = 400) -> float:
    info = classifier.info
    shape = (batch, info.window_frames, info.features.n_mels)
    windows = np.random.default_rng(0).normal(-8, 3, shape).astype(np.float32)
    for _ in range(20):
        classifier.predict(windows)
    start = time.process_time()
    for _ in range(calls):
        classifier.predict(windows)
    return (time.process_time() - start) / (calls * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    cost = model_cost(args.model)
    classifier = CryClassifier(args.model)
    print(f"model: {args.model} ({cost.file_bytes / 1000:.1f} kB, target <= 500 kB)")
    print(
        f"{cost.macs_per_window / 1e6:.3f} M multiply-adds per window x "
        f"{cost.windows_per_second:.2f} windows/s = {cost.macs_per_second / 1e6:.2f} M per "
        f"audio-second (target <= 10 M)"
    )
    for batch in (1, 4, 32):
        per_window = cpu_per_window(classifier, batch)
        print(
            f"onnxruntime, 1 thread, batch {batch}: {per_window * 1e6:.1f} us CPU per window = "
            f"{per_window * cost.windows_per_second * 1e3:.3f} ms per audio-second"
        )


if __name__ == "__main__":
    main()
