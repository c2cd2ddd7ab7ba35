"""Experiment J (stop 43): one ONNX graph averaging two students' calibrated logits, a 1.07 s
and a 2.03 s one, so that each vetoes the other's own mistakes.

`python -m pi_monitor.training.join SHORT.onnx LONG.onnx OUT.onnx [--float16]`: the short model
reads the last frames of the long one's window (its positions shifted to line up); the file
carries the long one's metadata. Not adopted (model card, Stop 43)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

SAME = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax", "log_offset")


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def join(short_path: Path, long_path: Path, out: Path, float16: bool = False) -> None:
    short, long = onnx.load(str(short_path)), onnx.load(str(long_path))
    ms, ml = _meta(short), _meta(long)
    if any(ms[k] != ml[k] for k in (*SAME, "window_hop_frames")):
        raise ValueError(f"{short_path} and {long_path} have different front ends")
    hop = int(ml["window_hop_frames"])
    skip, rest = divmod(int(ml["window_frames"]) - int(ms["window_frames"]), hop)
    if skip < 0 or rest:
        raise ValueError("the long model's window must exceed the short one's by whole hops")
    members = (compose.add_prefix(short, "s_"), compose.add_prefix(long, "l_"))
    nodes = [helper.make_node("Identity", ["logmel"], [f"{p}_logmel"]) for p in ("s", "l")]
    inits: list[onnx.TensorProto] = []
    for member in members:
        nodes += member.graph.node
        inits += member.graph.initializer
    inits += [
        numpy_helper.from_array(np.array([skip], np.int64), "j_start"),
        numpy_helper.from_array(np.array([2**62], np.int64), "j_end"),
        numpy_helper.from_array(np.array([1], np.int64), "j_axis"),
        numpy_helper.from_array(np.array(0.5, np.float32), "j_half"),
    ]
    nodes += [
        helper.make_node("Slice", ["s_logit", "j_start", "j_end", "j_axis"], ["s_aligned"]),
        helper.make_node("Add", ["s_aligned", "l_logit"], ["j_sum"]),
        helper.make_node("Mul", ["j_sum", "j_half"], ["logit"]),
    ]
    if float16:  # stored at half size, cast back once when the session starts
        halved = []
        for t in inits:
            a = numpy_helper.to_array(t)
            if a.dtype == np.float32 and a.size > 16:
                halved.append(numpy_helper.from_array(a.astype(np.float16), f"{t.name}_h"))
                cast = helper.make_node("Cast", [f"{t.name}_h"], [t.name], to=TensorProto.FLOAT)
                nodes.insert(0, cast)
            else:
                halved.append(t)
        inits = halved
    n_mels = int(ml["n_mels"])
    graph = helper.make_graph(
        nodes,
        "joined",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", "frames", n_mels])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", "positions"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=short.opset_import)
    model.ir_version = short.ir_version
    meta = {**ml, "description": f"J: mean of {short_path.name}'s and {long_path.name}'s logits"}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("short", type=Path)
    p.add_argument("long", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--float16", action="store_true")
    a = p.parse_args()
    join(a.short, a.long, a.out, a.float16)
