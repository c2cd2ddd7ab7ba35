"""Seeded training: augmented batches in worker processes, AdamW, checkpoint by validation loss,
temperature fitted on validation, threshold from validation negatives.

Batch i is drawn from `SeedSequence(seed, i)`, so results do not depend on the worker count.
Validation clips are never trained on; test clips are never looked at here.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.pool import AsyncResult
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pi_monitor.training.corpus import AudioCache, Clip, Split
from pi_monitor.training.examples import (
    FRONT_END,
    WINDOW_FRAMES,
    ExampleSampler,
    Mixing,
    clip_windows,
)
from pi_monitor.training.model import CryNet, macs


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a trained model besides the data."""

    steps: int = 2400
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.05
    val_examples: int = 2048
    val_every: int = 300
    threshold_quantile: float = 0.999
    seed: int = 0
    threads: int = 1
    workers: int = 1


@dataclass(frozen=True)
class Trained:
    """A trained model and what validation said about it."""

    model: CryNet
    recipe: Recipe
    split: str
    threshold: float
    temperature: float
    val_loss: float
    val_recall_at_threshold: float
    macs_per_window: int
    seconds: float


PREFETCH = 8
_SAMPLER: ExampleSampler | None = None


def _init_worker(sampler: ExampleSampler) -> None:
    global _SAMPLER
    _SAMPLER = sampler


def _make_batch(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, index, size = args
    assert _SAMPLER is not None
    return _SAMPLER.batch(np.random.default_rng([seed, index]), size)


def batches(
    sampler: ExampleSampler, seed: int, count: int, size: int, workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`count` batches in order; batch i depends only on (seed, i).

    At most `PREFETCH` batches per worker wait for the trainer: `Pool.imap` would let the workers
    run ahead through every batch of the run and hold them all in memory (2 GB at 2400 steps).
    """
    jobs = ((seed, i, size) for i in range(count))
    if workers <= 0:
        _init_worker(sampler)
        yield from map(_make_batch, jobs)
        return
    with multiprocessing.get_context("fork").Pool(workers, _init_worker, (sampler,)) as pool:
        pending: deque[AsyncResult] = deque()
        for job in jobs:
            pending.append(pool.apply_async(_make_batch, (job,)))
            if len(pending) >= PREFETCH * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _logits(model: CryNet, feats: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = torch.cat(
            [model(torch.from_numpy(feats[i : i + 512])) for i in range(0, len(feats), 512)]
        )
    return out.numpy().astype(np.float64)


def _bce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, logits) - labels * logits))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises validation log-loss (grid in log space)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 161))
    return float(grid[np.argmin([_bce(logits / t, labels) for t in grid])])


def train(
    split: Split,
    cache: AudioCache,
    recipe: Recipe = Recipe(),
    progress: bool = True,
) -> Trained:
    import time

    started = time.process_time()
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    sampler = ExampleSampler(split.train, cache)
    val_sampler = ExampleSampler(split.val, cache, Mixing(spec_mask=0.0))
    val_x, val_y = next(batches(val_sampler, recipe.seed + 10_000, 1, recipe.val_examples, 0))

    model = CryNet(WINDOW_FRAMES, FRONT_END.n_mels)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, recipe.lr, total_steps=recipe.steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    smooth = recipe.label_smoothing
    best_loss, best_state = np.inf, None
    stream = batches(sampler, recipe.seed, recipe.steps, recipe.batch, recipe.workers)
    bar = tqdm(stream, total=recipe.steps, desc=f"training {split.name}", disable=not progress)
    for step, (x, y) in enumerate(bar, 1):
        model.train()
        target = torch.from_numpy(y * (1 - smooth) + smooth / 2)
        loss = loss_fn(model(torch.from_numpy(x)), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % recipe.val_every == 0 or step == recipe.steps:
            val_loss = _bce(_logits(model, val_x), val_y)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_loss:.3f}")
            if val_loss < best_loss:
                best_loss = val_loss
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()

    temperature = fit_temperature(_logits(model, val_x), val_y)
    model.temperature.fill_(temperature)
    threshold = choose_threshold(model, split.val, cache, recipe.threshold_quantile)
    val_scores = 1 / (1 + np.exp(-_logits(model, val_x)))
    return Trained(
        model=model,
        recipe=recipe,
        split=split.name,
        threshold=threshold,
        temperature=temperature,
        val_loss=_bce(_logits(model, val_x), val_y),
        val_recall_at_threshold=float(np.mean(val_scores[val_y == 1] >= threshold)),
        macs_per_window=macs(model),
        seconds=time.process_time() - started,
    )


def choose_threshold(
    model: CryNet, val: Sequence[Clip], cache: AudioCache, quantile: float
) -> float:
    """On-threshold = a high quantile of scores on unaugmented validation negatives' windows.

    Kept within [0.5, 0.95] so the score stays a probability-like number a user can reason about.
    """
    windows = [clip_windows(cache.audio(c)) for c in val if not c.is_cry]
    logits = _logits(model, np.concatenate(windows))
    scores = 1 / (1 + np.exp(-logits))
    return float(np.clip(np.quantile(scores, quantile), 0.5, 0.95))


def save_checkpoint(trained: Trained, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in asdict(trained).items() if k not in ("model", "recipe")}
    torch.save(
        {"state": trained.model.state_dict(), "recipe": asdict(trained.recipe), **fields}, path
    )


def load_checkpoint(path: Path) -> Trained:
    saved = torch.load(path, weights_only=False)
    model = CryNet(WINDOW_FRAMES, FRONT_END.n_mels)
    model.load_state_dict(saved.pop("state"))
    model.eval()
    return Trained(model=model, recipe=Recipe(**saved.pop("recipe")), **saved)
