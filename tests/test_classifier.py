"""Model loading: the front end comes from the metadata, and bad models are named clearly."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

from pi_monitor.classifier import CryClassifier, ModelError, ModelInfo
from pi_monitor.config import DEFAULT_MODEL

from model_factory import FRONT_END, loudness_model


def test_metadata_configures_the_front_end(test_model) -> None:
    info = CryClassifier(test_model).info
    assert info.features.sample_rate == FRONT_END["sample_rate"]
    assert info.features.n_mels == FRONT_END["n_mels"]
    assert info.window_s == pytest.approx(1.0)
    assert info.hop_s == pytest.approx(0.25)


def test_predict_returns_a_score_and_logit_per_window_in_a_run_of_frames(test_model) -> None:
    classifier = CryClassifier(test_model)
    frames = np.full((100 + 25 * 299 + 7, 40), -5.0, np.float32)  # 300 windows, over one call
    scores, logits = classifier.predict(frames)
    assert scores.shape == logits.shape == (300,)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)))
    assert np.all((scores > 0) & (scores < 1))


def test_a_run_of_frames_scores_each_window_as_it_would_alone(test_model) -> None:
    classifier = CryClassifier(test_model)
    frames = np.random.default_rng(0).normal(-8, 3, (100 + 25 * 20, 40)).astype(np.float32)
    _, together = classifier.predict(frames)
    alone = [classifier.predict(frames[25 * j : 25 * j + 100])[1][0] for j in range(21)]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert len(classifier.predict(frames[:99])[1]) == 0


def _edit_metadata(path, **changes: str | None):
    """Rewrite a model's metadata: a value of None removes the key."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    for key, value in props.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_missing_metadata_key_is_named(tmp_path) -> None:
    path = _edit_metadata(loudness_model(tmp_path / "m.onnx"), hop_length=None)
    with pytest.raises(ModelError, match="lacks hop_length"):
        CryClassifier(path)


def test_unparsable_or_inconsistent_metadata_is_named(tmp_path) -> None:
    forty = _edit_metadata(loudness_model(tmp_path / "a.onnx"), n_mels="forty")
    with pytest.raises(ModelError, match="'n_mels' = 'forty' is not int"):
        CryClassifier(forty)
    too_high = _edit_metadata(loudness_model(tmp_path / "b.onnx"), fmax="6000")
    with pytest.raises(ModelError, match="fmax"):
        CryClassifier(too_high)
    mismatch = _edit_metadata(loudness_model(tmp_path / "c.onnx"), n_mels="50")
    with pytest.raises(ModelError, match="input shape"):
        CryClassifier(mismatch)
    beyond = _edit_metadata(loudness_model(tmp_path / "d.onnx"), heard_frames="101")
    with pytest.raises(ModelError, match=r"heard_frames \(101\) must be between 1 and window_"):
        CryClassifier(beyond)
    unsure = _edit_metadata(loudness_model(tmp_path / "e.onnx"), sure_threshold="0.1")
    with pytest.raises(ModelError, match=r"sure_threshold \(0\.1\) must be between threshold"):
        CryClassifier(unsure)


def test_missing_or_corrupt_model_file_is_named(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"nope\.onnx: model file not found"):
        CryClassifier(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"bad\.onnx: not a loadable ONNX model"):
        CryClassifier(bad)


def test_shipped_model_loads_with_a_valid_front_end() -> None:
    info = CryClassifier(DEFAULT_MODEL).info
    assert 0 < info.threshold < 1
    assert info.window_frames > 0 and info.window_hop_frames > 0


def test_the_metadata_a_model_is_exported_with_reads_back_as_the_same_info(test_model) -> None:
    for path in (test_model, DEFAULT_MODEL):
        info = CryClassifier(path).info
        assert ModelInfo.from_metadata(info.metadata(), str(path)) == info
    with_off = dataclasses.replace(CryClassifier(test_model).info, off_threshold=0.3)
    assert ModelInfo.from_metadata(with_off.metadata()).off_threshold == 0.3
    with_heard = dataclasses.replace(with_off, heard_frames=40, sure_threshold=0.99)
    assert ModelInfo.from_metadata(with_heard.metadata()) == with_heard
