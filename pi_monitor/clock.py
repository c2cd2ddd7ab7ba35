"""Audio time → wall time, done once, where events leave the flow (`wall` on every line).

Live, the microphone's blocks say when they were captured (`WallClock`); a replay knows when its
file began only if it is told (`StartClock`), else its lines carry no `wall`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def observe(self, t: float, restart: bool) -> None:
        """A block ending at flow time `t` has just arrived; `restart`: the first of a stream."""

    def iso(self, t: float, timespec: str = "milliseconds") -> str | None:
        """Flow time `t` as ISO-8601 wall time with offset, or None when it is not known."""


class WallClock:
    """Flow time → Unix time, tracked from block arrivals.

    A block arrives a little after it was captured, so the smallest `wall - t` seen is the best
    estimate; it may creep up (audio clock slower than the system's) by `slew` s/s, and a jump
    of more than `step_s` (NTP setting the clock of a Pi without RTC) is taken at once.
    """

    def __init__(
        self, now: Callable[[], float] = time.time, slew: float = 1e-3, step_s: float = 2.0
    ) -> None:
        self.now, self.slew, self.step_s = now, slew, step_s
        self._offset: float | None = None
        self._t = 0.0
        self.observe(0.0, restart=True)  # flow time 0 is now, until blocks say better

    def observe(self, t: float, restart: bool = False) -> None:
        seen = self.now() - t
        if restart or self._offset is None or abs(seen - self._offset) > self.step_s:
            self._offset = seen
        else:
            self._offset = min(seen, self._offset + self.slew * max(0.0, t - self._t))
        self._t = t

    def wall(self, t: float) -> float:
        return (self._offset or 0.0) + t

    def moment(self, t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.wall(t)).astimezone()

    def iso(self, t: float, timespec: str = "milliseconds") -> str:
        return self.moment(t).isoformat(timespec=timespec)


class StartClock:
    """A replay's clock: audio time 0 is `start` (aware), or unknown when `start` is None."""

    def __init__(self, start: datetime.datetime | None) -> None:
        self.start = start

    def observe(self, t: float, restart: bool) -> None:
        """Nothing to learn: a file's time is its audio time."""

    def iso(self, t: float, timespec: str = "milliseconds") -> str | None:
        if self.start is None:
            return None
        return (self.start + datetime.timedelta(seconds=t)).isoformat(timespec=timespec)
