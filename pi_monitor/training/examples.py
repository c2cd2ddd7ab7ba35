"""Training examples: one classifier window of augmented audio, its label and where it came from.

An example is built from corpus and transfer clips and generated noise, then turned into log-mel
frames by the very class the service runs, so the model and its front end cannot disagree. Cry
sources are drawn uniformly before files, so one large source does not crowd out the rest.
Negatives are drawn uniformly by family (animals, music, singing, noise, speech, other), then
by source, then by file, so a family's many small files do not dilute its hard sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pi_monitor.features import FeatureExtractor, FeatureParams
from pi_monitor.training import augment
from pi_monitor.training.corpus import SAMPLE_RATE, AudioCache, Clip

FRONT_END = FeatureParams(
    sample_rate=SAMPLE_RATE,
    n_fft=512,
    hop_length=320,
    win_length=400,
    n_mels=64,
    fmin=50.0,
    fmax=4000.0,
    log_offset=1e-6,
)
WINDOW_FRAMES = 53  # the shipped student's receptive field, 1.07 s (`--window-frames` for others)
WINDOW_HOP_FRAMES = 12  # its stride in frames: a score every 0.24 s
SHIFT = WINDOW_HOP_FRAMES * FRONT_END.hop_length  # samples a mined window may move: one hop

SPEED_RANGE = (0.89, 1.12)  # ±2 semitones, speed and pitch together, as a turntable
UNKNOWN = -1  # label of an example whose truth only the teachers can tell
PARTS = 3  # clips one example may be built from


def window_samples(params: FeatureParams = FRONT_END, frames: int = WINDOW_FRAMES) -> int:
    """Samples that make exactly `frames` frames (center=False framing)."""
    return (frames - 1) * params.hop_length + params.n_fft


def pad_to(x: np.ndarray, n: int) -> np.ndarray:
    """Centre a clip shorter than `n` samples in silence, so it makes at least one window."""
    if len(x) >= n:
        return x
    left = (n - len(x)) // 2
    return np.pad(x, (left, n - len(x) - left)).astype(np.float32)


@dataclass(frozen=True)
class Mixing:
    """Probabilities and ranges of the augmentation recipe."""

    snr_db: tuple[float, float] = (-6.0, 6.0)
    cry_background: float = 0.7
    partial_cry: float = 0.12
    generated_background: float = 0.3
    negative_plus_noise: float = 0.25
    noise_only: float = 0.08
    tones: float = 0.08
    two_negatives: float = 0.15
    reverb: float = 0.3
    band_limit: float = 0.35
    speed: float = 0.0  # share of clip segments played at another speed (SPEED_RANGE)
    in_turn: float = 0.0  # share of non-cry windows made of two negatives one after the other
    runs_of_one: float = 0.0  # share of those whose second sound is from the first's group


@dataclass(frozen=True)
class Example:
    """One window of audio, its label (1, 0 or UNKNOWN) and the clips it was built from."""

    audio: np.ndarray
    label: int
    parts: tuple[Clip, ...]


def _by_source(clips: Sequence[Clip]) -> list[list[Clip]]:
    groups: dict[str, list[Clip]] = {}
    for c in clips:
        groups.setdefault(c.source, []).append(c)
    return [groups[k] for k in sorted(groups)]


class ExampleSampler:
    """Draws labelled, augmented windows of audio from a set of training clips."""

    def __init__(
        self,
        clips: Sequence[Clip],
        cache: AudioCache,
        mixing: Mixing = Mixing(),
        frames: int = WINDOW_FRAMES,
    ) -> None:
        self.cache = cache
        self.mixing = mixing
        self.n = window_samples(frames=frames)
        self.sr = FRONT_END.sample_rate
        self._cries = _by_source([c for c in clips if c.is_cry])
        families: dict[str, list[Clip]] = {}
        self._groups: dict[str, list[Clip]] = {}
        for c in clips:
            if not c.is_cry:
                families.setdefault(c.family, []).append(c)
                self._groups.setdefault(c.group, []).append(c)
        self._negatives = [_by_source(families[f]) for f in sorted(families)]
        if not self._cries or not self._negatives:
            raise ValueError("training clips need both cries and non-cries")
        self._active: dict[Path, np.ndarray] = {}

    def _segment(self, rng: np.random.Generator, clip: Clip, active: bool) -> np.ndarray:
        """A window's worth of a clip; sometimes played faster or slower, so that a few dozen
        cats and babies sound like more (no random draw when `speed` is 0: pools stay as built)."""
        if self.mixing.speed and rng.random() < self.mixing.speed:
            n = round(self.n * rng.uniform(*SPEED_RANGE))
            return augment.change_speed(self._cut(rng, clip, active, n), self.n)
        return self._cut(rng, clip, active, self.n)

    def _cut(self, rng: np.random.Generator, clip: Clip, active: bool, n: int) -> np.ndarray:
        x = self.cache.audio(clip)
        if len(x) <= n:
            start = int(rng.integers(0, n - len(x) + 1))
            return np.pad(x, (start, n - len(x) - start)).astype(np.float32)
        if not active or len(x) <= self.n:  # a sped-up cut of a clip shorter than a window
            start = int(rng.integers(0, len(x) - n + 1))
            return x[start : start + n]
        starts = self._active.get(clip.file)
        if starts is None:
            starts = self._active[clip.file] = _active_starts(x, self.n)
        start = min(int(rng.choice(starts)), len(x) - n)
        return x[start : start + n]

    def _pick(self, rng: np.random.Generator, sources: list[list[Clip]]) -> Clip:
        files = sources[rng.integers(len(sources))]
        return files[rng.integers(len(files))]

    def _negative(self, rng: np.random.Generator, parts: list[Clip]) -> np.ndarray:
        family = self._negatives[rng.integers(len(self._negatives))]
        return self._play(rng, self._pick(rng, family), parts)

    def _play(self, rng: np.random.Generator, clip: Clip, parts: list[Clip]) -> np.ndarray:
        parts.append(clip)
        return self._segment(rng, clip, active=rng.random() < 0.5)

    def _background(self, rng: np.random.Generator, parts: list[Clip]) -> np.ndarray:
        u = rng.random()
        if u < self.mixing.generated_background:
            return augment.coloured_noise(rng, self.n, self.sr)
        if u < self.mixing.generated_background + self.mixing.tones:
            return augment.tonal_sound(rng, self.n, self.sr)
        return self._negative(rng, parts)

    def _cry(self, rng: np.random.Generator, parts: list[Clip]) -> tuple[np.ndarray, int]:
        """A cry window; a partial one (crying begins inside it) is left for the teachers."""
        clip = self._pick(rng, self._cries)
        parts.append(clip)
        x = self._segment(rng, clip, active=True)
        m = self.mixing
        if rng.random() < m.partial_cry:
            silent = int(rng.uniform(0.3, 0.9) * self.n)
            x = np.concatenate((np.zeros(silent, np.float32), x[: self.n - silent]))
            return augment.mix(x, self._background(rng, parts), rng.uniform(*m.snr_db)), UNKNOWN
        if rng.random() < m.cry_background:
            x = augment.mix(x, self._background(rng, parts), rng.uniform(*m.snr_db))
        return x, 1

    def _in_turn(self, rng: np.random.Generator, parts: list[Clip]) -> np.ndarray:
        """One sound's end, then another's start, each at its recorded level, as in a room and
        in the evaluation's streams: a window longer than most short clips otherwise never hears
        one sound give way to the next. With `runs_of_one` the next is from the same group (one
        cat's meows, one speaker's words), as a run of meows is heard in a room."""
        cut = int(rng.uniform(0.2, 0.8) * self.n)
        first = self._negative(rng, parts)
        if self.mixing.runs_of_one and rng.random() < self.mixing.runs_of_one:
            group = self._groups[parts[-1].group]
            second = self._play(rng, group[rng.integers(len(group))], parts)
        else:
            second = self._negative(rng, parts)
        return np.concatenate((first[self.n - cut :], second[: self.n - cut]))

    def _not_cry(self, rng: np.random.Generator, parts: list[Clip]) -> np.ndarray:
        m = self.mixing
        if m.in_turn and rng.random() < m.in_turn:  # no draw when off: pools stay as built
            return self._in_turn(rng, parts)
        snr = lambda: rng.uniform(*m.snr_db)  # noqa: E731
        noise = lambda: augment.coloured_noise(rng, self.n, self.sr)  # noqa: E731
        u = rng.random()
        if u < m.noise_only:
            return noise()
        if u < m.noise_only + m.tones:
            return augment.mix(
                augment.tonal_sound(rng, self.n, self.sr), noise(), rng.uniform(0, 30)
            )
        if u < m.noise_only + m.tones + m.negative_plus_noise:
            return augment.mix(self._negative(rng, parts), noise(), snr())
        if u < m.noise_only + m.tones + m.negative_plus_noise + m.two_negatives:
            return augment.mix(self._negative(rng, parts), self._negative(rng, parts), snr())
        return self._negative(rng, parts)

    def example(self, rng: np.random.Generator, cry: bool) -> Example:
        """One augmented window of audio, a cry or not."""
        parts: list[Clip] = []
        if cry:
            x, label = self._cry(rng, parts)
        else:
            x, label = self._not_cry(rng, parts), 0
        return self._finish(rng, x, label, parts)

    def hard(self, rng: np.random.Generator, clip: Clip, start: int, cry: bool) -> Example:
        """A mined hard negative (mining.py), shifted by up to a hop; or a cry over it, so
        that what sounds like a cat is not learnt as "never a cry"."""
        x = self.cache.audio(clip)
        shift = int(rng.integers(-SHIFT, SHIFT + 1))
        start = min(max(0, start + shift), max(0, len(x) - self.n))
        hard = pad_to(x[start : start + self.n], self.n)
        parts = [clip]
        if cry:
            crying = self._pick(rng, self._cries)
            parts.append(crying)
            x = self._segment(rng, crying, active=True)
            return self._finish(
                rng, augment.mix(x, hard, rng.uniform(*self.mixing.snr_db)), 1, parts
            )
        if rng.random() < self.mixing.negative_plus_noise:
            noise = augment.coloured_noise(rng, self.n, self.sr)
            hard = augment.mix(hard, noise, rng.uniform(*self.mixing.snr_db))
        return self._finish(rng, hard, 0, parts)

    def _finish(
        self, rng: np.random.Generator, x: np.ndarray, label: int, parts: list[Clip]
    ) -> Example:
        """Room, microphone bandwidth and level, for every kind of example alike."""
        if rng.random() < self.mixing.reverb:
            x = augment.reverberate(rng, x, self.sr)
        if rng.random() < self.mixing.band_limit:
            x = augment.band_limit(rng, x, self.sr)
        return Example(augment.set_level(rng, x), label, tuple(parts))


def features(audio: np.ndarray, extractor: FeatureExtractor | None = None) -> np.ndarray:
    """Log-mel frames of one signal through the service's extractor (float32)."""
    return (extractor or FeatureExtractor(FRONT_END)).batch(audio)


def _active_starts(x: np.ndarray, n: int, hop: int = 800) -> np.ndarray:
    """Window starts whose energy is at least a third of the clip's loudest window.

    Cry clips contain breaths and pauses; a window of silence labelled 'cry' teaches nothing.
    Half the negatives are drawn this way too, so a cat's meow is seen, not the quiet around it.
    """
    starts = np.arange(0, len(x) - n + 1, hop)
    cumulative = np.concatenate(([0.0], np.cumsum(np.square(x, dtype=np.float64))))
    energy = cumulative[starts + n] - cumulative[starts]
    return starts[energy >= energy.max() / 3]
