"""File sources decode every WAV flavour, resample exactly, and fail clearly on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import soundfile

from pi_monitor.audio import AudioFileError, FileSource, Resampler


@pytest.mark.parametrize(
    ("orig", "target"), [(44100, 8000), (48000, 8000), (16000, 8000), (8000, 16000), (22050, 16000)]
)
def test_streaming_resampler_equals_resample_poly_for_any_block_size(
    orig: int, target: int
) -> None:
    x = np.random.default_rng(1).standard_normal(orig + 321)
    g = np.gcd(orig, target)
    reference = scipy.signal.resample_poly(x, target // g, orig // g)
    outputs = []
    for block in (7, 160, 4410, 10**6):
        r = Resampler(orig, target)
        outputs.append(
            np.concatenate(
                [r.process(x[i : i + block]) for i in range(0, len(x), block)] + [r.flush()]
            )
        )
    for out in outputs:
        assert len(out) == len(reference)
        np.testing.assert_allclose(out, reference, atol=1e-6)
        np.testing.assert_array_equal(out, outputs[0])


def test_same_rate_passes_blocks_through() -> None:
    r = Resampler(8000, 8000)
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(r.process(x), x)
    assert len(r.flush()) == 0


def _read(path, rate: int = 8000, block: int = 1000) -> np.ndarray:
    return np.concatenate(list(FileSource(path, rate, block).blocks()))


@pytest.mark.parametrize(
    "name",
    ["pcm8_8k.wav", "pcm24_48k.wav", "float32_22k05.wav", "stereo_44k1.wav", "extensible_16k.wav"],
)
def test_every_wav_flavour_decodes_to_the_same_loudness_envelope(fixtures_dir, name: str) -> None:
    """Scale, sign, channel mixing and rate are right: 100 ms levels agree within 1 dB."""
    x = _read(fixtures_dir / name)
    assert x.dtype == np.float32
    assert len(x) == pytest.approx(3 * 8000, abs=2)
    reference = _read(fixtures_dir / "extensible_16k.wav")
    level, ref_level = _levels_db(x), _levels_db(reference)
    loud = ref_level > -30
    assert loud.sum() > 10
    np.testing.assert_allclose(level[loud], ref_level[loud], atol=1.0)


def _levels_db(x: np.ndarray) -> np.ndarray:
    segments = x[: len(x) // 800 * 800].reshape(-1, 800)
    return 10 * np.log10(np.mean(segments**2, axis=1) + 1e-12)


def test_flac_is_read_through_libsndfile(tmp_path) -> None:
    x = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    soundfile.write(tmp_path / "a.flac", x, 16000)
    out = _read(tmp_path / "a.flac", rate=16000)
    np.testing.assert_allclose(out, x, atol=1e-4)


def test_truncated_data_yields_what_is_there_then_names_the_file(fixtures_dir) -> None:
    source = FileSource(fixtures_dir / "truncated_data.wav", 8000)
    got = []
    with pytest.raises(AudioFileError, match=r"truncated_data\.wav: truncated: .*6\.00 s"):
        for block in source.blocks():
            got.append(block)
    assert sum(map(len, got)) == pytest.approx(6 * 8000, abs=50)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.wav", "empty file"),
        ("not_audio.wav", "not a WAV file"),
        ("truncated_header.wav", "truncated WAV header"),
        ("missing.wav", "no such file"),
    ],
)
def test_unreadable_files_fail_at_open_with_the_file_name(
    fixtures_dir, name: str, message: str
) -> None:
    with pytest.raises(AudioFileError, match=f"{name}: {message}"):
        FileSource(fixtures_dir / name, 8000)


def test_undecodable_flac_names_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 100)
    with pytest.raises(AudioFileError, match=r"bad\.flac: not a readable audio file"):
        FileSource(bad, 8000)


def test_an_hour_long_file_is_streamed_not_loaded(tmp_path) -> None:
    """The reader holds one block at a time: memory does not grow with the file."""
    path = tmp_path / "long.wav"
    with soundfile.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        for _ in range(60):
            f.write(np.zeros(8000 * 60, np.int16))
    source = FileSource(path, 8000, 8000)
    assert source.duration_s == pytest.approx(3600)
    largest = max(len(b) for b in source.blocks())
    assert largest <= 8000
