"""CPU of the two AudioSet teachers on one thread, and how far they are from the reference outputs.

    python bench/bench_teachers.py [--teachers DIR] [--minutes 2] [--examples 512]

Long stream: ms CPU per audio-second of `Teachers.stream` (YAMNet and mn04 separately).
Batch labelling: examples per CPU-second of each teacher's `examples` on (batch, 15600) windows,
and of YAMNet the other way, all examples laid three patch hops apart in one long waveform.
Reference: max abs differences against ../shared/teachers/reference_outputs.npz.
Needs the `train` extra and ../shared/teachers (training only; the service never loads these).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from signals import night_blocks

from pi_monitor.training.teachers import (
    DEFAULT_TEACHERS,
    HOP_SAMPLES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    Teachers,
)


def cpu_seconds(work: Callable[[], object], repeats: int = 3) -> float:
    """Best of `repeats` process CPU times: the machine is shared, the minimum is the cost."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def reference_differences(teachers: Teachers, folder: Path) -> list[str]:
    ref = np.load(folder / "reference_outputs.npz")
    rows = []
    for i, name in enumerate(ref["names"]):
        y = teachers.yamnet.windows(ref["yamnet_waveform_16k"][i]).scores
        m = teachers.mn04.windows(ref["mn04_waveform_32k"][i], 32000, window_s=2.0).scores
        with torch.inference_mode():
            logmel = teachers.mn04.front_end(torch.from_numpy(ref["mn04_waveform_32k"][i : i + 1]))
        diffs = {
            "yamnet scores": np.abs(y.probabilities - ref["yamnet_scores"][i]).max(),
            "yamnet embeddings": np.abs(y.embeddings - ref["yamnet_embeddings"][i]).max(),
            "mn04 log-mel": np.abs(logmel.numpy()[0] - ref["mn04_logmel"][i]).max(),
            "mn04 logits": np.abs(m.logits[0] - ref["mn04_logits"][i]).max(),
            "mn04 embedding": np.abs(m.embeddings[0] - ref["mn04_embedding"][i]).max(),
        }
        rows.append(f"  {name}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=Path, default=DEFAULT_TEACHERS)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the long stream")
    parser.add_argument("--examples", type=int, default=512, help="examples per batch run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    teachers = Teachers(args.teachers, threads=1)
    stream = np.concatenate(list(night_blocks(SAMPLE_RATE, 60 * args.minutes)))
    seconds = len(stream) / SAMPLE_RATE
    print(f"one thread; long stream {seconds:.0f} s of generated night audio at 16 kHz")
    for name, teacher in (("YAMNet", teachers.yamnet), ("mn04", teachers.mn04)):
        cpu = cpu_seconds(lambda t=teacher: t.windows(stream))
        print(f"  {name} stream: {cpu / seconds * 1e3:.2f} ms CPU per audio-second")

    starts = np.random.default_rng(0).integers(0, len(stream) - WINDOW_SAMPLES, args.examples)
    waves = np.stack([stream[s : s + WINDOW_SAMPLES] for s in starts])
    print(f"batch labelling, {args.examples} examples of {WINDOW_SAMPLES} samples")
    for name, teacher in (("YAMNet", teachers.yamnet), ("mn04", teachers.mn04)):
        cpu = cpu_seconds(lambda t=teacher: t.examples(waves))
        print(f"  {name} examples(): {args.examples / cpu:.0f} examples per CPU-second")
    cpu = cpu_seconds(lambda: teachers.label(waves))
    print(f"  both, Teachers.label(): {args.examples / cpu:.0f} examples per CPU-second")

    spaced = 3 * HOP_SAMPLES  # the least multiple of the hop that fits a whole example
    laid = np.zeros((args.examples - 1) * spaced + WINDOW_SAMPLES, np.float32)
    for i, w in enumerate(waves):
        laid[i * spaced : i * spaced + WINDOW_SAMPLES] = w
    cpu = cpu_seconds(lambda: teachers.yamnet.windows(laid))
    concatenated = teachers.yamnet.windows(laid).scores.probabilities[::3]
    gap = np.abs(concatenated - teachers.yamnet.examples(waves).probabilities).max()
    print(
        f"  YAMNet one concatenated waveform: {args.examples / cpu:.0f} examples per CPU-second "
        f"(max abs difference from examples(): {gap:.1e})"
    )
    print("max abs difference from the reference outputs")
    print("\n".join(reference_differences(teachers, args.teachers)))


if __name__ == "__main__":
    main()
