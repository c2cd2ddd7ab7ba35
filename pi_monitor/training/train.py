"""Seeded distillation: the student learns from hard labels and from the teachers at once.

Each training window's cry target blends its hard label (where known) with the cry teacher's
probability, `hard_weight * label + (1 - hard_weight) * teacher` (`negative_hard_weight` for
non-cries: 1.0 teaches them 0 whatever the teacher doubts; tried, see the model card), and is
the teacher's alone for windows only the teachers can judge (a cry that begins inside the
window). A second head learns mn04's 527 AudioSet probabilities from the same embedding, so the
student separates what the teacher separates (songs, meows, music boxes, speech) even where
cry-data has no label for it. Where the recipe gives them a weight, one head per teacher learns
the direction of that teacher's embedding (1 - cosine, mean-centred), the richest thing the
teachers know that probabilities flatten.
AdamW with a one-cycle schedule; checkpoint by validation loss; temperature fitted on validation
windows; threshold from unaugmented validation negatives.

Windows come from the labelled pool (pool.py) with cheap augmentation on the frames: a random
gain (a constant added to log-mel) and SpecAugment masks. The order of windows depends only on
the seed. Validation clips are never trained on; test clips are never looked at here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from pi_monitor.classifier import sigmoid
from pi_monitor.config import ON_THRESHOLD_RANGE
from pi_monitor.features import FeatureExtractor
from pi_monitor.training.corpus import AudioCache, Clip
from pi_monitor.training.evaluate import THRESHOLD_QUANTILE, threshold_from_negatives
from pi_monitor.training.examples import FRONT_END, pad_to, window_samples
from pi_monitor.training.heads import CryTeacher, fit_temperature, teacher_logits
from pi_monitor.training.model import CryNet, macs
from pi_monitor.training.pool import FIELDS, Pool

ANIMAL_CLASSES = slice(72, 137)  # mn04's AudioSet classes "Animal" to "Whale vocalization"
YAMNET_ANIMAL_CLASSES = slice(67, 132)  # the same 65 classes in YAMNet's 521
TEACHER_EMBEDDINGS = ("yamnet_embedding", "mn04_embedding")  # pool fields the teacher heads learn
CENTRE_ROWS = 20_000  # pool windows the teachers' mean embeddings are taken over


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a trained model besides the data."""

    epochs: float = 5.0
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-2
    hard_weight: float = 0.5
    negative_hard_weight: float = 0.5
    audioset_weight: float = 1.0
    animal_audioset_weight: float = 1.0  # how many times the animal classes count in that loss
    animal_teacher: Literal["mn04", "yamnet"] = "mn04"  # whose the animal classes learn
    family_weights: tuple[tuple[str, float], ...] = (("animals", 3.0),)
    # a labelled non-cry's hard weight per family, where above negative_hard_weight
    family_negative_weights: tuple[tuple[str, float], ...] = ()
    gain_db: float = 10.0
    spec_mask: float = 0.5
    mel_shift: int = 0  # each window's mel bands move up or down by up to this many
    teacher_embedding_weight: float = 0.0  # of the teacher heads' 1 - cosine loss; 0: no heads
    val_every: int = 400
    threshold_quantile: float = THRESHOLD_QUANTILE
    widths: tuple[int, ...] = (16, 32, 32, 64, 64, 96, 96)
    embedding: int = 128
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class Trained:
    """A trained student and what validation said about it."""

    model: CryNet
    recipe: Recipe
    split: str
    threshold: float
    temperature: float
    val_loss: float
    val_recall_at_threshold: float
    macs_per_window: int
    macs_per_hop: int
    seconds: float


def _targets(
    pool: Pool,
    rows: np.ndarray,
    teacher: CryTeacher,
    recipe: Recipe,
    negative_weights: np.ndarray | float | None = None,
) -> np.ndarray:
    """Hard label and the cry teacher's probability blended; a labelled non-cry's share of hard
    label is `negative_weights` per row where given (by family), else the recipe's."""
    soft = sigmoid(teacher_logits(teacher, pool, rows))
    labels = np.asarray(pool["label"][rows], np.float64)
    if negative_weights is None:
        negative_weights = recipe.negative_hard_weight
    weight = np.where(labels > 0, recipe.hard_weight, negative_weights)
    return np.where(labels >= 0, weight * labels + (1 - weight) * soft, soft).astype(np.float32)


def _audioset_targets(pool: Pool, rows: np.ndarray, recipe: Recipe) -> np.ndarray:
    """mn04's AudioSet probabilities; the animal classes YAMNet's where the recipe says so
    (YAMNet hears a cat in most windows where the student false-alarms; mn04 rarely does)."""
    targets = sigmoid(np.asarray(pool["mn04_logit"][rows], np.float32))
    if recipe.animal_teacher == "yamnet":
        targets[:, ANIMAL_CLASSES] = pool["yamnet_probability"][rows][:, YAMNET_ANIMAL_CLASSES]
    return targets


def student(recipe: Recipe) -> CryNet:
    """The network a recipe trains: with a head per teacher embedding where it learns them."""
    dims = [FIELDS[name][0][0] for name in TEACHER_EMBEDDINGS]
    return CryNet(
        FRONT_END.n_mels,
        recipe.widths,
        recipe.embedding,
        tuple(dims) if recipe.teacher_embedding_weight else (),
    )


def _centres(pool: Pool, rows: np.ndarray) -> list[np.ndarray]:
    """Each teacher's mean embedding over an even spread of the training rows: two unrelated
    pool windows' raw embeddings agree at a cosine of about 0.3 (YAMNet) and 0.5 (mn04), centred
    at about 0."""
    spread = rows[:: max(1, len(rows) // CENTRE_ROWS)]
    return [np.asarray(pool[name][spread], np.float32).mean(axis=0) for name in TEACHER_EMBEDDINGS]


def _embedding_loss(
    heads: list[torch.Tensor], pool: Pool, rows: np.ndarray, centres: list[np.ndarray]
) -> torch.Tensor:
    """1 - cosine between each teacher head's output and that teacher's centred embedding."""
    losses = [
        1
        - torch.nn.functional.cosine_similarity(
            head[:, :, 0], torch.from_numpy(np.asarray(pool[name][rows], np.float32) - centre)
        ).mean()
        for head, name, centre in zip(heads, TEACHER_EMBEDDINGS, centres, strict=True)
    ]
    return torch.stack(losses).mean()


def _augment(rng: np.random.Generator, feats: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Random gain (power scales by 10^(dB/10), so the log-mel shifts by its log), mel-band
    shifts where the recipe asks for them, and masks."""
    gain = rng.uniform(-recipe.gain_db, recipe.gain_db, (len(feats), 1, 1)) * np.log(10) / 10
    feats = feats + gain.astype(np.float32)
    if recipe.mel_shift:
        feats = _shift_bands(rng, feats, recipe.mel_shift)
    for i in np.flatnonzero(rng.random(len(feats)) < recipe.spec_mask):
        _mask(rng, feats[i])
    return feats


def _shift_bands(rng: np.random.Generator, feats: np.ndarray, most: int) -> np.ndarray:
    """Move each window's spectrum up or down a few mel bands, the edge band repeated: a pitch
    change for the cats and babies the pool holds, so the student cannot learn them by pitch."""
    bands = feats.shape[2]
    shift = rng.integers(-most, most + 1, (len(feats), 1, 1))
    index = np.clip(np.arange(bands) - shift, 0, bands - 1)
    return np.take_along_axis(feats, np.broadcast_to(index, feats.shape), axis=2)


def _mask(rng: np.random.Generator, frames: np.ndarray) -> None:
    """SpecAugment: blank a few mel bands and frames, so no single band or instant decides."""
    fill = frames.mean()
    width = int(rng.integers(0, 9))
    low = int(rng.integers(0, frames.shape[1] - width + 1))
    frames[:, low : low + width] = fill
    span = int(rng.integers(0, 9))
    first = int(rng.integers(0, frames.shape[0] - span + 1))
    frames[first : first + span] = fill


def _logits(model: CryNet, feats: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [
            model(torch.from_numpy(np.asarray(feats[i : i + 1024], np.float32)))[:, 0]
            for i in range(0, len(feats), 1024)
        ]
    return torch.cat(out).numpy().astype(np.float64)


def _bce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, logits) - labels * logits))


def train(
    pool: Pool,
    rows: np.ndarray,
    weights: np.ndarray,
    val_pool: Pool,
    val_rows: np.ndarray,
    teacher: CryTeacher,
    val_clips: Sequence[Clip],
    cache: AudioCache,
    split: str,
    recipe: Recipe = Recipe(),
    progress: bool = True,
    start: CryNet | None = None,
    negative_weights: np.ndarray | None = None,
    calibration: tuple[float, float] | None = None,
) -> Trained:
    """Train on pool `rows` (each row's cry loss times `weights`) with `teacher`'s targets;
    validate on `val_rows` and `val_clips`. From `start` (its temperature reset), if given;
    `negative_weights`: each row's hard weight if labelled non-cry (see `_targets`);
    `calibration`: a fixed (temperature, threshold), where validation was trained on."""
    started = time.process_time()
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    model = student(recipe)
    if model.window_frames != pool.window_frames:
        raise ValueError(
            f"{len(recipe.widths)} widths make a {model.window_frames}-frame window, but the "
            f"pool's windows are {pool.window_frames} frames: give --window-frames and --widths "
            "that agree"
        )
    rng = np.random.default_rng(recipe.seed)
    targets = _targets(pool, rows, teacher, recipe, negative_weights)
    known = val_rows[val_pool["label"][val_rows] >= 0]
    val_x = np.asarray(val_pool["features"][known], np.float32)
    val_y = np.asarray(val_pool["label"][known], np.float64)

    centres = _centres(pool, rows) if recipe.teacher_embedding_weight else []
    if start is not None:
        model.load_state_dict(start.state_dict())
        model.temperature.fill_(1.0)
    steps = max(1, int(recipe.epochs * len(rows) / recipe.batch))
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, recipe.lr, total_steps=steps)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    class_weights = torch.ones(pool["mn04_logit"].shape[1])
    class_weights[ANIMAL_CLASSES] = recipe.animal_audioset_weight
    best_loss, best_state = np.inf, None
    order = np.concatenate(
        [rng.permutation(len(rows)) for _ in range(int(np.ceil(recipe.epochs)) + 1)]
    )
    bar = tqdm(range(1, steps + 1), desc=f"training {split}", disable=not progress)
    for step in bar:
        pick = np.sort(order[(step - 1) * recipe.batch : step * recipe.batch])
        r = rows[pick]
        x = _augment(rng, np.asarray(pool["features"][r], np.float32), recipe)
        audioset = _audioset_targets(pool, r, recipe)
        model.train()
        cry, classes, heads = model.both(torch.from_numpy(x))
        weight = torch.from_numpy(weights[pick])
        per_row = bce(cry[:, 0], torch.from_numpy(targets[pick]), reduction="none")
        loss = (weight * per_row).sum() / weight.sum() + recipe.audioset_weight * bce(
            classes[:, :, 0], torch.from_numpy(audioset), weight=class_weights
        )
        if heads:
            loss = loss + recipe.teacher_embedding_weight * _embedding_loss(heads, pool, r, centres)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % recipe.val_every == 0 or step == steps:
            val_loss = _bce(_logits(model, val_x), val_y)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_loss:.4f}")
            if val_loss < best_loss:
                best_loss = val_loss
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()

    if calibration is None:
        temperature = fit_temperature(_logits(model, val_x), val_y)
        model.temperature.fill_(temperature)
        threshold = choose_threshold(model, val_clips, cache, recipe.threshold_quantile)
    else:
        temperature, threshold = calibration
        model.temperature.fill_(temperature)
    val_scores = sigmoid(_logits(model, val_x))
    window = macs(model)
    return Trained(
        model=model,
        recipe=recipe,
        split=split,
        threshold=threshold,
        temperature=temperature,
        val_loss=_bce(_logits(model, val_x), val_y),
        val_recall_at_threshold=float(np.mean(val_scores[val_y == 1] >= threshold)),
        macs_per_window=window,
        macs_per_hop=(macs(model, model.window_frames + 100 * model.hop_frames) - window) // 100,
        seconds=time.process_time() - started,
    )


def clip_logits(model: CryNet, audio: np.ndarray) -> np.ndarray:
    """Every window of a clip at the model's hop, as the service computes them."""
    n = window_samples(frames=model.window_frames)
    frames = FeatureExtractor(FRONT_END).batch(pad_to(audio, n))
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(frames[None]))[0].numpy().astype(np.float64)


def choose_threshold(
    model: CryNet, val: Sequence[Clip], cache: AudioCache, quantile: float
) -> float:
    """On-threshold from unaugmented validation negatives' windows; at least 0.5, where the
    calibrated student starts to say "more likely a cry"."""
    logits = np.concatenate([clip_logits(model, cache.audio(c)) for c in val if not c.is_cry])
    return threshold_from_negatives(sigmoid(logits), quantile, floor=ON_THRESHOLD_RANGE[0])


def save_checkpoint(trained: Trained, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in asdict(trained).items() if k not in ("model", "recipe")}
    torch.save(
        {"state": trained.model.state_dict(), "recipe": asdict(trained.recipe), **fields}, path
    )


class CheckpointError(ValueError):
    """A checkpoint file is missing or is not one `save_checkpoint` wrote; says which."""


def load_checkpoint(path: Path) -> Trained:
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there; `train --checkpoint FILE` writes one")
    try:
        saved = torch.load(path, weights_only=False)
        fields = saved.pop("recipe")
        fields.setdefault("negative_hard_weight", fields["hard_weight"])  # one weight served both
        recipe = Recipe(**{**fields, "widths": tuple(fields["widths"])})
        model = student(recipe)
        model.load_state_dict(saved.pop("state"))
        model.eval()
        return Trained(model=model, recipe=recipe, **saved)
    except Exception as e:  # torch.load raises whatever unpickling a foreign file raises
        raise CheckpointError(
            f"{path}: not a checkpoint `train` wrote ({type(e).__name__}: {e}); "
            "pass the --checkpoint file a train run saved"
        ) from None
