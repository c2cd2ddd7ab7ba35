"""Where audio comes from: one interface for the live microphone and for files.

A source is opened, read a block at a time and closed. `read` returns the next mono float32 block
in [-1, 1] at `sample_rate`, or None when none came within `timeout` (a microphone between two
blocks); it raises `SourceEnded` when a file is done and a `SourceError` when the source fails.
Everything after the source is the same for both, so a replay makes the decisions the service
would have made live.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SourceError(Exception):
    """The source cannot be opened or read (any further); the message says what to check."""


class SourceEnded(Exception):
    """The stream is over: the whole file has been read."""


class AudioSource(Protocol):
    """Mono float32 blocks at `sample_rate`; `name` says which input in logs and errors."""

    sample_rate: int

    @property
    def name(self) -> str: ...

    def open(self) -> None: ...

    def read(self, timeout: float) -> np.ndarray | None: ...

    def close(self) -> None: ...
