"""Generated test audio for the benchmarks: a night's mix of room noise, fan hum, tones and
cry-like bursts, produced block by block so an hour costs no memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def night_blocks(
    rate: int, seconds: float, block_s: float = 1.0, seed: int = 1, cries: bool = True
) -> Iterator[np.ndarray]:
    """Blocks of float32 audio; every minute has 20 s of cry-like bursts among steadier sounds
    (none with `cries=False`: an idle nursery)."""
    rng = np.random.default_rng(seed)
    n_block = int(rate * block_s)
    total = int(rate * seconds)
    done = 0
    while done < total:
        n = min(n_block, total - done)
        t = (done + np.arange(n)) / rate
        x = 0.003 * rng.standard_normal(n)
        x += 0.01 * np.sin(2 * np.pi * 50 * t)  # mains hum of a fan
        minute = t % 60
        crying = cries & (minute > 30) & (minute < 50) & ((minute % 1.3) < 1.0)
        f0 = 450 + 40 * np.sin(2 * np.pi * 5 * t)
        phase = 2 * np.pi * f0 * t
        x += crying * sum(0.1 / k * np.sin(k * phase) for k in range(1, 6))
        yield x.astype(np.float32)
        done += n
