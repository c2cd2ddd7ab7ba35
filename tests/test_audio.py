"""File sources decode every WAV flavour, resample exactly, and fail clearly on bad files."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.signal
import soundfile
from odd_wav import wav_with_header

from pi_monitor.audio import AudioFileError, FileSource, Resampler, find_audio_files


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


@pytest.mark.parametrize(
    ("rate", "channels"), [(4294967295, 1), (1000003, 1), (800, 1), (16000, 65535), (16000, 0)]
)
def test_implausible_rates_and_channel_counts_are_refused_at_open(
    tmp_path, rate: int, channels: int
) -> None:
    path = wav_with_header(tmp_path / "odd.wav", rate, channels, frames=4)
    message = (
        rf"odd\.wav: implausible header \({channels} channels, {rate} Hz; "
        r"allowed 1 to 256 channels at 1000 to 768000 Hz\)"
    )
    with pytest.raises(AudioFileError, match=message):
        FileSource(path, 8000)


def test_a_rate_whose_filter_would_be_too_large_is_refused_with_the_fix(tmp_path) -> None:
    """60,001 Hz to 8 kHz shares no factor: 1.2 million taps. Every common pair fits."""
    with pytest.raises(ValueError, match=r"60001 Hz to 8000 Hz needs a 1,200,021-tap filter"):
        Resampler(60001, 8000)
    path = wav_with_header(tmp_path / "odd_rate.wav", 60001)
    with pytest.raises(AudioFileError, match=r"odd_rate\.wav: resampling .* such as 48000"):
        FileSource(path, 8000)
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000, 768000):
        Resampler(rate, 8000), Resampler(rate, 16000)


def test_a_huge_fmt_chunk_is_skipped_not_read(tmp_path) -> None:
    """Its declared 4 GB were once asked of the allocator in one read."""
    path = wav_with_header(tmp_path / "big_fmt.wav", 16000, fmt_size=0xFFFFFFF0)
    tracemalloc.start()
    try:
        with pytest.raises(AudioFileError, match=r"big_fmt\.wav: truncated WAV header"):
            FileSource(path, 8000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_float_samples_beyond_full_scale_are_clipped_as_a_microphone_would(tmp_path) -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    for subtype, gain in (("FLOAT", 1e30), ("DOUBLE", 1e300)):
        path = tmp_path / f"hot_{subtype}.wav"
        soundfile.write(path, tone * gain, 8000, subtype=subtype)
        out = _read(path)
        assert np.isfinite(out).all() and np.abs(out).max() == 1.0
        np.testing.assert_array_equal(np.sign(out), np.sign(tone.astype(np.float32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_sample_that_is_not_a_number_ends_the_file_with_its_time(tmp_path, bad: float) -> None:
    x = np.full(16000, 0.1)
    x[12000] = bad
    path = tmp_path / "corrupt.wav"
    soundfile.write(path, x, 8000, subtype="FLOAT")
    blocks = []
    message = r"corrupt\.wav: a sample that is not a number \(NaN or infinity\) at 1\.50 s \(repl"
    with pytest.raises(AudioFileError, match=message):
        for block in FileSource(path, 8000, 1000).blocks():
            blocks.append(block)
    assert len(np.concatenate(blocks)) == 12000 and np.isfinite(np.concatenate(blocks)).all()


def test_a_truncated_ogg_is_replayed_as_far_as_it_goes_then_named(tmp_path) -> None:
    """libsndfile reads a cut-short OGG without a word; only its missing last page tells."""
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000 * 20) / 8000)
    tone += np.random.default_rng(0).normal(0, 0.05, len(tone))
    whole = tmp_path / "whole.ogg"
    soundfile.write(whole, tone, 8000, format="OGG", subtype="VORBIS")
    assert len(_read(whole)) == len(tone)
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    blocks = []
    with pytest.raises(AudioFileError, match=r"cut\.ogg: truncated: the OGG stream has no end"):
        for block in FileSource(cut, 8000, 1000).blocks():
            blocks.append(block)
    assert 0 < len(np.concatenate(blocks)) < len(tone)


def test_a_directory_with_no_audio_is_listed_so_that_it_is_reported(tmp_path) -> None:
    empty = tmp_path / "night.wav"  # a directory, whatever its name says
    empty.mkdir()
    assert find_audio_files(empty) == [empty]
    with pytest.raises(AudioFileError, match=r"night\.wav: a directory without audio files"):
        FileSource(empty, 8000)
    (empty / "cry.wav").write_bytes(b"")
    assert find_audio_files(tmp_path) == [empty / "cry.wav"]
