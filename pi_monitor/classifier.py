"""The ONNX cry classifier and the front end it carries in its metadata.

The model is convolutional in time: it takes a run of log-mel frames `(batch, frames, n_mels)`
and returns one cry logit per complete window in it, `(batch, positions)`, window j covering
frames `[j * window_hop_frames, j * window_hop_frames + window_frames)` (temperature scaling is
inside the graph); the score is the logit's sigmoid. A long run costs far less than its windows
one by one, because overlapping windows share their frames' computation. Its `metadata_props`
hold the feature parameters, so a model and its features cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pi_monitor.features import FeatureParams

# The model's metadata_props, one definition for the exporter (training/export.py) that writes
# them and `ModelInfo.from_metadata` that reads them.
FEATURE_KEYS = {
    "sample_rate": int,
    "n_fft": int,
    "hop_length": int,
    "win_length": int,
    "n_mels": int,
    "fmin": float,
    "fmax": float,
    "log_offset": float,
}
WINDOW_KEYS = {"window_frames": int, "window_hop_frames": int, "threshold": float}
REQUIRED_KEYS = (*FEATURE_KEYS, *WINDOW_KEYS)
# heard_frames: the frames at a window's end that its score describes (a join: its short member
# reads the last frames of the long window); absent, the whole window
# sure_threshold: a score that confirms a bout at once (the detector); absent, every bout waits
OPTIONAL_KEYS = {
    "off_threshold": float,
    "sure_threshold": float,
    "heard_frames": int,
    "description": str,
}
MAX_POSITIONS = 256  # windows per onnxruntime call: bounds the memory of a long replay block


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a model, parsed from its metadata."""

    features: FeatureParams
    window_frames: int
    window_hop_frames: int
    threshold: float
    off_threshold: float | None = None
    sure_threshold: float | None = None
    heard_frames: int | None = None
    description: str = ""

    @property
    def window_s(self) -> float:
        return self.window_frames * self.features.hop_length / self.features.sample_rate

    def score_frame(self, start: int) -> float:
        """The frame at which the score of the window starting at frame `start` is dated: the
        centre of what the score describes, so an onset is dated where the model heard it."""
        heard = self.heard_frames or self.window_frames
        return start + self.window_frames - heard + (heard - 1) / 2

    @property
    def hop_s(self) -> float:
        return self.window_hop_frames * self.features.hop_length / self.features.sample_rate

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "model") -> ModelInfo:
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise ModelError(
                f"{source}: metadata_props lacks {', '.join(missing)}; export the model with "
                f"every key of {', '.join(REQUIRED_KEYS)}"
            )
        values = {k: _parse(meta, k, t, source) for k, t in {**FEATURE_KEYS, **WINDOW_KEYS}.items()}
        try:
            features = FeatureParams(**{k: values[k] for k in FEATURE_KEYS})
        except ValueError as e:
            raise ModelError(f"{source}: feature metadata is inconsistent: {e}") from None
        if values["window_frames"] < 1 or values["window_hop_frames"] < 1:
            raise ModelError(f"{source}: window_frames and window_hop_frames must be >= 1")
        if not 0.0 < values["threshold"] < 1.0:
            raise ModelError(f"{source}: threshold must be in (0, 1), got {values['threshold']}")
        off = _parse(meta, "off_threshold", float, source) if "off_threshold" in meta else None
        sure = _parse(meta, "sure_threshold", float, source) if "sure_threshold" in meta else None
        if sure is not None and not values["threshold"] <= sure <= 1.0:
            raise ModelError(
                f"{source}: sure_threshold ({sure}) must be between threshold "
                f"({values['threshold']}) and 1"
            )
        heard = _parse(meta, "heard_frames", int, source) if "heard_frames" in meta else None
        if heard is not None and not 1 <= heard <= values["window_frames"]:
            raise ModelError(
                f"{source}: heard_frames ({heard}) must be between 1 and window_frames "
                f"({values['window_frames']})"
            )
        return cls(
            features=features,
            window_frames=values["window_frames"],
            window_hop_frames=values["window_hop_frames"],
            threshold=values["threshold"],
            off_threshold=off,
            sure_threshold=sure,
            heard_frames=heard,
            description=meta.get("description", ""),
        )

    def metadata(self) -> dict[str, str]:
        """The `metadata_props` that `from_metadata` reads back as this very info."""
        values = {
            **{k: getattr(self.features, k) for k in FEATURE_KEYS},
            **{k: getattr(self, k) for k in (*WINDOW_KEYS, *OPTIONAL_KEYS)},
        }
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _parse(meta: dict[str, str], key: str, kind: type, source: str) -> int | float:
    try:
        return kind(meta[key])
    except ValueError:
        raise ModelError(
            f"{source}: metadata '{key}' = {meta[key]!r} is not {kind.__name__}"
        ) from None


def sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logit))


class CryClassifier:
    """onnxruntime session wrapper: windows in, (score, logit) per window out."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(
                f"{self.path}: model file not found; set model.path in the config to an .onnx file"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{self.path}: not a loadable ONNX model ({e})") from None
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        self.info = ModelInfo.from_metadata(meta, str(self.path))
        (model_input,) = self._session.get_inputs()
        self._input = model_input.name
        shape = model_input.shape
        if len(shape) != 3 or shape[2] != self.info.features.n_mels:
            raise ModelError(
                f"{self.path}: input shape {shape} does not match metadata "
                f"(batch, frames, {self.info.features.n_mels})"
            )

    def windows_in(self, frames: int) -> int:
        """Complete windows in a run of `frames` frames."""
        size, hop = self.info.window_frames, self.info.window_hop_frames
        return 0 if frames < size else (frames - size) // hop + 1

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and logits of every complete window in a run of frames `(n, n_mels)`."""
        size, hop = self.info.window_frames, self.info.window_hop_frames
        count = self.windows_in(len(frames))
        logits = []
        for first in range(0, count, MAX_POSITIONS):
            n = min(MAX_POSITIONS, count - first)
            run = frames[first * hop : first * hop + size + (n - 1) * hop]
            logits.append(self._session.run(None, {self._input: run[None]})[0].reshape(-1))
        logit = np.concatenate(logits).astype(np.float64) if logits else np.zeros(0)
        return sigmoid(logit), logit
