"""`python -m pi_monitor.training <command>`: the model's life cycle.

train     builds what is missing (transfer audio, the labelled pools, the split's cry teacher),
          then distils the student and exports ONNX (held-out groups by default)
export    re-exports a checkpoint to ONNX
evaluate  replays the split's test clips through the service pipeline and prints the figures;
          --with-teachers adds the rows "YAMNet class 20 as it is", mn04's, and the teacher
          ensemble; --on outside: false alarms on Debian sounds no training source holds
loso      train + evaluate (with the teacher rows) every leave-one-source-out fold
tables    the model card's Markdown tables from evaluation reports (JSON)
curve     onset F1 against false alarms over several runs' reports: the line and each run's distance
compare   two runs' onset F1 on the same mixtures: the paired difference and its interval
join      one model averaging students' logits (short windows and a long one, J), its threshold
          fitted by the student's rule on the split's validation clips
teachers  what the AudioSet teachers (YAMNet, mn04) hear in audio files, over time
transfer  builds the transfer audio (Debian packages, rendered lullabies) into DIR/transfer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pi_monitor.config import (
    DEFAULT_MODEL,
    ON_THRESHOLD_RANGE,
    ConfigError,
    DetectorSettings,
    load_settings,
)
from pi_monitor.training.combine import COMBINE
from pi_monitor.training.corpus import (
    DEFAULT_CACHE,
    DEFAULT_CORPUS,
    DEFAULT_TEACHERS,
    SAMPLE_RATE,
    AudioCache,
    Clip,
    Split,
    held_out_groups,
    leave_one_source_out,
    permissive_only,
    read_manifest,
)
from pi_monitor.training.examples import WINDOW_FRAMES

if TYPE_CHECKING:
    from pi_monitor.training.evaluate import Scorer
    from pi_monitor.training.mining import Window
    from pi_monitor.training.model import CryNet
    from pi_monitor.training.pool import Pool
    from pi_monitor.training.train import Trained

LOSO_FOLDS = (
    ("theunissenlab/BabyCriesDiscomfortPain", "animals"),
    ("donateacry-corpus", "music"),
    ("giulbia/baby_cry_detection", "noise"),
    ("theunissenlab/BabyCriesDiscomfortPain", "singing"),
)
TRAIN_EXAMPLES = 200_000
VAL_SHARE = 12  # the validation pool is a twelfth of the training pool's size
MINE_LR = 1 / 3  # stage 2 starts from stage 1, at a third of its learning rate
REPORT_FIX = "pass a report written by `python -m pi_monitor.training evaluate --report FILE`"
# One student is not the shipped model (a join of two, MODEL_CARD.md): it never replaces it
# unless asked to.
STUDENT_OUT = DEFAULT_CACHE / "runs" / "cry.onnx"
STUDENT_OUT_HELP = (
    f"the exported student (default {STUDENT_OUT}; the shipped model is {DEFAULT_MODEL})"
)


def _split(args: argparse.Namespace, clips: list[Clip]) -> Split:
    if args.cry_source or args.family:
        if not (args.cry_source and args.family):
            raise SystemExit("error: --cry-source and --family go together (leave-one-source-out)")
        split = leave_one_source_out(clips, args.cry_source, args.family, args.seed)
    else:
        split = held_out_groups(clips, args.seed)
    return permissive_only(split) if args.permissive else split


def _widths(text: str) -> tuple[int, ...]:
    """`--widths 20,40,40,80,80,128,128`: one channel count per convolution layer."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers") from None


def _count(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _threshold(what: str, low: float, high: float) -> Callable[[str], float]:
    """`--threshold 0.94`, `--sure-threshold 0.98`: a value the service's config would accept."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} from {low} to {high}")
        return value

    return parse


def _window_frames(text: str) -> int:
    """`--window-frames 101`: a window the network's layers can make (53 plus 24s)."""
    from pi_monitor.training.model import layers_for

    frames = _count(text)
    try:
        layers_for(frames)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return frames


def _animals_taught(weight: float | None) -> tuple[tuple[str, float], ...]:
    """`Recipe.family_negative_weights` for an --animal-negative-hard-weight (either flag's)."""
    return () if weight is None else (("animals", weight),)


def _student_widths(args: argparse.Namespace) -> tuple[int, ...]:
    """--widths, or the shipped widths with the last repeated until the network hears
    --window-frames; either way, they must make a window of exactly that many frames."""
    from pi_monitor.training.model import layers_for
    from pi_monitor.training.train import Recipe

    layers = layers_for(args.window_frames)
    widths = args.widths or Recipe.widths + Recipe.widths[-1:] * (layers - len(Recipe.widths))
    if len(widths) != layers:
        raise SystemExit(
            f"error: --window-frames {args.window_frames} needs {layers} --widths, one per "
            f"layer; {len(widths)} given"
        )
    return widths


def _run_name(split: Split) -> str:
    return split.name.replace("/", "_").replace(":", "-").replace("+", "-")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="cry-data folder")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="decoded audio, pools, runs")
    p.add_argument("--teachers", type=Path, default=DEFAULT_TEACHERS, help="teachers folder")
    p.add_argument(
        "--no-transfer", action="store_true", help="cry-data only, no Debian transfer audio"
    )
    p.add_argument("--cry-source", help="leave this cry source out (with --family)")
    p.add_argument("--family", help="leave this negative family out (with --cry-source)")
    p.add_argument("--permissive", action="store_true", help="train on permissive licences only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--examples", type=int, default=TRAIN_EXAMPLES, help="training pool size")
    p.add_argument(
        "--speed-change",
        type=float,
        default=0.0,
        help="share of the training pool's clip segments played 0.89-1.12 x as fast",
    )
    p.add_argument(
        "--in-turn",
        type=float,
        default=0.0,
        help="share of the training pool's non-cry windows made of two sounds one after the other",
    )
    p.add_argument(
        "--runs-of-one",
        type=float,
        default=0.0,
        help="share of those (--in-turn) whose second sound is from the first's group",
    )
    p.add_argument(
        "--teachers-listen",
        choices=("middle", "end"),
        default="middle",
        help="which 0.975 s of each pool window the teachers label",
    )
    p.add_argument(
        "--window-frames",
        type=_window_frames,
        default=WINDOW_FRAMES,
        help="frames the student hears at once: 53 (1.07 s, shipped), 77, 101 (2.03 s), ...",
    )
    p.add_argument("--workers", type=int, default=2, help="pool-labelling processes")


def _clips(args: argparse.Namespace) -> list[Clip]:
    """cry-data, and the transfer audio (built on first use, reused after)."""
    clips = read_manifest(args.corpus)
    if not args.no_transfer:
        from pi_monitor.training import transfer

        folder = args.cache / "transfer"
        transfer.build(folder, args.cache / "transfer-tools")
        clips += read_manifest(folder)
    return clips


class Workspace:
    """The corpus, its audio cache, the pools and the cry teachers of one seed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clips = _clips(args)
        self.cache = AudioCache(self.clips, SAMPLE_RATE, args.cache)
        self.base = held_out_groups(self.clips, args.seed)
        self.runs = args.cache / "runs"

    def pools(self) -> tuple:
        from pi_monitor.training import pool
        from pi_monitor.training.examples import Mixing

        a = self.args
        augmented = Mixing(speed=a.speed_change, in_turn=a.in_turn, runs_of_one=a.runs_of_one)
        built = []
        for clips, examples, seed, mixing in (
            (self.base.train, a.examples, a.seed, augmented),
            (self.base.val, max(256, a.examples // VAL_SHARE), a.seed + 1000, Mixing()),
        ):
            spec = pool.PoolSpec(
                examples,
                seed,
                mixing,
                teachers_listen=a.teachers_listen,
                window_frames=a.window_frames,
            )
            folder = a.cache / f"pool-{spec.digest(clips)}"
            built.append(pool.build(clips, self.cache, spec, folder, a.teachers, a.workers))
        return tuple(built)

    def hard_pool(self, windows: tuple[Window, ...], clips: tuple[Clip, ...]) -> Pool:
        """The mined windows of `clips` (those of the pool they join, in its order), labelled by
        the teachers like the pool (built once per list)."""
        from pi_monitor.training import pool

        spec = pool.PoolSpec(
            len(windows),
            self.args.seed + 2000,
            hard=windows,
            teachers_listen=self.args.teachers_listen,
            window_frames=self.args.window_frames,
        )
        folder = self.args.cache / f"pool-{spec.digest(clips)}"
        print(f"{folder}: {len(windows)} examples from mined windows")
        return pool.build(clips, self.cache, spec, folder, self.args.teachers, self.args.workers)

    def cry_teacher(self, split: Split) -> Path:
        """The split's cry teacher (fitted once, kept in the runs folder)."""
        from pi_monitor.training.heads import fit_cry_teacher

        path = self.runs / f"{_run_name(split)}-{split.fingerprint}-teacher.npz"
        if not path.is_file():
            train_pool, val_pool = self.pools()
            teacher = fit_cry_teacher(
                train_pool, train_pool.usable(split.train), val_pool, val_pool.usable(split.val)
            )
            teacher.save(path)
            print(f"{path}: cry teacher for {split.name}")
        return path


def _read_mined(found: Path, legacy: dict) -> tuple[dict, list] | None:
    """The mining settings and windows of a kept list (None: none kept). Lists kept before they
    recorded their settings are plain lists, made with `legacy`, the defaults of that time."""
    if not found.is_file():
        return None
    kept = json.loads(found.read_text())
    return (kept["mining"], kept["windows"]) if isinstance(kept, dict) else (legacy, kept)


def _train(args: argparse.Namespace, ws: Workspace, split: Split) -> Path:
    """Stage 1 on the pool; then --mine-rounds stages, each from the one before, on the pool plus
    every window of the training non-cries that an earlier stage still called a cry (mining.py).
    Each stage and what it mined are kept beside the checkpoint, named by the split's fingerprint,
    and reused while the recipe matches and no stage before them was retrained."""
    from pi_monitor.training.evaluate import THRESHOLD_CEILING
    from pi_monitor.training.export import export
    from pi_monitor.training.heads import CryTeacher
    from pi_monitor.training.mining import Mining, mine
    from pi_monitor.training.train import Recipe, load_checkpoint, save_checkpoint, train

    widths = _student_widths(args)  # before the pools: a wrong count fails at once
    train_pool, val_pool = ws.pools()
    teacher = CryTeacher.load(ws.cry_teacher(split))
    pool_clips, train_clips, split_name, calibration = ws.base.train, split.train, split.name, None
    if getattr(args, "with_val_groups", False):  # a last model (train only): read the test, not val
        train_pool = train_pool.extend(val_pool)
        pool_clips, train_clips = ws.base.train + ws.base.val, split.train + split.val
        split_name, calibration = f"{split.name}+val", (args.temperature, THRESHOLD_CEILING)
    recipe = Recipe(
        epochs=args.epochs,
        seed=args.seed if args.train_seed is None else args.train_seed,
        threads=args.threads,
        negative_hard_weight=args.negative_hard_weight,
        animal_audioset_weight=args.animal_audioset_weight,
        animal_teacher=args.animal_teacher,
        mel_shift=args.mel_shift,
        teacher_embedding_weight=args.teacher_embedding_weight,
        widths=widths,
        family_negative_weights=_animals_taught(args.animal_negative_hard_weight),
    )
    later = dataclasses.replace(recipe, epochs=args.mine_epochs, lr=recipe.lr * MINE_LR)
    mining = Mining(threshold=args.mine_threshold, cries=args.mined_cries)
    settings, legacy = dataclasses.asdict(mining), dataclasses.asdict(Mining())

    def fit(pool: Pool, recipe: Recipe, start: CryNet | None = None) -> Trained:
        rows = pool.usable(train_clips)
        weights = pool.weights(rows, ws.clips, dict(recipe.family_weights))
        negatives = pool.weights(
            rows, ws.clips, dict(recipe.family_negative_weights), recipe.negative_hard_weight
        )
        return train(
            pool, rows, weights, val_pool, val_pool.usable(split.val), teacher, split.val,
            ws.cache, split_name, recipe, start=start, negative_weights=negatives,
            calibration=calibration,
        )  # fmt: skip

    def kept(name: str) -> Path:
        return args.checkpoint.with_name(f"{args.checkpoint.stem}-{split.fingerprint}-{name}")

    trained: Trained | None = None
    retrained = False
    mined: tuple[Window, ...] = ()
    stages = [recipe] + [later] * args.mine_rounds
    if args.last_from_scratch:  # the last stage learns pool and mined windows together
        stages[-1] = recipe
    if args.finish_animal_negative_hard_weight is not None:
        finish = _animals_taught(args.finish_animal_negative_hard_weight)
        stages[-1] = dataclasses.replace(stages[-1], family_negative_weights=finish)
    for stage, stage_recipe in enumerate(stages, 1):
        fresh = args.last_from_scratch and stage == len(stages)
        if trained is not None:  # what the stage before still calls a cry
            found = kept(f"stage{stage - 1}-mined.json")
            done_mining = _read_mined(found, legacy)
            if retrained or done_mining is None or done_mining[0] != settings:
                windows = mine(trained.model, train_clips, train_pool.clip_files, ws.cache, mining)
                found.write_text(json.dumps({"mining": settings, "windows": windows}))
                done_mining = (settings, windows)
                retrained = True  # the stages after it learn from these windows
            mined += tuple((c, s, bool(cry)) for c, s, cry in done_mining[1])
        path = kept(f"stage{stage}.pt")
        done = None if retrained or not path.is_file() else load_checkpoint(path)
        if done is None or done.recipe != stage_recipe or done.split != split_name:
            pool = train_pool.join(ws.hard_pool(mined, pool_clips)) if mined else train_pool
            done = fit(pool, stage_recipe, start=trained.model if trained and not fresh else None)
            save_checkpoint(done, path)
            retrained = True
        trained = done
        print(
            f"{path}: stage {stage}, {len(mined)} mined examples, val loss {trained.val_loss:.4f}"
        )
    assert trained is not None
    save_checkpoint(trained, args.checkpoint)
    export(trained, args.out)
    print(
        f"{args.out}: threshold {trained.threshold:.3f}, temperature {trained.temperature:.3f}, "
        f"val loss {trained.val_loss:.4f}, "
        f"val recall@threshold {trained.val_recall_at_threshold:.3f}, "
        f"{trained.macs_per_window} MACs/window ({trained.macs_per_hop} per hop), "
        f"{trained.seconds:.0f} s CPU (trainer process, last stage)"
    )
    return args.out


def _scorers(args: argparse.Namespace, ws: Workspace, split: Split, ensemble: bool) -> list[Scorer]:
    """pi-monitor, and with --with-teachers YAMNet and mn04 as they are (and the ensemble),
    each teacher at its threshold from the split's validation negatives."""
    from pi_monitor.training.evaluate import (
        StudentScorer,
        TeacherScorer,
        teacher_rows,
        validation_threshold,
    )

    scorers: list[Scorer] = [StudentScorer(Path(args.model))]
    if args.with_teachers:
        rows = teacher_rows(args.teachers, ws.cry_teacher(split) if ensemble else None)
        for row in ("yamnet", "mn04", "ensemble") if ensemble else ("yamnet", "mn04"):
            scorer = TeacherScorer(row, rows, 0.5)
            scorers.append(
                TeacherScorer(row, rows, validation_threshold(scorer, split.val, ws.cache))
            )
    return scorers


def _join(args: argparse.Namespace, ws: Workspace, split: Split) -> None:
    """The join, under its own on-threshold: the student's rule on the join's validation scores,
    or the one given (a threshold chosen on validation by a rule written before its figures)."""
    from pi_monitor.training.evaluate import StudentScorer, validation_threshold
    from pi_monitor.training.join import join, set_threshold

    join(args.students, args.out, args.float16, args.combine)
    scorer = StudentScorer(args.out)
    if args.threshold is None:
        threshold = validation_threshold(scorer, split.val, ws.cache, floor=ON_THRESHOLD_RANGE[0])
        why = f"the student's rule on split {split.name}'s validation clips"
    else:
        threshold, why = args.threshold, "given"
    if args.sure_threshold is not None and args.sure_threshold < threshold:
        args.out.unlink()
        raise SystemExit(
            f"error: --sure-threshold {args.sure_threshold} is below the on-threshold "
            f"{threshold:.4f}; a bout that sure would confirm at every crossing"
        )
    set_threshold(args.out, threshold, args.sure_threshold)
    sure = "" if args.sure_threshold is None else f", sure-threshold {args.sure_threshold:.4f}"
    print(
        f"{args.out}: {args.combine} of {', '.join(p.name for p in args.students)}, "
        f"{scorer.classifier.info.window_frames} frames, threshold {threshold:.4f} ({why}){sure}"
    )


def _write_report(args: argparse.Namespace, reports: list[dict]) -> None:
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(reports, indent=1))


def _evaluate(
    args: argparse.Namespace, ws: Workspace, split: Split, detector: DetectorSettings
) -> list[dict]:
    from pi_monitor.training.evaluate import evaluate, format_report

    reports = []
    for scorer in _scorers(args, ws, split, ensemble=True):
        report = evaluate(scorer, split, ws.cache, args.seed, detector, args.mixtures_per_cry)
        print(format_report(report), flush=True)
        reports.append(report)
    _write_report(args, reports)
    return reports


def _evaluate_outside(
    args: argparse.Namespace, ws: Workspace, split: Split, detector: DetectorSettings
) -> list[dict]:
    """False alarms on Debian sound libraries no training source holds. The teacher rows are
    YAMNet and mn04 as they are: the ensemble is a training tool, and fitting it needs the pools."""
    from pi_monitor.training import transfer
    from pi_monitor.training.evaluate import format_outside, outside_figures

    folder = args.cache / "outside"
    sources = transfer.outside_sources({c.source for c in ws.clips})
    for left in set(transfer.outside_catalogue()) - set(sources):
        print(f"outside: {left.source} left out, the training corpus holds it", file=sys.stderr)
    transfer.build(folder, args.cache / "transfer-tools", args.seed, sources=sources)
    clips = read_manifest(folder)
    cache = AudioCache(clips, SAMPLE_RATE, args.cache)
    reports = []
    for scorer in _scorers(args, ws, split, ensemble=False):
        report = outside_figures(scorer, clips, cache, args.seed, detector)
        print(format_outside(report), flush=True)
        reports.append(report)
    _write_report(args, reports)
    return reports


def _report_rows(parser: argparse.ArgumentParser, path: Path, keys: tuple[str, ...]) -> list[dict]:
    """A report file's rows; a bad file is refused in one line naming it, not a traceback."""
    try:
        rows = json.loads(path.read_text())
    except OSError as err:
        parser.error(f"{path}: cannot read the report ({err.strerror}); {REPORT_FIX}")
    except ValueError:
        parser.error(f"{path}: not a JSON report; {REPORT_FIX}")
    if not (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)):
        parser.error(f"{path}: not a list of report rows; {REPORT_FIX}")
    missing = [k for k in keys if any(k not in r for r in rows)]
    if missing:
        parser.error(f"{path}: report rows lack {', '.join(missing)}; {REPORT_FIX}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pi_monitor.training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "loso"):
        p = sub.add_parser(name)
        _common(p)
        for flag, kind, default, text in (
            ("--epochs", float, 5.0, "passes over the pool"),
            ("--threads", int, 2, "torch threads"),
            ("--mine-rounds", int, 2, "stages on mined hard negatives after the first"),
            ("--mine-epochs", float, 2.0, "passes over pool + mined per round"),
            (
                "--negative-hard-weight",
                float,
                0.5,
                "a labelled non-cry's target is (1 - this) x the teacher's probability",
            ),
            (
                "--animal-audioset-weight",
                float,
                1.0,
                "the AudioSet animal classes count this many times in the auxiliary loss",
            ),
            ("--mel-shift", int, 0, "move each training window up to this many mel bands"),
            (
                "--teacher-embedding-weight",
                float,
                0.0,
                "weight of heads that learn the teachers' embeddings (1 - cosine); 0: none",
            ),
            (
                "--animal-negative-hard-weight",
                float,
                None,
                "like --negative-hard-weight, for non-cries holding an animal clip",
            ),
            (
                "--finish-animal-negative-hard-weight",
                float,
                None,
                "--animal-negative-hard-weight for the last stage only: rank clips first, "
                "learn restraint on animals last",
            ),
            ("--mined-cries", int, 1, "cries mixed over each mined window"),
            ("--widths", _widths, None, "channels per convolution layer, comma-separated"),
            (
                "--mine-threshold",
                float,
                ON_THRESHOLD_RANGE[0],
                "mine the training non-cries' windows scoring at least this",
            ),
            (
                "--train-seed",
                int,
                None,
                "seeds the student's initialisation and batch order only (default: --seed, "
                "which also draws the split and the pool)",
            ),
        ):
            p.add_argument(flag, type=kind, default=default, help=text)
        p.add_argument(
            "--last-from-scratch",
            action="store_true",
            help="train the last stage from initialisation, with the first stage's recipe, "
            "on the pool and every mined window",
        )
        p.add_argument(
            "--animal-teacher",
            choices=("mn04", "yamnet"),
            default="mn04",
            help="whose AudioSet probabilities the animal classes learn",
        )
        p.add_argument("--out", type=Path, default=STUDENT_OUT, help=STUDENT_OUT_HELP)
        p.add_argument("--checkpoint", type=Path, default=DEFAULT_CACHE / "runs" / "cry.pt")
    sub.choices["train"].add_argument(
        "--with-val-groups",
        action="store_true",
        help="also train on the validation groups: a last model once its recipe is chosen, "
        "read on the test (validation then checks nothing); needs --temperature",
    )
    sub.choices["train"].add_argument(
        "--temperature",
        type=float,
        help="with --with-val-groups: the fitted temperature of the same recipe trained without "
        "them (the threshold is then the ceiling, 0.95)",
    )
    sub.choices["loso"].add_argument(
        "--fold", type=int, choices=range(len(LOSO_FOLDS)), help="run only this fold (0-based)"
    )
    p = sub.add_parser("evaluate")
    _common(p)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument(
        "--on",
        choices=("test", "val", "outside"),
        default="test",
        help="val: figures on the validation clips, for choosing a recipe without the test; "
        "outside: false alarms on Debian sound libraries no training source holds",
    )
    for p in (sub.choices["loso"], sub.choices["evaluate"]):
        p.add_argument("--config", type=Path, help="evaluate with this config's [detector] table")
        p.add_argument("--report", type=Path, help="also write the figures as JSON here")
        p.add_argument(
            "--mixtures-per-cry",
            type=_count,
            default=1,
            help="event test: mix each cry this many times (other beds and places); 4 halves "
            "the onset figures' spread on validation's few cries",
        )
        p.add_argument(
            "--with-teachers",
            action=argparse.BooleanOptionalAction,
            default=p is sub.choices["loso"],
            help="add the teacher rows (YAMNet and mn04 as they are, the ensemble); "
            "loso adds them unless --no-with-teachers",
        )
    p = sub.add_parser("join")
    _common(p)
    p.add_argument(
        "students",
        type=Path,
        nargs="+",
        help="exported students, the longest window last (the others shorter by whole hops)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--float16", action="store_true", help="store the weights at half size")
    p.add_argument(
        "--combine",
        choices=tuple(COMBINE),
        default="mean",
        help="the members' calibrated logits averaged, or their least (each must hear a cry; "
        "the others run only where the first reaches the lowest allowed threshold)",
    )
    p.add_argument(
        "--threshold",
        type=_threshold("an on-threshold", *ON_THRESHOLD_RANGE),
        help="record this on-threshold instead of fitting one (the shipped model's was chosen "
        "on validation from a list written before its figures)",
    )
    p.add_argument(
        "--sure-threshold",
        type=_threshold("a sure-threshold", ON_THRESHOLD_RANGE[0], 1.0),
        help="record a score that confirms a bout at once (the shipped model's 0.98 was chosen "
        "on validation by a rule written before its figures); absent, every bout waits",
    )
    p = sub.add_parser("export")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=STUDENT_OUT, help=STUDENT_OUT_HELP)
    p = sub.add_parser("tables")
    p.add_argument("reports", type=Path, nargs="+", help="JSON written by evaluate --report")
    p = sub.add_parser("curve")
    p.add_argument("reports", type=Path, nargs="+", help="evaluate --report JSON, one per run")
    p = sub.add_parser("compare")
    p.add_argument("reports", type=Path, nargs=2, help="evaluate --report JSON: before, after")
    p = sub.add_parser("teachers")
    p.add_argument("--teachers", type=Path, default=DEFAULT_TEACHERS, help="teachers folder")
    p.add_argument("files", type=Path, nargs="+", help="audio files (any rate, mixed to mono)")
    p = sub.add_parser("transfer")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="builds DIR/transfer")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "teachers":
        from pi_monitor.training.teachers import listen

        return listen(args.files, args.teachers)
    if args.command == "transfer":
        from pi_monitor.training.transfer import main as transfer

        return transfer(args.cache, args.seed)
    if args.command == "tables":
        from pi_monitor.training.evaluate import TABLE_KEYS, card_tables

        print(card_tables([r for p in args.reports for r in _report_rows(parser, p, TABLE_KEYS)]))
        return 0
    if args.command == "curve":
        from pi_monitor.training.evaluate import CURVE_KEYS, trade_off

        runs = {p.stem: _report_rows(parser, p, CURVE_KEYS)[0] for p in args.reports}
        try:
            print(trade_off(runs))
        except ValueError as err:
            parser.error(str(err))
        return 0
    if args.command == "compare":
        from pi_monitor.training.evaluate import paired_onsets

        before, after = (
            (p.stem, _report_rows(parser, p, ("events", "threshold"))[0]) for p in args.reports
        )
        try:
            print(paired_onsets(before, after))
        except ValueError as err:
            parser.error(str(err))
        return 0
    if args.command == "export":
        from pi_monitor.training.export import export
        from pi_monitor.training.train import CheckpointError, load_checkpoint

        try:
            trained = load_checkpoint(args.checkpoint)
        except CheckpointError as e:
            parser.error(str(e))
        export(trained, args.out)
        print(f"{args.out}: exported from {args.checkpoint}")
        return 0
    if args.command == "train":  # half a last model is refused before the corpus is read
        with_val, other_split = args.with_val_groups, args.cry_source or args.permissive
        if with_val != (args.temperature is not None) or (with_val and other_split):
            raise SystemExit(
                "error: --with-val-groups and --temperature go together (a run of the recipe "
                "without the validation groups prints its temperature), on the held-out-groups "
                "split (no --cry-source, no --permissive)"
            )
    from pi_monitor.classifier import CryClassifier, ModelError
    from pi_monitor.training.debian import PackageError
    from pi_monitor.training.lullabies import RenderError

    try:
        if args.command == "evaluate":  # a wrong --model is named now, not after the corpus
            CryClassifier(Path(args.model))
        if args.command == "join":  # a wrong set is named now, not after the corpus
            from pi_monitor.training.join import members

            members(args.students)
        ws = Workspace(args)
        config = getattr(args, "config", None)  # evaluate and loso only
        detector = load_settings(config).detector if config else DetectorSettings()
    except (FileNotFoundError, ConfigError, ModelError, PackageError, RenderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "join":
        _join(args, ws, _split(args, ws.clips))
    elif args.command == "train":
        _train(args, ws, _split(args, ws.clips))
    elif args.command == "evaluate" and args.on == "outside":
        try:
            _evaluate_outside(args, ws, _split(args, ws.clips), detector)
        except PackageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.command == "evaluate":
        split = _split(args, ws.clips)
        if args.on == "val":
            split = dataclasses.replace(split, name=split.name + ":val", test=split.val)
        _evaluate(args, ws, split, detector)
    else:
        folds = LOSO_FOLDS if args.fold is None else LOSO_FOLDS[args.fold : args.fold + 1]
        for cry_source, family in folds:
            args.cry_source, args.family = cry_source, family
            split = _split(args, ws.clips)
            name = _run_name(split)
            args.out, args.checkpoint = ws.runs / f"{name}.onnx", ws.runs / f"{name}.pt"
            args.model, args.report = args.out, ws.runs / f"{name}.json"
            _train(args, ws, split)
            _evaluate(args, ws, split, detector)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
