"""Small ONNX models with known behaviour, so tests never depend on a trained model's accuracy."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

FRONT_END = {
    "sample_rate": 8000,
    "n_fft": 256,
    "hop_length": 80,
    "win_length": 200,
    "n_mels": 40,
    "fmin": 50.0,
    "fmax": 3800.0,
    "log_offset": 1e-6,
    "window_frames": 100,
    "window_hop_frames": 25,
    "threshold": 0.5,
}


def loudness_model(path: Path, level: float = -10.5, slope: float = 2.0, **meta: object) -> Path:
    """logit = slope * (mean log-mel of the window - level): loud windows score high.

    Convolutional in time like the real model: a run of frames in, one logit per window out."""
    fe = {**FRONT_END, **meta}
    frames, hop = int(fe["window_frames"]), int(fe["window_hop_frames"])
    x = helper.make_tensor_value_info(
        "logmel", TensorProto.FLOAT, ["batch", "frames", fe["n_mels"]]
    )
    y = helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", "positions"])
    consts = [
        helper.make_tensor("mels", TensorProto.INT64, [1], [2]),
        helper.make_tensor("channel", TensorProto.INT64, [1], [1]),
        helper.make_tensor("level", TensorProto.FLOAT, [], [level]),
        helper.make_tensor("slope", TensorProto.FLOAT, [], [slope]),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["logmel", "mels"], ["per_frame"], keepdims=0),
        helper.make_node("Unsqueeze", ["per_frame", "channel"], ["as_channel"]),
        helper.make_node(
            "AveragePool", ["as_channel"], ["pooled"], kernel_shape=[frames], strides=[hop]
        ),
        helper.make_node("Squeeze", ["pooled", "channel"], ["mean"]),
        helper.make_node("Sub", ["mean", "level"], ["centred"]),
        helper.make_node("Mul", ["centred", "slope"], ["logit"]),
    ]
    graph = helper.make_graph(nodes, "loudness", [x], [y], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in fe.items():
        model.metadata_props.add(key=key, value=str(value))
    model.metadata_props.add(key="description", value="test model: loudness, not a cry classifier")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
