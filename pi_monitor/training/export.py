"""ONNX export: the graph (temperature included) plus the front end and threshold as metadata.

The file is loaded back through the service's own `CryClassifier` and compared with torch, so
an export that the service cannot read or that computes something else fails here, not on a Pi.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from pi_monitor.classifier import CryClassifier, ModelInfo
from pi_monitor.training.examples import FRONT_END, WINDOW_FRAMES, WINDOW_HOP_FRAMES
from pi_monitor.training.train import Trained

OPSET = 17


def metadata(trained: Trained) -> dict[str, str]:
    return ModelInfo(
        features=FRONT_END,
        window_frames=WINDOW_FRAMES,
        window_hop_frames=WINDOW_HOP_FRAMES,
        threshold=round(trained.threshold, 4),
        description=(
            f"CryNet depthwise-separable CNN, {trained.macs_per_window} MACs/window, "
            f"trained on split {trained.split}, temperature {trained.temperature:.3f}, "
            f"seed {trained.recipe.seed}, {trained.recipe.steps} steps; see models/MODEL_CARD.md"
        ),
    ).metadata()


def export(trained: Trained, path: Path) -> CryClassifier:
    """Write `path` and return it loaded through the service's classifier."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = trained.model.eval()
    example = torch.zeros(2, WINDOW_FRAMES, FRONT_END.n_mels)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["logmel"],
        output_names=["logit"],
        dynamic_axes={"logmel": {0: "batch"}, "logit": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata(trained).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    classifier = CryClassifier(path)
    probe = np.random.default_rng(0).normal(-8, 3, (5, WINDOW_FRAMES, FRONT_END.n_mels))
    probe = probe.astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(probe)).numpy()
    _, logits = classifier.predict(probe)
    if not np.allclose(logits, expected, atol=1e-3):
        raise RuntimeError(f"{path}: ONNX logits differ from torch ({logits} vs {expected})")
    return classifier
