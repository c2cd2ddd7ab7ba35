"""How long to wait before trying again: doubling from a minimum, capped at a maximum.

Shared by the microphone's reopen loop and the MQTT reconnection, so a device or a broker that
stays away is retried often at first and then at a steady, modest rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays for attempts 0, 1, 2, ...: `min_s`, 2 x `min_s`, ... up to `max_s`."""

    min_s: float
    max_s: float
    attempt: int = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; counts this one."""
        delay = min(self.max_s, self.min_s * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """It worked: the next failure starts again at `min_s`."""
        self.attempt = 0
