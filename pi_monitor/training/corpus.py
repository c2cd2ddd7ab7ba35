"""The cry corpus: manifest rows, group splits, negative families, and an audio cache.

Clips come from ../shared/cry-data and from the transfer audio built from Debian packages
(`transfer.py`); both share one manifest format. Splits are by `group` (baby, speaker, cat,
melody) so no recording unit straddles train and test; leave-one-source-out folds hold out a
whole cry source and a whole family of negatives, transfer audio of that family included. The
decoded audio is cached outside the repository (never commit corpus audio).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile

SHARED = Path(__file__).resolve().parents[2].parent / "shared"  # beside the project root
DEFAULT_CORPUS = SHARED / "cry-data"
DEFAULT_TEACHERS = SHARED / "teachers"  # read at training and evaluation time, never shipped
DEFAULT_CACHE = Path(os.environ.get("PI_MONITOR_CACHE", Path.home() / ".cache" / "pi-monitor"))
SAMPLE_RATE = 16000  # the corpus's own rate, the teachers' and the model's

FAMILIES = {
    "animals": (
        "cat",
        "cat_meow_sequence",
        "cat_other_vocalization",
        "dog",
        "animal_other",
        "ambient_animals",
        "bird",
        "misc_birds1",
    ),
    "music": (
        "lullaby_music",
        "music",
        "music_game",
        "music_box",
        "misc_arcade_music",
        "misc_guitar",
        "misc_jazz_guitar",
        "misc_cinematic",
        "whitenoise_appliance_music",
    ),
    "singing": (
        "singing_female",
        "singing_male",
        "singing_unknown_sex",
        "lullaby_sung",
        "children_song",
        "choir",
        "synth_voice",
    ),
    "noise": (
        "whitenoise_appliance",
        "ambient_whitenoise",
        "ambient_noise",
        "ambient_rain",
        "ambient_nature",
        "ambient_places",
        "ambient_things",
        "ambient_transport",
        "ambient_urban",
        "household",
        "misc_rain",
        "silence",
    ),
    "speech": (
        "adult_speech",
        "adult_speech_broadcast",
        "adult_speech_digits",
        "adult_speech_interview_females",
        "adult_speech_interview_males",
        "child_speech",
        "speech",
        "speech_desc",
        "office_speech",
    ),
}
PERMISSIVE_MARKERS = ("MIT", "ODbL", "CC BY", "CC-BY", "CC0", "GPL", "Apache", "Public Domain")


def family_of(category: str, label: str) -> str:
    """Negative family of a category ('cry' for cries, 'other' when no family claims it)."""
    if label == "cry":
        return "cry"
    return next((f for f, cats in FAMILIES.items() if category in cats), "other")


def is_permissive(licence: str) -> bool:
    """True for the licences LICENSES.md calls permissive (no NC, none/unknown, or YouTube)."""
    text = licence.replace("CC-BY", "CC BY")
    lowered = text.lower()
    if "NC" in text or "none" in lowered.split() or "unknown" in lowered or "youtube" in lowered:
        return False
    return any(m in text for m in PERMISSIVE_MARKERS)


@dataclass(frozen=True)
class Clip:
    """One manifest row; `root` is the folder its path is relative to."""

    path: str
    label: str
    category: str
    source: str
    group: str
    licence: str
    orig_sr: int
    duration_s: float
    root: Path = field(default=Path("."), compare=False, repr=False)

    @property
    def is_cry(self) -> bool:
        return self.label == "cry"

    @property
    def family(self) -> str:
        return family_of(self.category, self.label)

    @property
    def file(self) -> Path:
        return self.root / self.path


def read_manifest(root: Path) -> list[Clip]:
    """The clips of a corpus folder (cry-data, or the transfer audio's cache folder)."""
    path = root / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: corpus manifest not found; pass --corpus DIR")
    with path.open(newline="") as f:
        return [
            Clip(
                path=r["path"],
                label=r["label"],
                category=r["category"],
                source=r["source"],
                group=r["group"],
                licence=r["license"],
                orig_sr=int(r["orig_sr"] or 0),
                duration_s=float(r["duration_s"]),
                root=root,
            )
            for r in csv.DictReader(f)
        ]


def _rank(text: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Split:
    """Clips to train on, to validate on (checkpoint, temperature, threshold), to report on."""

    name: str
    train: tuple[Clip, ...]
    val: tuple[Clip, ...]
    test: tuple[Clip, ...]

    @property
    def fingerprint(self) -> str:
        """Names what is kept for this split (teacher, stages), so a changed split, under the
        same name, never reuses what was fitted on the old one."""
        sides = [sorted(c.path for c in side) for side in (self.train, self.val, self.test)]
        return _rank(repr(sides), 0)[:10]


def group_split(
    clips: Sequence[Clip], test_frac: float = 0.15, val_frac: float = 0.15, seed: int = 0
) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Per source, groups ordered by a seeded hash: first test, then val, the rest train.

    A source with fewer than three groups cannot be split by group and goes to train whole.
    """
    train: list[Clip] = []
    val: list[Clip] = []
    test: list[Clip] = []
    by_source: dict[tuple[str, str], list[Clip]] = {}
    for c in clips:
        by_source.setdefault((c.source, c.label), []).append(c)
    for (source, _), members in sorted(by_source.items()):
        groups = sorted({c.group for c in members}, key=lambda g: _rank(source + g, seed))
        if len(groups) < 3:
            train += members
            continue
        n_test = max(1, round(test_frac * len(groups)))
        n_val = max(1, round(val_frac * len(groups)))
        test_groups = set(groups[:n_test])
        val_groups = set(groups[n_test : n_test + n_val])
        for c in members:
            (test if c.group in test_groups else val if c.group in val_groups else train).append(c)
    return train, val, test


def held_out_groups(clips: Sequence[Clip], seed: int = 0) -> Split:
    train, val, test = group_split(clips, seed=seed)
    return Split("held-out-groups", tuple(train), tuple(val), tuple(test))


def _held_out(clip: Clip, cry_source: str, family: str) -> bool:
    return (clip.is_cry and clip.source == cry_source) or (
        not clip.is_cry and clip.family == family
    )


def leave_one_source_out(
    clips: Sequence[Clip], cry_source: str, family: str, seed: int = 0
) -> Split:
    """Train without `cry_source` and negative `family`; test on them plus unseen test groups.

    Every other clip stays on the side `held_out_groups` (same seed) puts it, so one training
    pool serves the split and every fold. Splitting what remains afresh would not: a source
    whose clips span families (sleep sounds: noise and lullabies) loses groups to the held-out
    family, and its other groups are re-ranked onto other sides."""
    known = {c.source for c in clips if c.is_cry}
    if cry_source not in known:
        raise ValueError(f"unknown cry source {cry_source!r}; choose one of {sorted(known)}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")

    def kept(part: tuple[Clip, ...]) -> tuple[Clip, ...]:
        return tuple(c for c in part if not _held_out(c, cry_source, family))

    base = held_out_groups(clips, seed)
    held = tuple(c for c in clips if _held_out(c, cry_source, family))
    return Split(
        f"loso:{cry_source}+{family}", kept(base.train), kept(base.val), held + kept(base.test)
    )


def permissive_only(split: Split) -> Split:
    keep = lambda cs: tuple(c for c in cs if is_permissive(c.licence))  # noqa: E731
    return Split(split.name + ":permissive", keep(split.train), keep(split.val), split.test)


class AudioCache:
    """All clips' audio at one rate, decoded once into one .npy file outside the repo."""

    def __init__(self, clips: Sequence[Clip], sample_rate: int, cache: Path) -> None:
        self.sample_rate = sample_rate
        names = "".join(str(c.file) for c in clips)
        digest = hashlib.sha1(names.encode()).hexdigest()[:10]
        base = cache / f"audio-{sample_rate}-{digest}"
        data_path, index_path = base.with_suffix(".npy"), base.with_suffix(".idx.npy")
        if not data_path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            _build_cache(clips, sample_rate, data_path, index_path)
        self._data = np.load(data_path, mmap_mode="r")
        offsets = np.load(index_path)
        self._where = {c.file: (offsets[i], offsets[i + 1]) for i, c in enumerate(clips)}

    def audio(self, clip: Clip) -> np.ndarray:
        """float32 samples of a clip at the cache rate."""
        a, b = self._where[clip.file]
        return np.asarray(self._data[a:b], dtype=np.float32) / 32768.0


def load_resampled(path: Path, sample_rate: int) -> np.ndarray:
    """Decode a file to float32 mono at `sample_rate` (polyphase resampling)."""
    audio, sr = soundfile.read(path, dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), sr, sample_rate)


def resample(audio: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    """float32 `audio` from `sr` to `sample_rate` (polyphase, so low-passed first)."""
    if sr != sample_rate:
        g = np.gcd(sr, sample_rate)
        audio = scipy.signal.resample_poly(audio, sample_rate // g, sr // g)
    return audio.astype(np.float32, copy=False)


def _build_cache(
    clips: Iterable[Clip], sample_rate: int, data_path: Path, index_path: Path
) -> None:
    from tqdm import tqdm

    pieces, offsets = [], [0]
    for c in tqdm(list(clips), desc=f"decoding corpus at {sample_rate} Hz", unit="file"):
        x = load_resampled(c.file, sample_rate)
        pieces.append(np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16))
        offsets.append(offsets[-1] + len(x))
    tmp = data_path.with_suffix(".tmp.npy")
    np.save(tmp, np.concatenate(pieces))
    np.save(index_path, np.asarray(offsets, dtype=np.int64))
    tmp.rename(data_path)
