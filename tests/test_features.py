"""The runtime log-mel extractor equals librosa and gives the same frames for any block size."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from pi_monitor.features import FeatureExtractor, FeatureParams

PARAMS = [
    FeatureParams(),
    FeatureParams(
        sample_rate=8000,
        n_fft=256,
        win_length=200,
        hop_length=80,
        n_mels=40,
        fmin=50.0,
        fmax=3800.0,
    ),
    FeatureParams(
        sample_rate=16000,
        n_fft=400,
        win_length=400,
        hop_length=320,
        n_mels=32,
        fmin=0.0,
        fmax=8000.0,
    ),
]


def _signal(rate: int, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t)
    x[: rate // 2] *= 1e-4  # a near-silent start exercises the log offset
    return x.astype(np.float32)


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p.sample_rate}Hz-{p.n_fft}-{p.n_mels}")
def test_features_match_librosa_within_1e4(params: FeatureParams) -> None:
    x = _signal(params.sample_rate)
    ours = FeatureExtractor(params).batch(x)
    mel = librosa.feature.melspectrogram(
        y=x,
        sr=params.sample_rate,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        win_length=params.win_length,
        center=False,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
        power=2.0,
    )
    reference = np.log(mel + params.log_offset).T
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-4


@pytest.mark.parametrize("block", [1, 160, 1000, 16000, 48000])
def test_streaming_frames_equal_batch_for_any_block_size(block: int) -> None:
    params = PARAMS[1]
    x = _signal(params.sample_rate, 7.0)
    batch = FeatureExtractor(params).batch(x)
    extractor = FeatureExtractor(params)
    streamed = np.concatenate(
        [extractor.process(x[i : i + block]) for i in range(0, len(x), block)]
    )
    assert streamed.shape == batch.shape
    np.testing.assert_allclose(streamed, batch, atol=1e-5)
    assert extractor.frames_done == len(batch)


def test_short_input_gives_no_frames_until_a_window_is_full() -> None:
    params = PARAMS[1]
    extractor = FeatureExtractor(params)
    assert extractor.process(np.zeros(params.n_fft - 1, np.float32)).shape == (0, params.n_mels)
    assert extractor.process(np.zeros(1, np.float32)).shape == (1, params.n_mels)


def test_inconsistent_front_end_is_refused() -> None:
    with pytest.raises(ValueError, match="fmax"):
        FeatureParams(sample_rate=8000, fmax=6000.0)
    with pytest.raises(ValueError, match="win_length"):
        FeatureParams(n_fft=256, win_length=400)
