"""The live microphone as an audio source: sounddevice capture, resampled to the model's rate.

The PortAudio callback only copies each block into a bounded queue; everything else (down-mix,
resampling, counting) happens in the reader, so a slow pipeline costs dropped blocks, counted,
never a stalled audio thread. A failing device raises `CaptureError`; the service retries.
"""

from __future__ import annotations

import ctypes
import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pi_monitor.audio import Resampler
from pi_monitor.config import AudioSettings
from pi_monitor.source import SourceError

STALL_BLOCKS = 5
MIN_STALL_S = 5.0


class CaptureError(SourceError):
    """The microphone cannot be opened or stopped delivering; the message says what to check."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: int
    is_default: bool


@dataclass
class CaptureStats:
    """Counters exposed in the state and logs: any non-zero drop means audio was lost."""

    blocks: int = 0
    overflows: int = 0
    underflows: int = 0
    dropped_blocks: int = 0
    opens: int = 0


class SoundDeviceBackend:
    """The PortAudio boundary (sounddevice); tests subclass it to inject device failures."""

    def __init__(self) -> None:
        try:
            import sounddevice
        except OSError as e:
            raise CaptureError(
                f"PortAudio is missing ({e}); install it: apt-get install libportaudio2"
            ) from None
        self.sd = sounddevice
        self.PortAudioError = sounddevice.PortAudioError

    def refresh(self) -> None:
        """Re-scan devices: PortAudio lists only those present when it was initialised, so a
        re-plugged USB microphone is found only after this (call with no stream open)."""
        pin_alsa_plugins()
        self.sd._terminate()
        self.sd._initialize()

    def input_devices(self) -> list[InputDevice]:
        """Every device with input channels, as PortAudio sees it now."""
        hostapis = self.sd.query_hostapis()
        default_in = self.sd.default.device[0]
        return [
            InputDevice(
                index=d["index"],
                name=d["name"],
                hostapi=hostapis[d["hostapi"]]["name"],
                channels=d["max_input_channels"],
                default_rate=int(d["default_samplerate"]),
                is_default=d["index"] == default_in,
            )
            for d in self.sd.query_devices()
            if d["max_input_channels"] > 0
        ]

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool:
        try:
            self.sd.check_input_settings(
                device=device.index, samplerate=rate, channels=channels, dtype="float32"
            )
        except (self.PortAudioError, ValueError):
            return False
        return True

    def open_stream(
        self, device: InputDevice, rate: int, channels: int, blocksize: int, callback: Any
    ) -> Any:
        """A started `InputStream`; raises `PortAudioError`."""
        stream = self.sd.InputStream(
            device=device.index,
            samplerate=rate,
            channels=channels,
            dtype="float32",
            blocksize=blocksize,
            callback=callback,
        )
        stream.start()
        return stream


def pin_alsa_plugins(maps: Path = Path("/proc/self/maps")) -> list[str]:
    """Keep every ALSA plugin module now loaded in memory for the life of the process.

    Each re-scan re-initialises PortAudio, whose ALSA host API loads the plugin modules of every
    PCM the ALSA configuration defines (a52 pulls in libavcodec and ~100 libraries) and unloads
    them again on terminate. Unloading libavcodec's dependencies leaks about 12 kB each time: ~100
    MB a day while a missing microphone is retried. Marked RTLD_NODELETE, the modules stay loaded,
    as they are anyway while the stream runs, and a re-scan reuses them. Returns what it pinned.
    """
    try:
        lines = maps.read_text().splitlines()
    except OSError:  # not Linux: nothing to pin
        return []
    paths = {line.split(maxsplit=5)[5] for line in lines if "/libasound_module_" in line}
    pinned = []
    for path in sorted(paths):
        try:  # RTLD_NOLOAD: only mark what is loaded; the handle itself need not be kept
            ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NODELETE)
        except OSError:
            continue
        pinned.append(path)
    return pinned


def find_device(spec: str, devices: list[InputDevice]) -> InputDevice:
    """`audio.device`: an index, or a case-insensitive name substring; empty = the default."""
    if not devices:
        raise CaptureError("no audio input device found; plug in the microphone")
    spec = spec.strip()
    if not spec:
        for d in devices:
            if d.is_default:
                return d
        raise CaptureError(
            "no default input device; set audio.device to a name from `pi-monitor devices`"
        )
    if spec.isdigit():
        for d in devices:
            if d.index == int(spec):
                return d
        raise CaptureError(f"audio.device = {spec}: no input device with that index now")
    matches = [d for d in devices if spec.lower() in d.name.lower()]
    if not matches:
        names = ", ".join(repr(d.name) for d in devices)
        raise CaptureError(f"audio.device = {spec!r}: no input device matches; have {names}")
    return matches[0]


def format_devices(devices: list[InputDevice]) -> str:
    """The `pi-monitor devices` listing; `*` marks the default input."""
    lines = [
        f"{'*' if d.is_default else ' '} {d.index:3d}  {d.name}  "
        f"({d.hostapi}, {d.channels} in, default {d.default_rate} Hz)"
        for d in devices
    ]
    return "\n".join(lines) if lines else "no audio input devices found"


class MicSource:
    """Mono float32 blocks at `sample_rate` from a sounddevice `InputStream` (an `AudioSource`).

    `time` is audio time: samples delivered / rate, across reopens. `open` and `read` raise
    `CaptureError`; `read` returns None when no block came within its timeout.
    """

    def __init__(
        self, settings: AudioSettings, sample_rate: int, backend: SoundDeviceBackend | None = None
    ) -> None:
        self.settings = settings
        self.sample_rate = sample_rate
        self.backend = backend if backend is not None else SoundDeviceBackend()
        self.stats = CaptureStats()
        self.device: InputDevice | None = None
        self.capture_rate = 0
        self.delivered = 0
        self._queue: queue.Queue[tuple[np.ndarray, Any]] = queue.Queue(settings.queue_blocks)
        self._stream: Any = None
        self._resampler: Resampler | None = None
        self._channels = 1
        self._waited_s = 0.0

    @property
    def name(self) -> str:
        return self.device.name if self.device else (self.settings.device or "default input")

    @property
    def time(self) -> float:
        return self.delivered / self.sample_rate

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def open(self) -> None:
        """Find the device, pick a rate it supports, start the stream."""
        self.close()
        self.backend.refresh()
        device = find_device(self.settings.device, self.backend.input_devices())
        self._channels = 1
        rate = self._choose_rate(device)
        try:
            resampler = Resampler(rate, self.sample_rate)
        except ValueError as e:
            raise CaptureError(f"input '{device.name}' at {rate} Hz: {e}") from None
        blocksize = max(1, round(self.settings.block_s * rate))
        try:
            stream = self.backend.open_stream(
                device, rate, self._channels, blocksize, self._callback
            )
        except self.backend.PortAudioError as e:
            raise CaptureError(f"cannot open input '{device.name}' at {rate} Hz: {e}") from None
        self._stream = stream
        self.device, self.capture_rate = device, rate
        self._resampler = resampler
        self._waited_s = 0.0
        self.stats.opens += 1

    def _choose_rate(self, device: InputDevice) -> int:
        """The configured rate, else the model's when the device takes it (no resampling),
        else the device's default; mono when the device allows it, else down-mixed stereo."""
        wanted = self.settings.sample_rate
        candidates = [wanted] if wanted else [self.sample_rate, device.default_rate]
        for channels in (1, min(2, device.channels)):
            for rate in candidates:
                if self.backend.supports(device, rate, channels):
                    self._channels = channels
                    return rate
        key = "audio.sample_rate" if wanted else "the device"
        raise CaptureError(
            f"input '{device.name}' accepts none of {candidates} Hz (from {key}); "
            "set audio.sample_rate to a rate the device supports"
        )

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """PortAudio's thread: copy and hand over, nothing else."""
        try:
            self._queue.put_nowait((indata.copy(), status))
        except queue.Full:
            self.stats.dropped_blocks += 1

    def read(self, timeout: float) -> np.ndarray | None:
        """The next block at `sample_rate`, or None if none came within `timeout` seconds."""
        if self._stream is None or self._resampler is None:
            raise CaptureError("input stream is not open")
        try:
            raw, status = self._queue.get(timeout=timeout)
        except queue.Empty:
            return self._no_block(timeout)
        self._waited_s = 0.0
        self.stats.blocks += 1
        if status:
            self.stats.overflows += bool(status.input_overflow)
            self.stats.underflows += bool(status.input_underflow)
        mono = raw[:, 0] if raw.shape[1] == 1 else raw.mean(axis=1)
        out = self._resampler.process(mono)
        self.delivered += len(out)
        return out

    def _no_block(self, timeout: float) -> None:
        name = self.device.name if self.device else "?"
        if not self._stream.active:
            raise CaptureError(f"input stream of '{name}' stopped (device unplugged or failed)")
        self._waited_s += timeout
        stall_s = max(MIN_STALL_S, STALL_BLOCKS * self.settings.block_s)
        if self._waited_s >= stall_s:
            raise CaptureError(f"input '{name}' delivered no audio for {self._waited_s:.1f} s")
        return None

    def close(self) -> None:
        """Stop the stream and forget queued blocks (they belong to the old stream)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except self.backend.PortAudioError:
                pass
        while not self._queue.empty():
            self._queue.get_nowait()
