"""Training windows: augmented audio through the service's own `FeatureExtractor`.

Each example is one classifier window of audio (about 1 s), built from corpus clips and
generated noise, then turned into log-mel frames by the very class the service runs, so the
model and its front end cannot disagree. Cry sources are drawn uniformly before files, so a source
with thousands of short files (spoken digits) does not crowd out the rest. Negatives are drawn
uniformly by family (animals, music, noise, speech, other), then by file within it, so the many
cat and dog recordings, the hardest negatives, are not diluted by small sources of the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pi_monitor.features import FeatureExtractor, FeatureParams
from pi_monitor.training import augment
from pi_monitor.training.corpus import AudioCache, Clip

FRONT_END = FeatureParams(
    sample_rate=8000,
    n_fft=256,
    hop_length=160,
    win_length=200,
    n_mels=40,
    fmin=50.0,
    fmax=3800.0,
    log_offset=1e-6,
)
WINDOW_FRAMES = 40
WINDOW_HOP_FRAMES = 13


def window_samples(params: FeatureParams = FRONT_END, frames: int = WINDOW_FRAMES) -> int:
    """Samples that make exactly `frames` frames (center=False framing)."""
    return (frames - 1) * params.hop_length + params.n_fft


def pad_to(x: np.ndarray, n: int) -> np.ndarray:
    """Centre a clip shorter than `n` samples in silence, so it makes at least one window."""
    if len(x) >= n:
        return x
    left = (n - len(x)) // 2
    return np.pad(x, (left, n - len(x) - left)).astype(np.float32)


def clip_windows(x: np.ndarray, params: FeatureParams = FRONT_END) -> np.ndarray:
    """All windows of a clip at the service's window hop, shape (n, frames, n_mels)."""
    frames = FeatureExtractor(params).batch(pad_to(x, window_samples(params)))
    starts = range(0, len(frames) - WINDOW_FRAMES + 1, WINDOW_HOP_FRAMES)
    return np.stack([frames[s : s + WINDOW_FRAMES] for s in starts])


@dataclass(frozen=True)
class Mixing:
    """Probabilities and ranges of the augmentation recipe."""

    snr_db: tuple[float, float] = (-6.0, 6.0)
    cry_background: float = 0.7
    generated_background: float = 0.4
    negative_plus_noise: float = 0.3
    noise_only: float = 0.12
    tones: float = 0.12
    two_negatives: float = 0.15
    reverb: float = 0.3
    band_limit: float = 0.35
    spec_mask: float = 0.5


def _by_source(clips: Sequence[Clip]) -> list[list[Clip]]:
    groups: dict[tuple[str, str], list[Clip]] = {}
    for c in clips:
        groups.setdefault((c.family, c.source), []).append(c)
    return [groups[k] for k in sorted(groups)]


class ExampleSampler:
    """Draws labelled, augmented windows from a set of training clips."""

    def __init__(self, clips: Sequence[Clip], cache: AudioCache, mixing: Mixing = Mixing()):
        self.cache = cache
        self.mixing = mixing
        self.n = window_samples()
        self.sr = FRONT_END.sample_rate
        self._extractor = FeatureExtractor(FRONT_END)
        self._cries = _by_source([c for c in clips if c.is_cry])
        families: dict[str, list[Clip]] = {}
        for c in clips:
            if not c.is_cry:
                families.setdefault(c.family, []).append(c)
        self._negatives = [[families[f]] for f in sorted(families)]
        if not self._cries or not self._negatives:
            raise ValueError("training clips need both cries and non-cries")
        self._active: dict[str, np.ndarray] = {}

    def _segment(self, rng: np.random.Generator, clip: Clip, active: bool) -> np.ndarray:
        x = self.cache.audio(clip)
        if len(x) <= self.n:
            start = int(rng.integers(0, self.n - len(x) + 1))
            return np.pad(x, (start, self.n - len(x) - start)).astype(np.float32)
        if not active:
            start = int(rng.integers(0, len(x) - self.n + 1))
            return x[start : start + self.n]
        starts = self._active.get(clip.path)
        if starts is None:
            starts = self._active[clip.path] = _active_starts(x, self.n)
        start = int(rng.choice(starts))
        return x[start : start + self.n]

    def _pick(self, rng: np.random.Generator, sources: list[list[Clip]]) -> Clip:
        files = sources[rng.integers(len(sources))]
        return files[rng.integers(len(files))]

    def _negative(self, rng: np.random.Generator) -> np.ndarray:
        family = self._negatives[rng.integers(len(self._negatives))]
        return self._segment(rng, self._pick(rng, family), active=rng.random() < 0.5)

    def _noise(self, rng: np.random.Generator) -> np.ndarray:
        return augment.coloured_noise(rng, self.n, self.sr)

    def _tones(self, rng: np.random.Generator) -> np.ndarray:
        return augment.tonal_sound(rng, self.n, self.sr)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        u = rng.random()
        if u < self.mixing.generated_background:
            return self._noise(rng)
        if u < self.mixing.generated_background + self.mixing.tones:
            return self._tones(rng)
        return self._negative(rng)

    def audio(self, rng: np.random.Generator, cry: bool) -> np.ndarray:
        """One augmented window of audio with the given label."""
        m = self.mixing
        snr = lambda: rng.uniform(*m.snr_db)  # noqa: E731
        if cry:
            x = self._segment(rng, self._pick(rng, self._cries), active=True)
            if rng.random() < m.cry_background:
                x = augment.mix(x, self._background(rng), snr())
        else:
            u = rng.random()
            if u < m.noise_only:
                x = self._noise(rng)
            elif u < m.noise_only + m.tones:
                x = augment.mix(self._tones(rng), self._noise(rng), rng.uniform(0, 30))
            elif u < m.noise_only + m.tones + m.negative_plus_noise:
                x = augment.mix(self._negative(rng), self._noise(rng), snr())
            elif u < m.noise_only + m.tones + m.negative_plus_noise + m.two_negatives:
                x = augment.mix(self._negative(rng), self._negative(rng), snr())
            else:
                x = self._negative(rng)
        if rng.random() < m.reverb:
            x = augment.reverberate(rng, x, self.sr)
        if rng.random() < m.band_limit:
            x = augment.band_limit(rng, x, self.sr)
        return augment.set_level(rng, x)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """`size` windows, half cries, as (features (size, frames, n_mels), labels (size,))."""
        labels = (np.arange(size) % 2).astype(np.float32)
        rng.shuffle(labels)
        feats = np.stack([self._extractor.batch(self.audio(rng, bool(y))) for y in labels])
        for i in np.flatnonzero(rng.random(size) < self.mixing.spec_mask):
            _mask(rng, feats[i])
        return feats.astype(np.float32), labels


def _mask(rng: np.random.Generator, frames: np.ndarray) -> None:
    """SpecAugment: blank a few mel bands and frames, so no single band or instant decides."""
    fill = frames.mean()
    width = int(rng.integers(0, 7))
    low = int(rng.integers(0, frames.shape[1] - width + 1))
    frames[:, low : low + width] = fill
    span = int(rng.integers(0, 7))
    first = int(rng.integers(0, frames.shape[0] - span + 1))
    frames[first : first + span] = fill


def _active_starts(x: np.ndarray, n: int, hop: int = 400) -> np.ndarray:
    """Window starts whose energy is at least a third of the clip's loudest window.

    Cry clips contain breaths and pauses; a window of silence labelled 'cry' teaches nothing.
    Half the negatives are drawn this way too, so a cat's meow is seen, not the quiet around it.
    """
    starts = np.arange(0, len(x) - n + 1, hop)
    cumulative = np.concatenate(([0.0], np.cumsum(np.square(x, dtype=np.float64))))
    energy = cumulative[starts + n] - cumulative[starts]
    return starts[energy >= energy.max() / 3]
