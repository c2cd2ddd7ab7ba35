"""One ONNX graph that averages two students' calibrated logits: a short window's and a long one's
(J, stops 43-45 in docs/MODEL_EXPERIMENTS.md). What the two contexts err on differs, so their mean
sits above the line the single students lie on; the short member reads its window's worth of the
last frames of the long member's window, so one score still answers for one window.

The threshold is not copied from a member: averaging pulls the extreme non-cry scores in, so the
shipped rule fitted on the join gives less than either member's (`python -m pi_monitor.training
join` fits it on the split's validation clips through `set_threshold`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from pi_monitor.classifier import CryClassifier, ModelError, ModelInfo
from pi_monitor.training.export import probe, write

HALF_MIN_SIZE = 16  # float16 storage halves the weight tensors; scalars and indices stay


def members(short_path: Path, long_path: Path) -> tuple[CryClassifier, CryClassifier, int]:
    """Both students, loaded, and how many hops the short one's windows start before the long
    one's; a pair that cannot be joined is refused with both files named."""
    short, long = CryClassifier(short_path), CryClassifier(long_path)
    a, b = short.info, long.info
    if a.features != b.features or a.window_hop_frames != b.window_hop_frames:
        raise ModelError(f"{short_path} and {long_path} have different front ends or hops")
    skip, rest = divmod(b.window_frames - a.window_frames, b.window_hop_frames)
    if skip < 0 or rest:
        raise ModelError(
            f"{long_path}'s window ({b.window_frames} frames) must exceed {short_path}'s "
            f"({a.window_frames}) by whole hops of {b.window_hop_frames}"
        )
    return short, long, skip


def join(short_path: Path, long_path: Path, out: Path, float16: bool = False) -> CryClassifier:
    """Write the join of two exported students to `out` (with the long member's threshold until
    `set_threshold` fits its own) and return it loaded through the service's classifier."""
    short, long, skip = members(short_path, long_path)
    protos = onnx.load(str(short_path)), onnx.load(str(long_path))
    graph = _graph(*protos, skip, float16, long.info.features.n_mels)
    description = f"J: mean of the calibrated logits of {short_path.name} and {long_path.name}"
    # both members were taught on the window's last second: date each score there, as the short
    # member alone would be dated, so the long window does not move onsets earlier
    info = dataclasses.replace(
        long.info,
        heard_frames=short.info.heard_frames or short.info.window_frames,
        description=description,
    )
    write(graph, info, out)
    joined = CryClassifier(out)
    frames = probe(long.info)  # the join's logits are the mean of its members', window by window
    expected = (short.predict(frames)[1][skip:] + long.predict(frames)[1]) / 2
    if not np.allclose(joined.predict(frames)[1], expected, atol=1e-2 if float16 else 1e-4):
        raise RuntimeError(f"{out}: the joined logits differ from the members' mean")
    return joined


def set_threshold(path: Path, threshold: float) -> None:
    """Rewrite the on-threshold in a model's metadata, leaving every other key as it is."""
    proto = onnx.load(str(path))
    info = ModelInfo.from_metadata({p.key: p.value for p in proto.metadata_props}, str(path))
    write(proto, dataclasses.replace(info, threshold=round(threshold, 4)), path)


def _graph(
    short: onnx.ModelProto, long: onnx.ModelProto, skip: int, float16: bool, n_mels: int
) -> onnx.ModelProto:
    members = (compose.add_prefix(short, "s_"), compose.add_prefix(long, "l_"))
    nodes = [helper.make_node("Identity", ["logmel"], [f"{p}_logmel"]) for p in ("s", "l")]
    inits: list[onnx.TensorProto] = []
    for member in members:
        nodes += member.graph.node
        inits += member.graph.initializer
    constants = {"j_start": [skip], "j_end": [2**62], "j_axis": [1]}
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items()]
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "j_half"))
    nodes += [
        helper.make_node("Slice", ["s_logit", "j_start", "j_end", "j_axis"], ["s_aligned"]),
        helper.make_node("Add", ["s_aligned", "l_logit"], ["j_sum"]),
        helper.make_node("Mul", ["j_sum", "j_half"], ["logit"]),
    ]
    if float16:  # stored at half size, cast back to float32 once when the session starts
        stored = []
        for tensor in inits:
            array = numpy_helper.to_array(tensor)
            if array.dtype == np.float32 and array.size > HALF_MIN_SIZE:
                stored.append(numpy_helper.from_array(array.astype(np.float16), f"{tensor.name}_h"))
                cast = helper.make_node(
                    "Cast", [stored[-1].name], [tensor.name], to=TensorProto.FLOAT
                )
                nodes.insert(0, cast)
            else:
                stored.append(tensor)
        inits = stored
    graph = helper.make_graph(
        nodes,
        "joined",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", "frames", n_mels])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", "positions"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=short.opset_import)
    model.ir_version = short.ir_version
    return model
