"""The cry teacher: a logistic head on each AudioSet teacher's embedding, and their ensemble.

Each head starts from what its teacher already knows, the teacher's own "Baby cry, infant cry"
logit, and learns a correction from its embedding on pi-monitor's labelled training windows:
`logit = a * teacher_cry_logit + w . embedding + b`. The correction is L2-penalised (strength
chosen on validation windows), so where cry-data is silent (songs from other cultures, animals
it lacks) the head falls back on the teacher's judgement instead of on what 4 hours of audio
happened to teach; a head trained on cry-data alone learned "tonal voice = cry". The two heads'
logits are averaged and the mean is calibrated by one temperature on validation windows.

A head only ever sees windows its split may train on (`Pool.usable`), so a leave-one-source-out
fold's teacher has not heard the fold's held-out cry source or negative family either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pi_monitor.training.pool import Pool

YAMNET_CRY = 20  # "Baby cry, infant cry" in YAMNet's 521 classes
MN04_CRY = 23  # the same class in mn04's 527
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)
EPS = 1e-6


def yamnet_prior(probability: np.ndarray) -> np.ndarray:
    """YAMNet's own cry logit from its cry probability (the tflite model gives probabilities)."""
    p = np.clip(np.asarray(probability, np.float64)[..., YAMNET_CRY], EPS, 1 - EPS)
    return np.log(p / (1 - p))


def mn04_prior(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits, np.float64)[..., MN04_CRY]


@dataclass(frozen=True)
class Head:
    """logit = prior_weight * teacher's cry logit + weights . embedding + bias."""

    weights: np.ndarray
    prior_weight: float
    bias: float

    def logit(self, embedding: np.ndarray, prior: np.ndarray) -> np.ndarray:
        return (
            np.asarray(embedding, np.float64) @ self.weights + self.prior_weight * prior + self.bias
        )


def _bce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, logits) - labels * logits))


def fit_head(
    embedding: np.ndarray,
    prior: np.ndarray,
    labels: np.ndarray,
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    penalties: tuple[float, ...] = PENALTIES,
) -> Head:
    """The head with the L2 penalty (on the embedding weights only) best on validation."""
    mean, std = embedding.mean(axis=0), embedding.std(axis=0) + 1e-3
    x = torch.from_numpy(((embedding - mean) / std).astype(np.float32))
    p = torch.from_numpy(prior.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    best: tuple[float, Head] | None = None
    for penalty in penalties:
        w, a, b = _lbfgs(x, p, y, penalty)
        weights = w.astype(np.float64) / std
        head = Head(weights, a, b - float(weights @ mean))
        score = _bce(head.logit(val[0], val[1]), val[2])
        if best is None or score < best[0]:
            best = (score, head)
    assert best is not None
    return best[1]


def _lbfgs(
    x: torch.Tensor, p: torch.Tensor, y: torch.Tensor, penalty: float
) -> tuple[np.ndarray, float, float]:
    """Logistic regression `x . w + a * p + b`, L2 `penalty` on w, solved with L-BFGS."""
    w = torch.zeros(x.shape[1], requires_grad=True)
    a = torch.ones((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([w, a, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + a * p + b, y)
        loss = loss + penalty * torch.sum(w * w)
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach().numpy(), float(a.detach()), float(b.detach())


@dataclass(frozen=True)
class CryTeacher:
    """The two heads' mean logit, divided by a temperature fitted on validation."""

    yamnet: Head
    mn04: Head
    temperature: float = 1.0

    def logit(
        self,
        yamnet_embedding: np.ndarray,
        yamnet_probability: np.ndarray,
        mn04_embedding: np.ndarray,
        mn04_logit: np.ndarray,
    ) -> np.ndarray:
        y = self.yamnet.logit(yamnet_embedding, yamnet_prior(yamnet_probability))
        m = self.mn04.logit(mn04_embedding, mn04_prior(mn04_logit))
        return (y + m) / 2 / self.temperature

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            **{
                f"{name}_{part}": value
                for name, head in (("yamnet", self.yamnet), ("mn04", self.mn04))
                for part, value in (
                    ("weights", head.weights),
                    ("prior_weight", head.prior_weight),
                    ("bias", head.bias),
                )
            },
            temperature=self.temperature,
        )

    @classmethod
    def load(cls, path: Path) -> CryTeacher:
        saved = np.load(path)

        def head(name: str) -> Head:
            return Head(
                saved[f"{name}_weights"],
                float(saved[f"{name}_prior_weight"]),
                float(saved[f"{name}_bias"]),
            )

        return cls(head("yamnet"), head("mn04"), float(saved["temperature"]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises validation log-loss (grid in log space)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 161))
    return float(grid[np.argmin([_bce(logits / t, labels) for t in grid])])


def _inputs(pool: Pool, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """(yamnet embedding, yamnet prior, mn04 embedding, mn04 prior, labels) of labelled rows."""
    rows = rows[pool["label"][rows] >= 0]
    return (
        np.asarray(pool["yamnet_embedding"][rows], np.float32),
        yamnet_prior(pool["yamnet_probability"][rows]),
        np.asarray(pool["mn04_embedding"][rows], np.float32),
        mn04_prior(pool["mn04_logit"][rows]),
        np.asarray(pool["label"][rows], np.float64),
    )


def fit_cry_teacher(
    pool: Pool, rows: np.ndarray, val_pool: Pool, val_rows: np.ndarray
) -> CryTeacher:
    """Both heads on the labelled windows of `rows`, penalty and temperature on validation."""
    ye, yp, me, mp, labels = _inputs(pool, rows)
    vye, vyp, vme, vmp, vlabels = _inputs(val_pool, val_rows)
    yamnet = fit_head(ye, yp, labels, (vye, vyp, vlabels))
    mn04 = fit_head(me, mp, labels, (vme, vmp, vlabels))
    val_logits = (yamnet.logit(vye, vyp) + mn04.logit(vme, vmp)) / 2
    return CryTeacher(yamnet, mn04, fit_temperature(val_logits, vlabels))


def teacher_logits(teacher: CryTeacher, pool: Pool, rows: np.ndarray) -> np.ndarray:
    """The cry teacher's logit for each of `rows`, in chunks (the pool is memory-mapped)."""
    out = np.empty(len(rows))
    for i in range(0, len(rows), 65536):
        r = rows[i : i + 65536]
        out[i : i + len(r)] = teacher.logit(
            pool["yamnet_embedding"][r],
            pool["yamnet_probability"][r],
            pool["mn04_embedding"][r],
            pool["mn04_logit"][r],
        )
    return out
