"""A stand-in for the PortAudio boundary (`SoundDeviceBackend`), to inject device failures.

Everything above it is the real code: `MicSource`'s callback, queue, resampler and errors. A
"device" is present while `plugged()` says so; each stream plays a list of blocks into the
callback, then either keeps running silently or dies as an unplugged USB device's stream does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pi_monitor.capture import InputDevice, SoundDeviceBackend

USB_MIC = InputDevice(3, "USB PnP Sound Device: Audio (hw:1,0)", "ALSA", 1, 48000, False)
DEFAULT = InputDevice(0, "default", "ALSA", 32, 44100, True)


class FakePortAudioError(Exception):
    pass


@dataclass
class Flags:
    input_overflow: bool = False
    input_underflow: bool = False

    def __bool__(self) -> bool:
        return self.input_overflow or self.input_underflow


class FakeStream:
    """Calls `callback` with each block (at once, or every `interval` s on a thread)."""

    def __init__(
        self,
        callback: Callable[..., None],
        blocks: Iterable[np.ndarray],
        interval: float | None,
        dies: bool,
        status: Flags,
    ) -> None:
        self.callback, self.blocks, self.interval = callback, blocks, interval
        self.dies, self.status = dies, status
        self.active = False

    def start(self) -> None:
        self.active = True
        if self.interval is None:
            self._play()
        else:
            threading.Thread(target=self._play, daemon=True).start()

    def _play(self) -> None:
        for block in self.blocks:
            if not self.active:
                return
            self.callback(block[:, None].astype(np.float32), len(block), None, self.status)
            if self.interval is not None:
                time.sleep(self.interval)
        if self.dies:
            self.active = False

    def abort(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


@dataclass
class FakeBackend(SoundDeviceBackend):
    """Each successful open takes the next entry of `streams`: (blocks, dies)."""

    streams: list[tuple[Iterable[np.ndarray], bool]]
    plugged: Callable[[], bool] = lambda: True
    rates: tuple[int, ...] = (44100, 48000)
    interval: float | None = None
    status: Flags = field(default_factory=Flags)
    tries: int = 0  # open attempts (each re-scans the devices first)
    PortAudioError: type[Exception] = FakePortAudioError

    def refresh(self) -> None:
        self.tries += 1

    def input_devices(self) -> list[InputDevice]:
        return [DEFAULT, USB_MIC] if self.plugged() else [DEFAULT]

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool:
        return rate in self.rates and channels <= device.channels

    def open_stream(
        self, device: InputDevice, rate: int, channels: int, blocksize: int, callback: Any
    ) -> FakeStream:
        if not self.streams or (device == USB_MIC and not self.plugged()):
            raise FakePortAudioError("Error opening InputStream: Device unavailable [-9985]")
        blocks, dies = self.streams.pop(0)
        stream = FakeStream(callback, blocks, self.interval, dies, self.status)
        stream.start()
        return stream


def noise_blocks(seconds: float, rate: int, block: int, amplitude: float, seed: int = 0):
    """`seconds` of white noise at `rate` in blocks of `block` samples."""
    rng = np.random.default_rng(seed)
    for _ in range(round(seconds * rate / block)):
        yield rng.normal(0.0, amplitude, block).astype(np.float32)
