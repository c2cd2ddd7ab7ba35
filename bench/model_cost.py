"""Multiply-adds of an exported model, counted from the ONNX graph itself (no torch needed).

The model is convolutional in time, so its cost has two figures: one window alone (what live
capture pays for each score) and each further window in a long run of frames (what a replay
pays, since overlapping windows share their frames' computation). Per audio-second: times
windows per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from pi_monitor.classifier import ModelInfo

LONG_RUN = 100  # windows in the long run that prices one more window


@dataclass(frozen=True)
class ModelCost:
    macs_per_window: int
    macs_per_hop: int
    windows_per_second: float
    file_bytes: int

    @property
    def macs_per_second_live(self) -> float:
        return self.macs_per_window * self.windows_per_second

    @property
    def macs_per_second_replay(self) -> float:
        return self.macs_per_hop * self.windows_per_second


def _macs(model: onnx.ModelProto, frames: int) -> int:
    """Conv, Gemm and MatMul multiply-adds for batch 1 and a run of `frames` frames."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims[:2], (1, frames), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(model)
    return _graph_macs(inferred.graph, {})


def _graph_macs(graph: onnx.GraphProto, outer: dict[str, tuple[int, ...]]) -> int:
    """A graph's multiply-adds; an If (a gated join) counts its costlier branch, the one that
    runs whenever a window reaches the gate."""
    values = [*graph.value_info, *graph.input, *graph.output]
    shapes = outer | {
        v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in values
    }
    shapes |= {t.name: tuple(t.dims) for t in graph.initializer}
    total = 0
    for node in graph.node:
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            total += int(np.prod(a)) * int(b[-1] if node.op_type == "MatMul" else min(b))
        elif node.op_type == "If":
            total += max(_graph_macs(branch.g, shapes) for branch in node.attribute)
    return total


def model_cost(path: Path) -> ModelCost:
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    info = ModelInfo.from_metadata(meta, str(path))
    window = _macs(model, info.window_frames)
    run = _macs(model, info.window_frames + LONG_RUN * info.window_hop_frames)
    return ModelCost(
        window, (run - window) // LONG_RUN, 1.0 / info.hop_s, Path(path).stat().st_size
    )
