"""What is wrong with the parts around the flow right now, for the problem sensor and escalations.

The state files (`store.py`), the MQTT link (`mqtt.py`) and the flow itself (a check-in method
held back for want of a clock it can trust) report here what is wrong and how to fix it. The
flow turns each new fault into one `escalation` and shows every active one on Home Assistant's
problem sensor until it clears by itself; a `notice` is a one-off (a damaged file moved aside)
that needs an escalation but leaves nothing wrong. Thread-safe: the MQTT thread reports too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pi_monitor.events import Reason


@dataclass(frozen=True)
class Fault:
    reason: Reason
    detail: str


class Faults:
    """Active faults, one per part (a file's path, "mqtt", ...), and notices not yet taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Fault] = {}
        self._notices: list[Fault] = []

    def report(self, part: str, reason: Reason, detail: str) -> None:
        """`part` is degraded until `clear(part)`; a later report updates the detail."""
        with self._lock:
            self._active[part] = Fault(reason, detail)

    def clear(self, part: str) -> None:
        with self._lock:
            self._active.pop(part, None)

    def notice(self, reason: Reason, detail: str) -> None:
        """Something the parents must hear about once, with nothing left wrong."""
        with self._lock:
            self._notices.append(Fault(reason, detail))

    def active(self) -> dict[str, Fault]:
        with self._lock:
            return dict(self._active)

    def take_notices(self) -> list[Fault]:
        with self._lock:
            notices, self._notices = self._notices, []
        return notices
