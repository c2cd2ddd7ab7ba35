"""The pipeline makes the same decisions whatever the block size, in audio time."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from pi_monitor.audio import FileSource
from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DetectorSettings
from pi_monitor.events import CryOnset, Score
from pi_monitor.pipeline import Pipeline

from model_factory import loudness_model


def _events(model, path, block: int) -> list[dict]:
    classifier = CryClassifier(model)
    pipeline = Pipeline(classifier, DetectorSettings())
    source = FileSource(path, classifier.info.features.sample_rate, block_frames=48000)
    audio = np.concatenate(list(source.blocks()))
    events = []
    for i in range(0, len(audio), block):
        events += pipeline.process(audio[i : i + block])
    return [e.to_dict() for e in events + pipeline.finish()]


def test_events_are_identical_for_block_sizes_1_to_48000(test_model, fixtures_dir) -> None:
    path = fixtures_dir / "cry_like_16k.wav"
    reference = _events(test_model, path, 48000)
    decisions = [e for e in reference if e["type"] != "score"]
    assert [e["type"] for e in decisions] == ["cry_onset", "cry_end"]
    for block in (1, 160, 1000, 16000):
        events = _events(test_model, path, block)
        assert [e for e in events if e["type"] != "score"] == decisions
        np.testing.assert_allclose(
            [e["score"] for e in events if e["type"] == "score"],
            [e["score"] for e in reference if e["type"] == "score"],
            atol=1e-5,
        )


def test_scores_come_every_window_hop_at_window_centres(test_model) -> None:
    classifier = CryClassifier(test_model)
    info = classifier.info
    pipeline = Pipeline(classifier, DetectorSettings())
    events = pipeline.process(np.zeros(info.features.sample_rate * 5, np.float32))
    times = [e.t for e in events if isinstance(e, Score)]
    assert np.diff(times) == pytest.approx(info.hop_s)
    # First window: frames 0..99 of 10 ms (256-sample FFT at 8 kHz); its centre is 0.511 s.
    assert times[0] == pytest.approx(0.511)
    assert pipeline.time_s == pytest.approx(5.0)


def test_a_join_dates_scores_and_onsets_at_the_part_of_its_window_it_hears(tmp_path) -> None:
    """With `heard_frames` a score describes the window's last frames: its time, and so the
    onset's, moves to their centre; when the onset is decided, and the lookback, do not."""
    plain = CryClassifier(loudness_model(tmp_path / "plain.onnx"))
    end = CryClassifier(loudness_model(tmp_path / "end.onnx", heard_frames=40))
    sr = plain.info.features.sample_rate
    audio = np.zeros(sr * 12, np.float32)
    audio[sr * 5 :] = np.random.default_rng(0).normal(0, 0.3, sr * 7)  # loud from 5 s on
    runs = {}
    for name, classifier in (("plain", plain), ("end", end)):
        events = Pipeline(classifier, DetectorSettings()).process(audio)
        runs[name] = (
            [e.t for e in events if isinstance(e, Score)],
            [e for e in events if isinstance(e, CryOnset)],
        )
    # frames 60..99 of the first window (10 ms frames): centre 0.811 s, not 0.511 s
    assert runs["end"][0][0] == pytest.approx(0.811)
    assert np.array(runs["end"][0]) - np.array(runs["plain"][0]) == pytest.approx(0.3)
    (plain_onset,), (end_onset,) = runs["plain"][1], runs["end"][1]
    assert end_onset.emitted_t == plain_onset.emitted_t
    assert end_onset.t - plain_onset.t == pytest.approx(0.3)


def test_each_score_comes_with_the_sample_that_completes_its_window(test_model) -> None:
    """Blocks wait until a window is due; the wait must never hold a score back."""
    classifier = CryClassifier(test_model)
    info = classifier.info
    p = info.features
    pipeline = Pipeline(classifier, DetectorSettings())
    arrivals = []
    for n in range(1, 2 * p.sample_rate + 1):
        if any(isinstance(e, Score) for e in pipeline.process(np.zeros(1, np.float32))):
            arrivals.append(n)
    last_frames = np.arange(len(arrivals)) * info.window_hop_frames + info.window_frames - 1
    assert len(arrivals) >= 3
    assert arrivals == (last_frames * p.hop_length + p.n_fft).tolist()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS starts no threads anyway")
def test_importing_pi_monitor_keeps_numpy_to_one_thread() -> None:
    """OpenBLAS's spinning threads cost a live service 27 % of a core instead of 1.4 %."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    code = (
        "import os, pi_monitor, numpy as np\n"
        "np.ones((13, 200), np.float32) @ np.ones((200, 244), np.float32)\n"
        "print(len(os.listdir('/proc/self/task')))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
