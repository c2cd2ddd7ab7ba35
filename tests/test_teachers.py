"""The AudioSet teachers (YAMNet, mn04) against the outputs of their original code.

Needs the `train` extra (torch, ai-edge-litert) and ../shared/teachers; skipped with a reason
without them. The weights are read from ../shared at run time and never copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

TEACHERS = Path(__file__).resolve().parents[1].parent / "shared" / "teachers"
REASON = "pip install -e '.[train]'"
torch = pytest.importorskip("torch", reason=f"torch not installed ({REASON})")
pytest.importorskip("ai_edge_litert", reason=f"ai-edge-litert not installed ({REASON})")

from pi_monitor.training import mn04  # noqa: E402
from pi_monitor.training.teachers import (  # noqa: E402
    DEFAULT_TEACHERS,
    HOP_SAMPLES,
    WINDOW_SAMPLES,
    Teachers,
    YAMNet,
    _upsampled,
    window_count,
)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    path = TEACHERS / "reference_outputs.npz"
    if not path.is_file():
        pytest.skip(f"teacher models not found at {TEACHERS} (they sit beside the project)")
    return dict(np.load(path))


@pytest.fixture(scope="module")
def teachers(reference: dict[str, np.ndarray]) -> Teachers:
    return Teachers(TEACHERS)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Pink-ish noise with a wailing tone: enough structure that the teachers' outputs vary."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.2 * np.sin(2 * np.pi * (450 + 60 * np.sin(2 * np.pi * 1.3 * t)) * t)
    return (tone + 0.05 * np.cumsum(rng.standard_normal(len(t))) / 40).astype(np.float32)


def test_default_teacher_folder_is_beside_the_project() -> None:
    assert DEFAULT_TEACHERS == TEACHERS


def test_kaldi_mel_banks_written_out_equal_the_reference_matrix(reference) -> None:
    """Within the README's 1e-4, matrix and log-mel alike: the shared matrix differs from these
    float32 steps by up to 1.8e-5 at a few triangle edges (57 of 65,664 weights, stop 38)."""
    ours = mn04.kaldi_mel_banks()
    np.testing.assert_allclose(ours.numpy(), reference["mn04_mel_banks"], atol=1e-4)
    front_end = mn04.LogMel()
    audio = torch.from_numpy(reference["mn04_waveform_32k"])
    with torch.inference_mode():
        with_ours = front_end(audio)
        front_end.mel_banks.copy_(torch.from_numpy(reference["mn04_mel_banks"]))
        with_reference = front_end(audio)
    np.testing.assert_allclose(with_ours.numpy(), with_reference.numpy(), atol=1e-4)


def test_mn04_network_loads_the_weights_strictly_and_matches_the_original_code(reference) -> None:
    network = mn04.load_mn04(TEACHERS / "mn04_as_mAP_432.pt")
    with torch.inference_mode():
        logmel = mn04.LogMel()(torch.from_numpy(reference["mn04_waveform_32k"]))
        logits, embedding = network(logmel)
    np.testing.assert_allclose(logmel.numpy(), reference["mn04_logmel"], atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), reference["mn04_logits"], atol=1e-4)
    np.testing.assert_allclose(embedding.numpy(), reference["mn04_embedding"], atol=1e-4)


def test_mn04_teacher_on_32k_audio_matches_the_original_code(teachers, reference) -> None:
    for i, wave in enumerate(reference["mn04_waveform_32k"]):
        scores = teachers.mn04.windows(wave, 32000, window_s=2.0).scores
        np.testing.assert_allclose(scores.logits[0], reference["mn04_logits"][i], atol=1e-4)
        np.testing.assert_allclose(scores.embeddings[0], reference["mn04_embedding"][i], atol=1e-4)
        expected = 1 / (1 + np.exp(-reference["mn04_logits"][i]))
        np.testing.assert_allclose(scores.probabilities[0], expected, atol=1e-5)


def test_mn04_upsamples_16k_audio_to_32k(teachers, reference) -> None:
    wave = reference["yamnet_waveform_16k"][1]  # the cry
    at_16k = teachers.mn04.windows(wave, 16000, window_s=2.0).scores
    upsampled = scipy.signal.resample_poly(wave, 2, 1).astype(np.float32)
    np.testing.assert_allclose(
        at_16k.logits,
        teachers.mn04.windows(upsampled, 32000, window_s=2.0).scores.logits,
        atol=1e-5,
    )
    # The 16 kHz copy has nothing above 8 kHz: close to the full-band reference, not equal.
    expected = 1 / (1 + np.exp(-reference["mn04_logits"][1]))
    np.testing.assert_allclose(at_16k.probabilities[0], expected, atol=0.02)


def test_upsampling_equals_scipys_resample_poly() -> None:
    waves = np.random.default_rng(3).standard_normal((3, WINDOW_SAMPLES)).astype(np.float32)
    expected = scipy.signal.resample_poly(waves, 2, 1, axis=-1)
    np.testing.assert_allclose(_upsampled(waves), expected, atol=1e-6)


def test_yamnet_matches_the_original_code_patch_by_patch(teachers, reference) -> None:
    for i, wave in enumerate(reference["yamnet_waveform_16k"]):
        windows = teachers.yamnet.windows(wave)
        np.testing.assert_allclose(
            windows.scores.probabilities, reference["yamnet_scores"][i], atol=1e-6
        )
        np.testing.assert_allclose(
            windows.scores.embeddings, reference["yamnet_embeddings"][i], atol=1e-6
        )
        np.testing.assert_allclose(windows.start_s, [0.0, 0.48, 0.96, 1.44])
        np.testing.assert_allclose(windows.centre_s, windows.start_s + 0.4875)


def test_yamnet_in_chunks_equals_one_call_even_at_whole_patch_lengths(reference) -> None:
    # 38,640 samples are exactly 4 patches, but YAMNet's own padding makes 5 of them.
    wave = _noise(38640 / 16000)
    whole, chunked = YAMNet(TEACHERS), YAMNet(TEACHERS, chunk_windows=3)
    a, b = whole.windows(wave), chunked.windows(wave)
    assert len(a.start_s) == window_count(len(wave)) == 4
    np.testing.assert_allclose(a.scores.probabilities, b.scores.probabilities, atol=1e-6)
    np.testing.assert_allclose(a.scores.embeddings, b.scores.embeddings, atol=1e-6)


def test_audio_shorter_than_a_window_is_padded_with_silence_at_the_end(teachers) -> None:
    short = _noise(0.5)
    padded = np.pad(short, (0, WINDOW_SAMPLES - len(short)))
    got, expected = teachers.stream(short), teachers.label(padded[None])
    assert len(got.start_s) == 1
    np.testing.assert_allclose(got.yamnet.probabilities, expected.yamnet.probabilities, atol=1e-6)
    np.testing.assert_allclose(got.mn04.logits, expected.mn04.logits, atol=1e-4)


def test_stream_rows_are_the_labels_of_the_windows_cut_from_it(teachers) -> None:
    wave = _noise(4.0)
    timeline = teachers.stream(wave)
    starts = np.arange(len(timeline.start_s)) * HOP_SAMPLES
    padded = np.pad(wave, (0, starts[-1] + WINDOW_SAMPLES - len(wave)))
    labels = teachers.label(np.stack([padded[s : s + WINDOW_SAMPLES] for s in starts]))
    np.testing.assert_allclose(timeline.start_s, starts / 16000)
    np.testing.assert_allclose(
        timeline.yamnet.probabilities, labels.yamnet.probabilities, atol=1e-6
    )
    np.testing.assert_allclose(timeline.yamnet.embeddings, labels.yamnet.embeddings, atol=1e-6)
    np.testing.assert_allclose(timeline.mn04.logits, labels.mn04.logits, atol=1e-4)
    np.testing.assert_allclose(timeline.mn04.embeddings, labels.mn04.embeddings, atol=1e-4)


def test_batch_labels_equal_labels_one_example_at_a_time(teachers) -> None:
    waves = np.stack([_noise(WINDOW_SAMPLES / 16000, seed) for seed in range(20)])
    batch = teachers.label(waves)
    for i, wave in enumerate(waves):
        one = teachers.label(wave[None])
        np.testing.assert_allclose(
            batch.yamnet.probabilities[i], one.yamnet.probabilities[0], atol=1e-6
        )
        np.testing.assert_allclose(batch.yamnet.embeddings[i], one.yamnet.embeddings[0], atol=1e-6)
        np.testing.assert_allclose(batch.mn04.logits[i], one.mn04.logits[0], atol=1e-4)
        np.testing.assert_allclose(batch.mn04.embeddings[i], one.mn04.embeddings[0], atol=1e-4)
    assert batch.yamnet.probabilities.shape == (20, 521) and batch.yamnet.embeddings.shape == (
        20,
        1024,
    )
    assert batch.mn04.logits.shape == (20, 527) and batch.mn04.embeddings.shape == (20, 384)


def test_cry_classes_are_found_by_audioset_id_in_each_class_map(teachers) -> None:
    assert teachers.yamnet.cry_indices == (20, 19, 21)
    assert teachers.mn04.cry_indices == (23, 22, 24)
    assert (
        teachers.mn04.class_names[23] == teachers.yamnet.class_names[20] == "Baby cry, infant cry"
    )


def test_the_animal_classes_weighted_in_training_run_from_animal_to_whale_vocalization(
    teachers,
) -> None:
    from pi_monitor.training.train import ANIMAL_CLASSES

    names = teachers.mn04.class_names[ANIMAL_CLASSES]
    assert (names[0], names[-1], len(names)) == ("Animal", "Whale vocalization", 65)
    assert {"Cat", "Meow", "Dog", "Bird"} <= set(names)
    assert "Music" not in names and "Baby cry, infant cry" not in names


def test_yamnet_animal_classes_are_the_same_audioset_classes_as_mn04s(teachers) -> None:
    from pi_monitor.training.train import ANIMAL_CLASSES, YAMNET_ANIMAL_CLASSES

    yamnet = teachers.yamnet.class_names[YAMNET_ANIMAL_CLASSES]
    assert yamnet == teachers.mn04.class_names[ANIMAL_CLASSES]


def test_examples_of_another_length_are_refused_with_the_shape_expected(teachers) -> None:
    with pytest.raises(ValueError, match="15600"):
        teachers.label(np.zeros((2, 16000), np.float32))


def test_a_missing_teacher_folder_names_the_file_and_the_option(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--teachers DIR"):
        Teachers(tmp_path)


def test_cli_prints_each_teachers_top_classes_and_cry_classes_over_time(
    reference, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pi_monitor.training.__main__ import main

    cry = tmp_path / "cry.wav"
    soundfile.write(cry, reference["mn04_waveform_32k"][1], 32000)
    assert main(["teachers", "--teachers", str(TEACHERS), str(cry)]) == 0
    out = capsys.readouterr().out
    yamnet_top = next(line for line in out.splitlines() if "YAMNet top classes" in line)
    assert "Baby cry, infant cry" in yamnet_top and "Crying, sobbing" in yamnet_top
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 4 and rows[0].split()[0] == "0.49"


def test_cli_names_a_missing_teacher_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pi_monitor.training.__main__ import main

    assert main(["teachers", "--teachers", str(tmp_path), str(tmp_path / "x.wav")]) == 2
    assert "--teachers DIR" in capsys.readouterr().err
