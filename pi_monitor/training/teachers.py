"""The two AudioSet teachers, YAMNet and mn04, for labelling training examples and streams.

Training and evaluation only: the weights are read at run time from ../shared/teachers (or a
folder given on the command line) and never enter the repository, the wheel or the service; no
module outside pi_monitor/training imports this one.

Both teachers see the same windows: 0.975 s of 16 kHz audio (15,600 samples, exactly one YAMNet
patch) every 0.48 s (YAMNet's own patch hop). mn04 gets the same window upsampled to 32 kHz, so
its scores line up with YAMNet's row for row. A stream's last window is zero-padded at the end to
full length, as YAMNet pads its own input; audio shorter than one window is padded likewise.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import scipy.special
import torch

from pi_monitor.training import mn04
from pi_monitor.training.corpus import DEFAULT_TEACHERS

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 15600  # one YAMNet patch: 96 frames of 25 ms at a 10 ms hop
HOP_SAMPLES = 7680  # YAMNet's patch hop, 0.48 s
WINDOW_S = WINDOW_SAMPLES / SAMPLE_RATE
HOP_S = HOP_SAMPLES / SAMPLE_RATE
# AudioSet ids of the cry classes: baby cry, crying/sobbing, whimper (indices differ per teacher).
CRY_CLASSES = ("/t/dd00002", "/m/0463cq4", "/m/07qz6j3")

YAMNET_FILE = "yamnet.tflite"
YAMNET_CLASSES = "yamnet_class_map.csv"
MN04_FILE = "mn04_as_mAP_432.pt"
MN04_CLASSES = "mn04_class_labels_indices.csv"


@dataclass(frozen=True)
class Scores:
    """One teacher's outputs, one row per window or example."""

    probabilities: np.ndarray  # (n, classes): sigmoid of the logits
    embeddings: np.ndarray  # (n, dim): YAMNet 1024, mn04 384
    logits: np.ndarray | None  # (n, classes) for mn04; YAMNet's tflite gives probabilities only


@dataclass(frozen=True)
class Windows:
    """A teacher's scores over a long input, with where each window sits in it."""

    start_s: np.ndarray  # (n,) seconds from the start of the input
    centre_s: np.ndarray  # (n,)
    scores: Scores


@dataclass(frozen=True)
class Labels:
    """Both teachers on a batch of one-window training examples."""

    yamnet: Scores
    mn04: Scores


def window_count(n: int, window: int = WINDOW_SAMPLES, hop: int = HOP_SAMPLES) -> int:
    """Windows that cover `n` samples, the last one padded (YAMNet's own rule); at least one."""
    return 1 + -(-max(0, n - window) // hop)


def _padded(wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    """The 1-D input as float32, zero-padded at the end to a whole number of windows."""
    if wave.ndim != 1:
        raise ValueError(f"expected one mono waveform (1-D), got shape {wave.shape}")
    n = (window_count(len(wave), window, hop) - 1) * hop + window
    return np.pad(wave.astype(np.float32, copy=False), (0, n - len(wave)))


def _joined(parts: list[Scores]) -> Scores:
    """Scores of consecutive chunks as one."""
    logits = None if parts[0].logits is None else np.concatenate([p.logits for p in parts])
    return Scores(
        np.concatenate([p.probabilities for p in parts]),
        np.concatenate([p.embeddings for p in parts]),
        logits,
    )


def _placed(count: int, window: int, hop: int, sample_rate: int, scores: Scores) -> Windows:
    """Scores with each window's start and centre, so they can be laid on a stream's clock."""
    start = np.arange(count) * hop / sample_rate
    return Windows(start, start + window / sample_rate / 2, scores)


def _check_examples(waves: np.ndarray) -> np.ndarray:
    """The batch as contiguous float32, or an error naming the shape the batch API takes."""
    if waves.ndim != 2 or waves.shape[1] != WINDOW_SAMPLES:
        raise ValueError(
            f"examples must have shape (batch, {WINDOW_SAMPLES}) at {SAMPLE_RATE} Hz, "
            f"got {waves.shape}; use windows() for audio of other lengths"
        )
    return np.ascontiguousarray(waves, dtype=np.float32)


def _weights(folder: Path, name: str) -> Path:
    """A file of the teacher folder, or an error saying where it was looked for and the fix."""
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: teacher file not found; pass --teachers DIR (the folder holding "
            f"{YAMNET_FILE} and {MN04_FILE}, by default {DEFAULT_TEACHERS})"
        )
    return path


def read_classes(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(AudioSet ids, display names) of a teacher's class map CSV, in output order."""
    with path.open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["index"]))
    return tuple(r["mid"] for r in rows), tuple(r["display_name"] for r in rows)


class _Teacher:
    """What both teachers share: class names and where their cry classes are."""

    def __init__(self, classes: Path) -> None:
        mids, self.class_names = read_classes(classes)
        self.cry_indices = tuple(mids.index(m) for m in CRY_CLASSES)


class YAMNet(_Teacher):
    """YAMNet (TF-Hub lite model) through ai-edge-litert: 521 classes, 1024-d embedding."""

    def __init__(
        self, teachers: Path = DEFAULT_TEACHERS, threads: int = 1, chunk_windows: int = 128
    ) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise ImportError("YAMNet needs ai-edge-litert: pip install -e '.[train]'") from e
        super().__init__(_weights(teachers, YAMNET_CLASSES))
        self._interpreter = Interpreter(str(_weights(teachers, YAMNET_FILE)), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._scores, self._embeddings = outputs["Identity"], outputs["Identity_1"]
        self._length = 0
        self.chunk_windows = chunk_windows  # bounds memory: an hour is one call per chunk

    def _invoke(self, wave: np.ndarray) -> Scores:
        """Every patch of `wave` in one interpreter call (resized only when the length changes).

        YAMNet's own padding rounds in float32 and sometimes adds a patch of padding only at
        whole-patch lengths (38,640 samples make 5 patches, not 4); that patch is dropped.
        """
        if len(wave) != self._length:
            self._interpreter.resize_tensor_input(self._input, [len(wave)])
            self._interpreter.allocate_tensors()
            self._length = len(wave)
        self._interpreter.set_tensor(self._input, wave)
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        n = window_count(len(wave))
        return Scores(get(self._scores)[:n].copy(), get(self._embeddings)[:n].copy(), None)

    def windows(self, wave: np.ndarray) -> Windows:
        """Every 0.975 s patch, 0.48 s apart, of a 16 kHz stream of any length."""
        padded = _padded(wave, WINDOW_SAMPLES, HOP_SAMPLES)
        count = window_count(len(padded))
        parts = []
        for first in range(0, count, self.chunk_windows):
            last = min(first + self.chunk_windows, count) - 1
            parts.append(
                self._invoke(padded[first * HOP_SAMPLES : last * HOP_SAMPLES + WINDOW_SAMPLES])
            )
        return _placed(count, WINDOW_SAMPLES, HOP_SAMPLES, SAMPLE_RATE, _joined(parts))

    def examples(self, waves: np.ndarray) -> Scores:
        """One patch per example, (batch, 15600) at 16 kHz: one call each is the fastest way.

        Laying the examples into one waveform three hops apart (so no patch straddles two)
        gives the same numbers but computes three patches per example: measured 2-3x slower.
        """
        return _joined([self._invoke(x) for x in _check_examples(waves)])


class MN04(_Teacher):
    """EfficientAT mn04_as in torch (see mn04.py): 527 classes, 384-d embedding, at 32 kHz."""

    def __init__(
        self, teachers: Path = DEFAULT_TEACHERS, threads: int = 1, batch: int = 16
    ) -> None:
        super().__init__(_weights(teachers, MN04_CLASSES))
        self.front_end = mn04.LogMel()
        self.network = mn04.load_mn04(_weights(teachers, MN04_FILE))
        self._session = mn04.onnx_session(self.network, threads)
        self.batch = batch  # windows per forward pass: the fastest size here, and bounds memory

    def _forward(self, waves: np.ndarray, sample_rate: int) -> Scores:
        """Windows (n, samples) at 16 or 32 kHz, `batch` at a time: larger batches run slower.

        The front end runs in torch (its thread count is the process's), the network in
        onnxruntime.
        """
        parts = []
        for first in range(0, len(waves), self.batch):
            part = waves[first : first + self.batch]
            part = _upsampled(part) if sample_rate == SAMPLE_RATE else np.array(part, np.float32)
            with torch.inference_mode():
                logmel = self.front_end(torch.from_numpy(part)).numpy()
            logits, embeddings = self._session.run(None, {"logmel": logmel})
            parts.append(Scores(scipy.special.expit(logits), embeddings, logits))
        return _joined(parts)

    def windows(
        self,
        wave: np.ndarray,
        sample_rate: int = SAMPLE_RATE,
        window_s: float = WINDOW_S,
        hop_s: float = HOP_S,
    ) -> Windows:
        """Windows of a 16 or 32 kHz input; by default YAMNet's grid, so rows pair up.

        At 16 kHz each window is cut first and then upsampled on its own, exactly as examples()
        treats a training example, so a stream's scores are the examples' scores.
        """
        if sample_rate not in (SAMPLE_RATE, mn04.SAMPLE_RATE):
            raise ValueError(f"mn04 takes 16000 or 32000 Hz audio, got {sample_rate} Hz")
        window, hop = round(window_s * sample_rate), round(hop_s * sample_rate)
        frames = np.lib.stride_tricks.sliding_window_view(_padded(wave, window, hop), window)
        scores = self._forward(frames[::hop], sample_rate)
        return _placed(len(scores.probabilities), window, hop, sample_rate, scores)

    def examples(self, waves: np.ndarray) -> Scores:
        """One window per example, (batch, 15600) at 16 kHz, upsampled to 32 kHz first."""
        return self._forward(_check_examples(waves), SAMPLE_RATE)


# scipy.signal.resample_poly(x, 2, 1)'s own low-pass: 41 Kaiser taps, a half-band filter.
_HALF_BAND = (2 * scipy.signal.firwin(41, 0.5, window=("kaiser", 5.0))).astype(np.float32)


def _upsampled(waves: np.ndarray) -> np.ndarray:
    """16 -> 32 kHz along the last axis: resample_poly(x, 2, 1) written out, 3x faster here.

    In a half-band filter every other tap is zero (~1e-17) but the centre, so the even outputs
    are the input times that tap and only the odd outputs need the 20 odd taps.
    """
    n = waves.shape[-1]
    padded = np.pad(waves.astype(np.float32, copy=False), [(0, 0)] * (waves.ndim - 1) + [(9, 10)])
    odd = np.zeros_like(padded[..., :n])
    for j, tap in enumerate(_HALF_BAND[-2::-2]):
        odd += tap * padded[..., j : j + n]
    out = np.empty((*waves.shape[:-1], 2 * n), np.float32)
    out[..., 0::2] = _HALF_BAND[20] * waves
    out[..., 1::2] = odd
    return out


@dataclass(frozen=True)
class Timeline:
    """Both teachers over one 16 kHz stream, on the same windows (row i = window i)."""

    start_s: np.ndarray
    centre_s: np.ndarray
    yamnet: Scores
    mn04: Scores


class Teachers:
    """Both teachers loaded once; label examples in batches or score a stream.

    `threads` is for the tflite interpreter and onnxruntime; mn04's front end runs in torch on
    the process's torch threads (torch.set_num_threads).
    """

    def __init__(self, teachers: Path = DEFAULT_TEACHERS, threads: int = 1) -> None:
        self.yamnet = YAMNet(teachers, threads)
        self.mn04 = MN04(teachers, threads)

    def label(self, waves: np.ndarray) -> Labels:
        """Soft targets for training examples of shape (batch, 15600) at 16 kHz."""
        return Labels(self.yamnet.examples(waves), self.mn04.examples(waves))

    def stream(self, wave: np.ndarray) -> Timeline:
        """Scores every 0.48 s of a long 16 kHz stream, to run the teachers as detectors."""
        y, m = self.yamnet.windows(wave), self.mn04.windows(wave)
        return Timeline(y.start_s, y.centre_s, y.scores, m.scores)


def describe(name: str, teachers: Teachers, timeline: Timeline, top: int = 5) -> str:
    """What each teacher hears in one file: its top classes, then the cry classes over time."""
    pairs = (("YAMNet", teachers.yamnet, timeline.yamnet), ("mn04", teachers.mn04, timeline.mn04))
    lines = [f"{name}: {len(timeline.start_s)} windows of {WINDOW_S} s every {HOP_S} s"]
    for label, teacher, scores in pairs:
        mean, peak = scores.probabilities.mean(axis=0), scores.probabilities.max(axis=0)
        best = np.argsort(-mean)[:top]
        ranked = " | ".join(
            f"{teacher.class_names[k]} {mean[k]:.2f} (max {peak[k]:.2f})" for k in best
        )
        lines.append(f"  {label} top classes, mean over windows: {ranked}")
    short = [teachers.yamnet.class_names[k].split(",")[0] for k in teachers.yamnet.cry_indices]
    header = " | ".join(f"{label}: " + " ".join(f"{s:>8}" for s in short) for label, *_ in pairs)
    lines.append(f"  {'centre s':>8} | {header}")
    for i, centre in enumerate(timeline.centre_s):
        cells = (
            " " * (len(label) + 2)
            + " ".join(f"{scores.probabilities[i, k]:>8.3f}" for k in t.cry_indices)
            for label, t, scores in pairs
        )
        lines.append(f"  {centre:>8.2f} | {' | '.join(cells)}")
    return "\n".join(lines)


def listen(files: list[Path], folder: Path = DEFAULT_TEACHERS) -> int:
    """`python -m pi_monitor.training teachers`: print what the teachers hear in audio files."""
    from pi_monitor.training.corpus import load_resampled

    try:
        teachers = Teachers(folder)
    except (FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in files:
        try:
            wave = load_resampled(path, SAMPLE_RATE)
        except (OSError, RuntimeError) as e:
            print(f"error: {path}: cannot read audio ({e})", file=sys.stderr)
            return 2
        print(
            describe(f"{path} ({len(wave) / SAMPLE_RATE:.1f} s)", teachers, teachers.stream(wave))
        )
    return 0
