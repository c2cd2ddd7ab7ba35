"""Hard negatives: the windows of the training split's non-cries that a trained student still
calls a cry.

The labelled pool draws negatives at random, so a meow or a sung note that sounds like a cry is
a small share of them: the first-stage student scored 2,530 windows of its own training
non-cries at 0.5 or more, 1,043 of them in 28 minutes of cats. Mining keeps the peaks among
those windows; the second stage trains on each (shifted, sometimes under noise) and on a cry
mixed over it, so that what sounds like a cat is learnt as "not a cry" without learning that
a cry over a cat is not one either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pi_monitor.classifier import sigmoid
from pi_monitor.config import ON_THRESHOLD_RANGE
from pi_monitor.training.corpus import AudioCache, Clip
from pi_monitor.training.examples import SHIFT, window_samples
from pi_monitor.training.model import CryNet
from pi_monitor.training.train import clip_logits

Window = tuple[int, int, bool]  # (clip index in the pool's clips, start sample, cry over it)


@dataclass(frozen=True)
class Mining:
    """Which windows count as hard and how many examples each one makes."""

    threshold: float = ON_THRESHOLD_RANGE[0]  # the lowest on-threshold the student is given
    spacing: int = 4  # hops between two windows kept from one clip (about a second)
    negatives: int = 3  # variants of each mined window, labelled "not a cry"
    cries: int = 1  # cries mixed over each, labelled "cry"


def peaks(scores: np.ndarray, threshold: float, spacing: int) -> np.ndarray:
    """Windows scoring at least `threshold`, highest first, none within `spacing` of a kept
    one: overlapping windows of one meow are one hard negative, not ten."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < threshold:
            break
        if all(abs(int(i) - k) >= spacing for k in kept):
            kept.append(int(i))
    return np.array(sorted(kept), int)


def mine(
    model: CryNet,
    clips: Sequence[Clip],
    pool_clips: Sequence[str],
    cache: AudioCache,
    mining: Mining = Mining(),
) -> tuple[Window, ...]:
    """The hard windows of `clips`' non-cries, as examples to add to a pool of `pool_clips`."""
    index = {f: i for i, f in enumerate(pool_clips)}
    windows: list[Window] = []
    for clip in clips:
        if clip.is_cry:
            continue
        audio = cache.audio(clip)
        scores = sigmoid(clip_logits(model, audio))
        for k in peaks(scores, mining.threshold, mining.spacing):
            start = int(k) * SHIFT if len(audio) > window_samples(frames=model.window_frames) else 0
            c = index[str(clip.file)]
            windows += [(c, start, True)] * mining.cries + [(c, start, False)] * mining.negatives
    return tuple(windows)
