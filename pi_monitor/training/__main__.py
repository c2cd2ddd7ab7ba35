"""`python -m pi_monitor.training {train,export,evaluate,loso}`: the model's whole life cycle.

train     trains on a split, saves a checkpoint, exports ONNX (held-out groups by default)
export    re-exports a checkpoint to ONNX
evaluate  replays the split's test clips through the service pipeline and prints the figures
loso      train + evaluate every leave-one-source-out fold
tables    the model card's Markdown tables from evaluation reports (JSON)
teachers  what the AudioSet teachers (YAMNet, mn04) hear in audio files, over time
transfer  builds the transfer audio (Debian packages, rendered lullabies) into DIR/transfer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pi_monitor.config import ConfigError, DetectorSettings, load_settings
from pi_monitor.training.corpus import (
    DEFAULT_CACHE,
    DEFAULT_CORPUS,
    AudioCache,
    Split,
    held_out_groups,
    leave_one_source_out,
    permissive_only,
    read_manifest,
)

LOSO_FOLDS = (
    ("theunissenlab/BabyCriesDiscomfortPain", "animals"),
    ("donateacry-corpus", "music"),
    ("giulbia/baby_cry_detection", "noise"),
)


def _split(args: argparse.Namespace, clips: list) -> Split:
    if args.cry_source or args.family:
        if not (args.cry_source and args.family):
            raise SystemExit("error: --cry-source and --family go together (leave-one-source-out)")
        split = leave_one_source_out(clips, args.cry_source, args.family, args.seed)
    else:
        split = held_out_groups(clips, args.seed)
    return permissive_only(split) if args.permissive else split


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="cry-data folder")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="decoded audio, runs")
    p.add_argument("--cry-source", help="leave this cry source out (with --family)")
    p.add_argument("--family", help="leave this negative family out (with --cry-source)")
    p.add_argument("--permissive", action="store_true", help="train on permissive licences only")
    p.add_argument("--seed", type=int, default=0)


def _train(args: argparse.Namespace, split: Split, cache: AudioCache) -> Path:
    from pi_monitor.training.export import export
    from pi_monitor.training.train import Recipe, save_checkpoint, train

    recipe = Recipe(steps=args.steps, seed=args.seed, threads=args.threads, workers=args.workers)
    trained = train(split, cache, recipe)
    save_checkpoint(trained, args.checkpoint)
    export(trained, args.out)
    print(
        f"{args.out}: threshold {trained.threshold:.3f}, temperature {trained.temperature:.3f}, "
        f"val loss {trained.val_loss:.4f}, "
        f"val recall@threshold {trained.val_recall_at_threshold:.3f}, "
        f"{trained.macs_per_window} MACs/window, {trained.seconds:.0f} s CPU (trainer process)"
    )
    return args.out


def _evaluate(
    args: argparse.Namespace, split: Split, cache: AudioCache, detector: DetectorSettings
) -> dict:
    from pi_monitor.training.evaluate import evaluate, format_report

    report = evaluate(Path(args.model), split, cache, args.corpus, args.seed, detector)
    print(format_report(report))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pi_monitor.training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "loso"):
        p = sub.add_parser(name)
        _common(p)
        p.add_argument("--steps", type=int, default=2400)
        p.add_argument("--threads", type=int, default=1, help="torch threads")
        p.add_argument("--workers", type=int, default=1, help="augmentation processes")
        p.add_argument("--out", type=Path, default=Path("models/cry.onnx"))
        p.add_argument("--checkpoint", type=Path, default=DEFAULT_CACHE / "runs" / "cry.pt")
    sub.choices["loso"].add_argument(
        "--fold", type=int, choices=range(len(LOSO_FOLDS)), help="run only this fold (0-based)"
    )
    p = sub.add_parser("evaluate")
    _common(p)
    p.add_argument("--model", type=Path, default=Path("models/cry.onnx"))
    p.add_argument("--report", type=Path, help="also write the figures as JSON here")
    p.add_argument(
        "--on",
        choices=("test", "val"),
        default="test",
        help="val: figures on the validation clips, for choosing a recipe without the test",
    )
    for p in (sub.choices["loso"], sub.choices["evaluate"]):
        p.add_argument("--config", type=Path, help="evaluate with this config's [detector] table")
    p = sub.add_parser("export")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=Path("models/cry.onnx"))
    p = sub.add_parser("tables")
    p.add_argument("reports", type=Path, nargs="+", help="JSON written by evaluate --report")
    p = sub.add_parser("teachers")
    p.add_argument("--teachers", type=Path, help="teacher folder (default ../shared/teachers)")
    p.add_argument("files", type=Path, nargs="+", help="audio files (any rate, mixed to mono)")
    p = sub.add_parser("transfer")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="builds DIR/transfer")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "teachers":
        from pi_monitor.training.teachers import DEFAULT_TEACHERS, listen

        return listen(args.files, args.teachers or DEFAULT_TEACHERS)
    if args.command == "transfer":
        from pi_monitor.training.transfer import main as transfer

        return transfer(args.cache, args.seed)

    if args.command == "tables":
        from pi_monitor.training.evaluate import card_tables

        print(card_tables([json.loads(r.read_text()) for r in args.reports]))
        return 0
    if args.command == "export":
        from pi_monitor.training.export import export
        from pi_monitor.training.train import load_checkpoint

        export(load_checkpoint(args.checkpoint), args.out)
        print(f"{args.out}: exported from {args.checkpoint}")
        return 0
    try:
        clips = read_manifest(args.corpus)
        config = getattr(args, "config", None)  # evaluate and loso only
        detector = load_settings(config).detector if config else DetectorSettings()
    except (FileNotFoundError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cache = AudioCache(args.corpus, clips, 8000, args.cache)
    if args.command == "train":
        _train(args, _split(args, clips), cache)
    elif args.command == "evaluate":
        split = _split(args, clips)
        if args.on == "val":
            split = dataclasses.replace(split, name=split.name + ":val", test=split.val)
        _evaluate(args, split, cache, detector)
    else:
        runs = args.cache / "runs"
        folds = LOSO_FOLDS if args.fold is None else LOSO_FOLDS[args.fold : args.fold + 1]
        for cry_source, family in folds:
            args.cry_source, args.family = cry_source, family
            name = f"loso-{cry_source.split('/')[-1]}-{family}"
            args.out, args.checkpoint = runs / f"{name}.onnx", runs / f"{name}.pt"
            args.model, args.report = args.out, runs / f"{name}.json"
            split = _split(args, clips)
            _train(args, split, cache)
            _evaluate(args, split, cache, detector)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
