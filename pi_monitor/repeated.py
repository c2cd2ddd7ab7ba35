"""A warning that can come thousands of times a minute (an ignored command, a dropped event),
logged as one line and then a counted summary instead of one line each.

journald drops a service's lines beyond its rate limit (by default 10,000 in 30 s; fewer on
older systemd), and the lines it drops could be the escalations that matter. The first warning
is logged at once; later ones within `window_s` are only counted, and when the window is over
one line says how many there were and what the last one said.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

WINDOW_S = 60.0


class RepeatedWarning:
    """`warn(msg, *args)` as often as it happens; `flush()` now and then (a summary falls due
    even when no more warnings come)."""

    def __init__(
        self,
        logger: logging.Logger,
        window_s: float = WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window_s = window_s
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._since: float | None = None  # start of the window that counts
        self._count = 0
        self._last = ""

    def warn(self, msg: str, *args: object) -> None:
        with self._lock:
            now = self.monotonic()
            self._summarise(now)
            if self._since is None:
                self._since = now
                self.logger.warning(msg, *args, stacklevel=2)
                return
            self._count += 1
            self._last = msg % args if args else msg

    def flush(self) -> None:
        with self._lock:
            self._summarise(self.monotonic())

    def _summarise(self, now: float) -> None:
        if self._since is None or now - self._since < self.window_s:
            return
        if self._count:
            self.logger.warning(
                "%d more like this in the last %.0f s, the last: %s",
                self._count,
                now - self._since,
                self._last,
            )
        self._since = now if self._count else None
        self._count = 0
