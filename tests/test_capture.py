"""MicSource above a stand-in PortAudio: device choice, rates, counters, resampling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fake_portaudio import DEFAULT, USB_MIC, FakeBackend, Flags, noise_blocks

from pi_monitor.capture import (
    CaptureError,
    MicSource,
    SoundDeviceBackend,
    find_device,
    format_devices,
)
from pi_monitor.config import AudioSettings

DEVICES = [DEFAULT, USB_MIC]


@pytest.mark.parametrize(
    ("spec", "expected"), [("", DEFAULT), ("usb pnp", USB_MIC), ("3", USB_MIC), (" 0 ", DEFAULT)]
)
def test_device_by_name_substring_or_index(spec: str, expected) -> None:
    assert find_device(spec, DEVICES) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("Blue Yeti", "no input device matches"), ("7", "no input device with that index")],
)
def test_unknown_device_names_the_setting(spec: str, message: str) -> None:
    with pytest.raises(CaptureError, match=f"audio.device = .*{message}"):
        find_device(spec, DEVICES)


def test_device_listing_marks_the_default() -> None:
    listing = format_devices(DEVICES).splitlines()
    assert listing[0].startswith("*") and "default 44100 Hz" in listing[0]
    assert "USB PnP Sound Device" in listing[1] and not listing[1].startswith("*")


def open_mic(backend: FakeBackend, **settings: object) -> MicSource:
    mic = MicSource(AudioSettings(device="USB", **settings), 16000, backend)  # type: ignore[arg-type]
    mic.open()
    return mic


def test_model_rate_is_used_when_the_device_takes_it() -> None:
    mic = open_mic(FakeBackend(streams=[([], False)], rates=(16000, 48000)))
    assert mic.capture_rate == 16000


def test_otherwise_the_device_default_rate_is_resampled_to_the_model_rate() -> None:
    tone = np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000).astype(np.float32)
    blocks = [tone[i : i + 4800] for i in range(0, 48000, 4800)]
    mic = open_mic(FakeBackend(streams=[(blocks, False)]))
    assert mic.capture_rate == 48000
    out = np.concatenate([mic.read(1.0) for _ in blocks])
    assert mic.time == len(out) / 16000 and 0.98 < mic.time <= 1.0
    spectrum = np.abs(np.fft.rfft(out[1000:9000]))
    assert np.argmax(spectrum) * 16000 / 8000 == pytest.approx(1000, abs=2)


def test_a_configured_rate_the_device_refuses_is_a_clear_error() -> None:
    with pytest.raises(CaptureError, match=r"accepts none of \[22050\] Hz .*audio.sample_rate"):
        open_mic(FakeBackend(streams=[([], False)]), sample_rate=22050)


def test_overflows_and_dropped_blocks_are_counted() -> None:
    backend = FakeBackend(
        streams=[(list(noise_blocks(1.0, 48000, 4800, 0.01)), False)],
        status=Flags(input_overflow=True),
    )
    mic = open_mic(backend, queue_blocks=4)
    assert mic.stats.dropped_blocks == 6  # the callback never waits: a full queue drops
    while mic.read(0.01) is not None:
        pass
    assert mic.stats.blocks == 4 and mic.stats.overflows == 4 and mic.stats.underflows == 0


def test_a_stopped_stream_raises_capture_error() -> None:
    mic = open_mic(FakeBackend(streams=[(list(noise_blocks(0.2, 48000, 4800, 0.01)), True)]))
    assert mic.read(0.01) is not None and mic.read(0.01) is not None
    with pytest.raises(CaptureError, match="stopped"):
        mic.read(0.01)


def test_a_device_that_delivers_nothing_is_declared_lost() -> None:
    mic = open_mic(FakeBackend(streams=[([], False)]))
    with pytest.raises(CaptureError, match="delivered no audio"):
        for _ in range(100):
            mic.read(0.1)


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_retrying_a_missing_microphone_keeps_memory_flat() -> None:
    """Through the real PortAudio: each retry re-initialises it, which used to load and unload
    ALSA's plugin modules (libavcodec for a52) and leak ~12 kB every time."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs Linux /proc to read the process's memory")
    try:
        backend = SoundDeviceBackend()
    except CaptureError as e:
        pytest.skip(str(e))
    mic = MicSource(AudioSettings(device="no such microphone"), 16000, backend)

    def retry(times: int) -> None:
        for _ in range(times):
            with pytest.raises(CaptureError, match=r"no input device matches|no audio input"):
                mic.open()

    retry(30)  # warm-up: allocator pools, first loads
    if "libasound_module_" not in Path("/proc/self/maps").read_text():
        pytest.skip("PortAudio loads no ALSA plugin module here (no libasound2-plugins)")
    before = rss_bytes()
    retry(300)
    grown = rss_bytes() - before
    assert grown < 1_000_000, f"{grown / 300:.0f} bytes per retry"  # was 3.7 MB (12.2 kB each)


def test_a_capture_rate_too_odd_to_resample_is_a_capture_error_not_a_crash() -> None:
    with pytest.raises(CaptureError, match=r"at 60001 Hz: resampling 60001 Hz to 16000 Hz needs"):
        open_mic(FakeBackend(streams=[([], False)], rates=(60001,)), sample_rate=60001)
