"""systemd's sd_notify protocol without libsystemd: one datagram per message to $NOTIFY_SOCKET.

The watchdog is fed from the processing loop (never from a timer thread), so a stalled pipeline
stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING; a no-op outside systemd (no $NOTIFY_SOCKET)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, message: str) -> bool:
        """Send one message; errors are logged, never raised (systemd must not kill us by it)."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto(message.encode(), self.address)
        except OSError as e:
            log.warning("sd_notify %r to %r failed: %s", message.split("=")[0], self.address, e)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WatchdogPacer:
    """Decides when the loop pings: every half watchdog interval, per systemd's advice."""

    def __init__(self, watchdog_s: float | None) -> None:
        self.period_s = None if watchdog_s is None else watchdog_s / 2
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """True (and the ping counted as sent) when `now` (monotonic s) calls for a ping."""
        if self.period_s is None:
            return False
        if self._last is not None and now - self._last < self.period_s:
            return False
        self._last = now
        return True


def _socket_address(value: str) -> str | bytes | None:
    """`@name` is Linux's abstract namespace: a leading NUL byte on the wire."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract @name", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """$WATCHDOG_USEC in seconds, if it is meant for this process ($WATCHDOG_PID, when set)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1e6 if value > 0 else None
