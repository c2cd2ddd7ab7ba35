"""One ONNX graph that averages several students' calibrated logits (or takes their least,
`combine="min"`, or a gated mean, `"gated-mean"`, both gated as `combine` says): short windows'
and a long one's (J, stops 43-50 in docs/MODEL_EXPERIMENTS.md).
What the contexts err on differs, so their mean sits above the line the single students lie on;
each shorter member reads its window's worth of the last frames of the long member's window, so
one score still answers for one window.

The threshold is not copied from a member: averaging pulls the extreme non-cry scores in, so the
shipped rule fitted on the join gives less than any member's (`python -m pi_monitor.training
join` fits it on the split's validation clips through `set_threshold`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from pi_monitor.classifier import CryClassifier, ModelError, ModelInfo
from pi_monitor.training.combine import COMBINE, GATE_LOGIT
from pi_monitor.training.export import probe, write

HALF_MIN_SIZE = 16  # float16 storage halves the weight tensors; scalars and indices stay
_SLICE = {"j_end": [2**62], "j_axis": [1]}  # a shorter member's frames, to the end


def members(paths: list[Path]) -> list[tuple[CryClassifier, int]]:
    """Every student, loaded, with how many hops its windows start before the last (longest)
    one's; a set that cannot be joined is refused with the files named."""
    if len(paths) < 2:
        raise ModelError(f"a join needs two students or more, not {len(paths)}")
    loaded = [CryClassifier(p) for p in paths]
    last, last_path = loaded[-1].info, paths[-1]
    students = []
    for path, student in zip(paths, loaded, strict=True):
        info = student.info
        if info.features != last.features or info.window_hop_frames != last.window_hop_frames:
            raise ModelError(f"{path} and {last_path} have different front ends or hops")
        skip, rest = divmod(last.window_frames - info.window_frames, last.window_hop_frames)
        if skip < 0 or rest:
            raise ModelError(
                f"{last_path}'s window ({last.window_frames} frames) must equal or exceed "
                f"{path}'s ({info.window_frames}) by whole hops of {last.window_hop_frames}"
            )
        students.append((student, skip))
    return students


def join(
    paths: list[Path], out: Path, float16: bool = False, combine: str = "mean"
) -> CryClassifier:
    """Write the join of exported students (the longest window last) to `out`, with the last
    member's threshold until `set_threshold` fits its own, and return it loaded through the
    service's classifier."""
    if combine not in COMBINE:
        raise ModelError(f"combine must be one of {', '.join(COMBINE)}, not {combine!r}")
    students = members(paths)
    protos = [onnx.load(str(p)) for p in paths]
    long = students[-1][0].info
    starts = [skip * long.window_hop_frames for _, skip in students]
    graph = _graph(protos, starts, float16, long.features.n_mels, combine)
    description = f"CryNet join (J): {combine} of the calibrated logits of " + ", ".join(
        p.name for p in paths
    )
    # every member was taught on the window's last second: date each score where the shortest
    # member hears, as it alone would be dated, so the long window does not move onsets earlier
    heard = min(s.info.heard_frames or s.info.window_frames for s, _ in students)
    write(graph, dataclasses.replace(long, heard_frames=heard, description=description), out)
    joined = CryClassifier(out)
    frames = probe(long)  # the join's logits are its members' combined, window by window
    expected = COMBINE[combine]([s.predict(frames)[1][skip:] for s, skip in students])
    if not np.allclose(joined.predict(frames)[1], expected, atol=1e-2 if float16 else 1e-4):
        raise RuntimeError(f"{out}: the joined logits differ from the members' {combine}")
    return joined


def set_threshold(path: Path, threshold: float, sure: float | None = None) -> None:
    """Rewrite the on-threshold (and the sure-threshold, if given) in a model's metadata,
    leaving every other key as it is."""
    proto = onnx.load(str(path))
    info = ModelInfo.from_metadata({p.key: p.value for p in proto.metadata_props}, str(path))
    info = dataclasses.replace(info, threshold=round(threshold, 4))
    if sure is not None:
        info = dataclasses.replace(info, sure_threshold=round(sure, 4))
    write(proto, info, path)


def _graph(
    protos: list[onnx.ModelProto], starts: list[int], float16: bool, n_mels: int, combine: str
) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in _SLICE.items()]
    pairs = enumerate(zip(protos, starts, strict=True))
    parts = [_member(i, proto, start, inits) for i, (proto, start) in pairs]
    aligned = [name for _, name in parts]
    if combine == "mean":
        nodes = [node for member_nodes, _ in parts for node in member_nodes]
        nodes += _combining(aligned, "mean", "logit", inits)
    else:
        nodes = parts[0][0] + _gated(parts, inits, "min" if combine == "min" else "mean")
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
    model = helper.make_model(graph, opset_imports=protos[0].opset_import)
    model.ir_version = protos[0].ir_version
    return model


def _member(
    i: int, proto: onnx.ModelProto, start: int, inits: list[onnx.TensorProto]
) -> tuple[list[onnx.NodeProto], str]:
    """Member `i`'s nodes (its weights added to `inits`) and the name of its logits aligned with
    the long member's positions."""
    member = compose.add_prefix(proto, f"m{i}_")
    inits += member.graph.initializer
    if not start:
        reads = helper.make_node("Identity", ["logmel"], [f"m{i}_logmel"])
    else:
        # a shorter window reads the frames from `start` on, so its positions end where the long
        # member's do, and it never computes the positions a longer window would have dropped
        inits.append(numpy_helper.from_array(np.array([start], np.int64), f"j_start{i}"))
        reads = helper.make_node(
            "Slice", ["logmel", f"j_start{i}", "j_end", "j_axis"], [f"m{i}_logmel"]
        )
    return [reads, *member.graph.node], f"m{i}_logit"


def _combining(
    names: list[str], how: str, out: str, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """The members' aligned logits made one, `out`: their least ("min") or their mean."""
    if how == "min":
        return [helper.make_node("Min", names, [out])]
    inits.append(numpy_helper.from_array(np.array(1 / len(names), np.float32), "j_share"))
    return [
        helper.make_node("Sum", names, ["j_sum"]),
        helper.make_node("Mul", ["j_sum", "j_share"], [out]),
    ]


def _gated(
    parts: list[tuple[list[onnx.NodeProto], str]], inits: list[onnx.TensorProto], how: str
) -> list[onnx.NodeProto]:
    """`combine.least` or `combine.gated_mean` as nodes: an If that runs the other members only
    when some window of the first reaches the gate, then keeps the first's logit wherever it is
    below the gate."""
    first = parts[0][1]
    inits.append(numpy_helper.from_array(np.array(GATE_LOGIT, np.float32), "j_gate"))
    out = helper.make_tensor_value_info
    quiet = helper.make_graph(
        [helper.make_node("Identity", [first], ["j_first"])],
        "first_only",
        [],
        [out("j_first", TensorProto.FLOAT, None)],
    )
    heard = helper.make_graph(
        [
            *(node for member_nodes, _ in parts[1:] for node in member_nodes),
            *_combining([name for _, name in parts], how, "j_all", inits),
            helper.make_node("Less", [first, "j_gate"], ["j_below"]),
            helper.make_node("Where", ["j_below", first, "j_all"], ["j_gated"]),
        ],
        "every_member",
        [],
        [out("j_gated", TensorProto.FLOAT, None)],
    )
    return [
        helper.make_node("ReduceMax", [first], ["j_top"], keepdims=0),
        helper.make_node("Less", ["j_top", "j_gate"], ["j_quiet"]),
        helper.make_node("If", ["j_quiet"], ["logit"], then_branch=quiet, else_branch=heard),
    ]
