"""The shipped model: loads through the service's classifier, fits the Pi budget, scores real
audio through the pipeline without saturating. No accuracy is asserted here (see MODEL_CARD.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DEFAULT_MODEL
from pi_monitor.training.examples import FRONT_END, WINDOW_FRAMES, WINDOW_HOP_FRAMES

from model_cost import model_cost

MAX_BYTES = 500_000
MAX_MACS_PER_SECOND = 10_000_000


def test_shipped_model_carries_the_training_front_end_in_its_metadata() -> None:
    info = CryClassifier(DEFAULT_MODEL).info
    assert info.features == FRONT_END
    assert (info.window_frames, info.window_hop_frames) == (WINDOW_FRAMES, WINDOW_HOP_FRAMES)
    assert 0.0 < info.threshold < 1.0 and "CryNet" in info.description


def test_shipped_model_fits_the_file_size_and_multiply_add_budget() -> None:
    cost = model_cost(DEFAULT_MODEL)
    assert cost.file_bytes <= MAX_BYTES
    assert cost.macs_per_second <= MAX_MACS_PER_SECOND


def test_shipped_model_front_end_stays_below_4_khz_so_bandwidth_cannot_be_a_cue() -> None:
    assert CryClassifier(DEFAULT_MODEL).info.features.fmax < 4000


def test_shipped_model_accepts_any_batch_size() -> None:
    classifier = CryClassifier(DEFAULT_MODEL)
    for n in (1, 3, 300):
        windows = np.full((n, WINDOW_FRAMES, FRONT_END.n_mels), -8.0, dtype=np.float32)
        scores, logits = classifier.predict(windows)
        assert scores.shape == logits.shape == (n,)


@pytest.mark.corpus
def test_shipped_model_scores_corpus_cries_through_the_pipeline_without_saturating(
    corpus: Path,
) -> None:
    from pi_monitor.training.corpus import load_resampled, read_manifest
    from pi_monitor.training.evaluate import clip_score

    classifier = CryClassifier(DEFAULT_MODEL)
    cries = [c for c in read_manifest(corpus) if c.is_cry][::60]
    scores = [clip_score(classifier, load_resampled(corpus / c.path, 8000)) for c in cries]
    assert all(0.0 < s < 1.0 for s in scores)
