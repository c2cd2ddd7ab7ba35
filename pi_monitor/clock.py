"""Audio time → wall time, done once, where events leave the flow (`wall` on every line).

Live, the microphone's blocks say when they were captured (`WallClock`); a replay knows when its
file began only if it is told (`StartClock`), else its lines carry no `wall`.

A Raspberry Pi has no battery-backed clock: until NTP has set it, the date may be 1970 or the
last shutdown's (fake-hwclock), months behind. The age gate must not judge a baby's age by such
a date, so `today()` gives the date only when the clock can be trusted: synchronised (the
kernel's NTP status, which systemd-timesyncd, chrony and ntpd set) and not before this release.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import time
from collections.abc import Callable
from typing import Protocol

# No clock that reads earlier than this release was made is right; bump it with each release.
RELEASE_DATE = datetime.date(2026, 12, 1)
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
TIMEX_BYTES = 512  # room for `struct timex` (208 bytes on 64-bit Linux)


def ntp_synced() -> bool:
    """Whether the kernel says the system clock is synchronised (adjtimex, read only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = ctypes.create_string_buffer(TIMEX_BYTES)  # modes 0: read, change nothing
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return False
    return 0 <= state < TIME_ERROR


class Clock(Protocol):
    def observe(self, t: float, restart: bool) -> None:
        """A block ending at flow time `t` has just arrived; `restart`: the first of a stream."""

    def iso(self, t: float, timespec: str = "milliseconds") -> str | None:
        """Flow time `t` as ISO-8601 wall time with offset, or None when it is not known."""

    def today(self) -> datetime.date | None:
        """Today's date when the clock can be trusted with it, else None."""

    def untrusted(self) -> str:
        """Why `today()` is None, in words (for the log and the problem sensor)."""


class WallClock:
    """Flow time → Unix time, tracked from block arrivals.

    A block arrives a little after it was captured, so the smallest `wall - t` seen is the best
    estimate; it may creep up (audio clock slower than the system's) by `slew` s/s, and a jump
    of more than `step_s` (NTP setting the clock of a Pi without RTC) is taken at once.
    """

    def __init__(
        self,
        now: Callable[[], float] = time.time,
        slew: float = 1e-3,
        step_s: float = 2.0,
        synced: Callable[[], bool] = ntp_synced,
    ) -> None:
        self.now, self.slew, self.step_s, self.synced = now, slew, step_s, synced
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

    def today(self) -> datetime.date | None:
        day = datetime.datetime.fromtimestamp(self.now()).astimezone().date()
        return day if day >= RELEASE_DATE and self.synced() else None

    def untrusted(self) -> str:
        """Why `today()` is None, in words (for the log and the problem sensor)."""
        moment = datetime.datetime.fromtimestamp(self.now()).astimezone()
        why = "before this release" if moment.date() < RELEASE_DATE else "not synchronised"
        return f"the clock says {moment:%Y-%m-%d %H:%M} ({why})"


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

    def today(self) -> datetime.date | None:
        """A rehearsal's date is the one it was given."""
        return None if self.start is None else self.start.date()

    def untrusted(self) -> str:
        return "no start time was given"
