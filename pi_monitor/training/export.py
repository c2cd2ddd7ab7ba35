"""ONNX export: the cry path of the graph (temperature included), convolutional in time, plus
the front end and threshold as metadata.

The file is loaded back through the service's own `CryClassifier` and compared with torch, one
window at a time and as one long run of frames, so an export that the service cannot read, that
computes something else, or whose long runs differ from its windows fails here, not on a Pi.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from pi_monitor.classifier import CryClassifier, ModelInfo
from pi_monitor.training.examples import FRONT_END

if TYPE_CHECKING:  # torch is imported where a network is exported, not to write metadata
    from pi_monitor.training.train import Trained

OPSET = 17


def model_info(trained: Trained) -> ModelInfo:
    return ModelInfo(
        features=FRONT_END,
        window_frames=trained.model.window_frames,
        window_hop_frames=trained.model.hop_frames,
        threshold=round(trained.threshold, 4),
        description=(
            f"CryNet time-convolutional CNN distilled from YAMNet and mn04, "
            f"{trained.macs_per_window} MACs/window ({trained.macs_per_hop} per hop in a long "
            f"run), trained on split {trained.split}, temperature {trained.temperature:.3f}, "
            f"seed {trained.recipe.seed}, {trained.recipe.epochs:g} epochs; "
            "see pi_monitor/models/MODEL_CARD.md"
        ),
    )


def write(proto: onnx.ModelProto, info: ModelInfo, path: Path) -> None:
    """Save an ONNX graph with `info` as its only metadata, the keys the service reads."""
    del proto.metadata_props[:]
    for key, value in info.metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))


def probe(info: ModelInfo) -> np.ndarray:
    """Log-mel-like frames for checking a written model: one window and 20 hops more."""
    shape = (info.window_frames + 20 * info.window_hop_frames, info.features.n_mels)
    return np.random.default_rng(0).normal(-8, 3, shape).astype(np.float32)


def export(trained: Trained, path: Path) -> CryClassifier:
    """Write `path` and return it loaded through the service's classifier."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = trained.model.eval()
    frames, hop = model.window_frames, model.hop_frames
    example = torch.zeros(1, frames + hop, FRONT_END.n_mels)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["logmel"],
        output_names=["logit"],
        dynamic_axes={"logmel": {0: "batch", 1: "frames"}, "logit": {0: "batch", 1: "positions"}},
        opset_version=OPSET,
        dynamo=False,
    )
    write(onnx.load(str(path)), model_info(trained), path)
    classifier = CryClassifier(path)
    frames_in = probe(classifier.info)
    with torch.no_grad():
        expected = model(torch.from_numpy(frames_in[None]))[0].numpy()
    _, run = classifier.predict(frames_in)
    alone = [classifier.predict(frames_in[j * hop : j * hop + frames])[1] for j in range(len(run))]
    if not (
        np.allclose(run, expected, atol=1e-3) and np.allclose(run, np.concatenate(alone), atol=1e-4)
    ):
        raise RuntimeError(f"{path}: ONNX logits differ from torch or from window-by-window")
    return classifier
