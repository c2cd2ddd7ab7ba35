"""The labelled pool: augmented training windows, their features and what the teachers say.

Labelling a window with both teachers costs far more than training on it, so windows are built
once, labelled once, and kept on disk outside the repository: the student's log-mel frames (the
service's own extractor), each teacher's embedding and class probabilities, the hard label
(1, 0, or UNKNOWN for windows only the teachers can judge) and the clips each window was made
of. One pool, drawn from the held-out-groups split's training clips, serves that split and every
leave-one-source-out fold (their other clips fall on the same side of the split): a fold drops
the windows that touch what it holds out, and its cry teacher (heads.py), trained on what
remains, relabels the rest.

Chunk i of the pool is drawn from `SeedSequence(seed, i)`, so the pool does not depend on the
number of worker processes, and an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pi_monitor.features import FeatureExtractor
from pi_monitor.training.corpus import AudioCache, Clip
from pi_monitor.training.examples import (
    FRONT_END,
    PARTS,
    WINDOW_FRAMES,
    ExampleSampler,
    Mixing,
    window_samples,
)

CHUNK = 256
TeachersListen = Literal["middle", "end"]  # which 0.975 s of a window the teachers label
PREFETCH = 4
FIELDS = {  # name: (shape after the example axis, dtype); features: as many frames as a window
    "features": ((WINDOW_FRAMES, FRONT_END.n_mels), np.float16),
    "yamnet_embedding": ((1024,), np.float16),
    "yamnet_probability": ((521,), np.float16),
    "mn04_embedding": ((384,), np.float16),
    "mn04_logit": ((527,), np.float16),
    "label": ((), np.int8),
    "parts": ((PARTS,), np.int32),
}


@dataclass(frozen=True)
class PoolSpec:
    """Everything that decides a pool's contents."""

    examples: int
    seed: int
    mixing: Mixing = field(default_factory=Mixing)
    hard: tuple[tuple[int, int, bool], ...] = ()  # mined windows: (clip, start, cry over it)
    teachers_listen: TeachersListen = "middle"
    window_frames: int = WINDOW_FRAMES

    def digest(self, clips: Sequence[Clip]) -> str:
        """Names the pool's folder; a drawn pool's name leaves out the empty mined list, mixing
        options that are off (speed change, sounds in turn, runs of one) and teachers listening
        to the middle, so pools built before any of these existed are still found."""
        fields = asdict(self)
        del fields["window_frames"]  # named below, where it always was
        if not self.hard:
            del fields["hard"]
        for option in ("speed", "in_turn", "runs_of_one"):
            if not getattr(self.mixing, option):
                del fields["mixing"][option]
        if self.teachers_listen == "middle":
            del fields["teachers_listen"]
        text = json.dumps(
            [fields, asdict(FRONT_END), self.window_frames, [str(c.file) for c in clips]],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def shapes(window_frames: int) -> dict[str, tuple[int, ...]]:
    """Each field's shape after the example axis, for windows of `window_frames` frames."""
    return {
        name: (window_frames, FRONT_END.n_mels) if name == "features" else shape
        for name, (shape, _) in FIELDS.items()
    }


def teachers_start(listen: TeachersListen, window_frames: int = WINDOW_FRAMES) -> int:
    """The first sample of a window the teachers hear. At a window's end, a cry that began
    inside it is labelled as soon as it is heard, not once it reaches the middle: with windows
    much longer than the teachers' 0.975 s, the middle answers half a window late."""
    from pi_monitor.training.teachers import WINDOW_SAMPLES

    spare = window_samples(frames=window_frames) - WINDOW_SAMPLES
    return spare // 2 if listen == "middle" else spare


class Pool:
    """A built pool, memory-mapped; `clips[parts[i, k]]` made window i (-1: unused slot)."""

    def __init__(self, clip_files: list[str], arrays: dict[str, np.ndarray]) -> None:
        self.clip_files = clip_files
        self.arrays = arrays

    @classmethod
    def open(cls, folder: Path) -> Pool:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in FIELDS}
        return cls(meta["clips"], arrays)

    def join(self, other: Pool) -> Pool:
        """Both pools' windows in one (in memory), e.g. the pool and its mined hard negatives;
        both must be drawn from the same clips."""
        if other.clip_files != self.clip_files:
            raise ValueError("pools drawn from different clips cannot be joined")
        arrays = {k: np.concatenate((self[k], other[k])) for k in FIELDS}
        return Pool(self.clip_files, arrays)

    def extend(self, other: Pool) -> Pool:
        """Both pools' windows in one (in memory), drawn from different clips, e.g. the training
        and the validation groups' pools; `other`'s clips follow this pool's."""
        moved = np.where(other["parts"] >= 0, other["parts"] + len(self.clip_files), -1)
        arrays = {k: np.concatenate((self[k], moved if k == "parts" else other[k])) for k in FIELDS}
        return Pool(self.clip_files + other.clip_files, arrays)

    def __len__(self) -> int:
        return len(self.arrays["label"])

    @property
    def window_frames(self) -> int:
        return int(self.arrays["features"].shape[1])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def usable(self, allowed: Sequence[Clip]) -> np.ndarray:
        """Indices of the windows made only of `allowed` clips (a split's train or val clips):
        a fold drops what it holds out, a permissive split what it may not use."""
        keep = {str(c.file) for c in allowed}
        banned = [i for i, f in enumerate(self.clip_files) if f not in keep]
        if not banned:
            return np.arange(len(self))
        return np.flatnonzero(~np.isin(self["parts"], banned).any(axis=1))

    def weights(
        self,
        rows: np.ndarray,
        clips: Sequence[Clip],
        by_family: Mapping[str, float],
        default: float = 1.0,
    ) -> np.ndarray:
        """Each row's weight: the largest of its clips' family weights (`default` for the rest),
        so a family the student finds hard (cats meowing like babies) counts for more."""
        family = {str(c.file): c.family for c in clips}
        per_clip = [by_family.get(family.get(f, ""), default) for f in self.clip_files]
        table = np.array([*per_clip, default], np.float32)  # parts == -1 picks the last
        return table[self["parts"][rows]].max(axis=1)


def build(
    clips: Sequence[Clip],
    cache: AudioCache,
    spec: PoolSpec,
    folder: Path,
    teachers: Path,
    workers: int = 1,
    progress: bool = True,
) -> Pool:
    """Build (or finish building) the pool of `spec` over `clips` in `folder`."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    chunks = -(-spec.examples // CHUNK)
    meta = {"spec": asdict(spec), "clips": [str(c.file) for c in clips]}
    (folder / "meta.json").write_text(json.dumps(meta, default=str))
    arrays = {
        name: _open(folder / f"{name}.npy", (chunks * CHUNK, *shape), FIELDS[name][1])
        for name, shape in shapes(spec.window_frames).items()
    }
    done_path = folder / "done.npy"
    done = np.load(done_path) if done_path.is_file() else np.zeros(chunks, bool)
    todo = [int(i) for i in np.flatnonzero(~done)]
    bar = tqdm(
        total=chunks, initial=chunks - len(todo), desc="labelling pool", disable=not progress
    )
    for index, chunk in _chunks(clips, cache, spec, teachers, todo, workers):
        rows = slice(index * CHUNK, (index + 1) * CHUNK)
        for name, values in chunk.items():
            arrays[name][rows] = values
        done[index] = True
        if bar.n % 16 == 0 or bar.n + 1 == chunks:
            for a in arrays.values():
                a.flush()
            np.save(done_path, done)
        bar.update()
    for a in arrays.values():
        a.flush()
    np.save(done_path, done)
    return Pool.open(folder)


def _open(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if path.is_file():
        return np.load(path, mmap_mode="r+")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


_WORKER: _Labeller | None = None


class _Labeller:
    """What a worker process holds: the sampler, the extractor and both teachers."""

    def __init__(
        self, clips: Sequence[Clip], cache: AudioCache, spec: PoolSpec, teachers: Path
    ) -> None:
        from pi_monitor.training.teachers import Teachers

        self.clips = list(clips)
        self.index = {c.file: i for i, c in enumerate(clips)}
        self.sampler = ExampleSampler(clips, cache, spec.mixing, spec.window_frames)
        self.extractor = FeatureExtractor(FRONT_END)
        self.teachers = Teachers(teachers)
        self.seed = spec.seed
        self.hard = spec.hard
        self.listen_from = teachers_start(spec.teachers_listen, spec.window_frames)

    def chunk(self, index: int) -> tuple[int, dict[str, np.ndarray]]:
        from pi_monitor.training.teachers import WINDOW_SAMPLES

        rng = np.random.default_rng([self.seed, index])
        if self.hard:  # the last chunk wraps around to the first mined windows
            mined = [
                self.hard[k % len(self.hard)] for k in range(index * CHUNK, (index + 1) * CHUNK)
            ]
            examples = [self.sampler.hard(rng, self.clips[c], s, cry) for c, s, cry in mined]
        else:
            cries = rng.permutation(np.arange(CHUNK) % 2 == 1)
            examples = [self.sampler.example(rng, bool(cry)) for cry in cries]
        audio = np.stack([e.audio for e in examples])
        heard = audio[:, self.listen_from : self.listen_from + WINDOW_SAMPLES]
        labels = self.teachers.label(heard)
        parts = np.full((CHUNK, PARTS), -1, np.int32)
        for row, e in enumerate(examples):
            parts[row, : len(e.parts)] = [self.index[c.file] for c in e.parts]
        values = {
            "features": np.stack([self.extractor.batch(x) for x in audio]),
            "yamnet_embedding": labels.yamnet.embeddings,
            "yamnet_probability": labels.yamnet.probabilities,
            "mn04_embedding": labels.mn04.embeddings,
            "mn04_logit": labels.mn04.logits,
            "label": np.array([e.label for e in examples]),
            "parts": parts,
        }
        return index, {k: v.astype(FIELDS[k][1]) for k, v in values.items()}


def _init(clips: Sequence[Clip], cache: AudioCache, spec: PoolSpec, teachers: Path) -> None:
    import torch

    torch.set_num_threads(1)
    global _WORKER
    _WORKER = _Labeller(clips, cache, spec, teachers)


def _work(index: int) -> tuple[int, dict[str, np.ndarray]]:
    assert _WORKER is not None
    return _WORKER.chunk(index)


def _chunks(
    clips: Sequence[Clip],
    cache: AudioCache,
    spec: PoolSpec,
    teachers: Path,
    todo: list[int],
    workers: int,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Labelled chunks in any order; at most PREFETCH per worker wait in memory."""
    if workers <= 0:
        _init(clips, cache, spec, teachers)
        yield from map(_work, todo)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, _init, (clips, cache, spec, teachers)) as pool:
        pending = []
        for index in todo:
            pending.append(pool.apply_async(_work, (index,)))
            if len(pending) >= PREFETCH * workers:
                yield pending.pop(0).get()
        for job in pending:
            yield job.get()
