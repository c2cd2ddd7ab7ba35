"""Multiply-adds of an exported model, counted from the ONNX graph itself (no torch needed).

The budget is stated per audio-second: MACs per window times windows per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from pi_monitor.classifier import ModelInfo


@dataclass(frozen=True)
class ModelCost:
    macs_per_window: int
    windows_per_second: float
    file_bytes: int

    @property
    def macs_per_second(self) -> float:
        return self.macs_per_window * self.windows_per_second


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    for dim in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        dim.ClearField("dim_param")
        dim.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in values}
    shapes |= {t.name: tuple(t.dims) for t in model.graph.initializer}
    return shapes


def model_cost(path: Path) -> ModelCost:
    """Conv, Gemm and MatMul multiply-adds of one window (batch 1)."""
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    info = ModelInfo.from_metadata(meta, str(path))
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            total += int(np.prod(a)) * int(b[-1] if node.op_type == "MatMul" else min(b))
    return ModelCost(total, 1.0 / info.hop_s, Path(path).stat().st_size)
