"""What the flow does when its source fails, chosen once at assembly.

A file that fails has failed: the flow ends and reports it (`GiveUp`). A microphone is a baby
monitor's lifeline: it is reopened with backoff for as long as it takes, and its health (lost,
silent) is watched and reported (`Reopen`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from pi_monitor.backoff import Backoff
from pi_monitor.events import Escalation, Reason
from pi_monitor.health import MicHealth
from pi_monitor.source import AudioSource, SourceError

log = logging.getLogger(__name__)

REOPEN_MIN_S = 0.5


class Recovery(Protocol):
    def opened(self, source: AudioSource) -> None: ...

    def listening(self, source: AudioSource) -> None:
        """The first block of a stream arrived."""

    def open_failed(self, error: SourceError, t: float) -> float | None:
        """Seconds to wait before trying again, or None: the flow ends with `error`."""

    def lost(self, error: SourceError, t: float) -> float | None:
        """The stream failed after delivering audio; same answer as `open_failed`."""

    def block(self, t_start: float, t_end: float, level_dbfs: float) -> list[Escalation]: ...

    def tick(self, t: float) -> list[Escalation]: ...

    def problem(self) -> str:
        """One line for Home Assistant's problem sensor; empty when all is well."""


class GiveUp:
    """Files: a failure ends the flow; a file has no health to watch."""

    def opened(self, source: AudioSource) -> None:
        pass

    def listening(self, source: AudioSource) -> None:
        pass

    def open_failed(self, error: SourceError, t: float) -> float | None:
        return None

    def lost(self, error: SourceError, t: float) -> float | None:
        return None

    def block(self, t_start: float, t_end: float, level_dbfs: float) -> list[Escalation]:
        return []

    def tick(self, t: float) -> list[Escalation]:
        return []

    def problem(self) -> str:
        return ""


class Reopen:
    """The microphone: reopened with backoff up to `retry_max_s`, its health watched, and each
    change said in the log and to `notes` (systemd's status line)."""

    def __init__(self, health: MicHealth, retry_max_s: float, notes: Callable[[str], None]) -> None:
        self.health = health
        self.backoff = Backoff(REOPEN_MIN_S, retry_max_s)
        self.notes = notes

    def opened(self, source: AudioSource) -> None:
        self.backoff.reset()
        log.info("opened '%s'", source.name)
        self.notes(f"opened '{source.name}', waiting for audio")

    def listening(self, source: AudioSource) -> None:
        was_lost = Reason.MIC_LOST in self.health.problems
        log.log(logging.WARNING if was_lost else logging.INFO, "listening on '%s'", source.name)
        self.notes(f"listening on '{source.name}'")

    def open_failed(self, error: SourceError, t: float) -> float:
        first = self.backoff.attempt == 0
        delay = self.backoff.next_delay()
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "microphone unavailable: %s; retrying in %.1f s", error, delay)
        self.health.on_mic_down(t, str(error))
        self.notes(f"microphone unavailable: {error}")
        return delay

    def lost(self, error: SourceError, t: float) -> float:
        log.error("microphone lost: %s", error)
        self.health.on_mic_down(t, str(error))
        self.notes(f"microphone lost: {error}; retrying")
        return REOPEN_MIN_S

    def block(self, t_start: float, t_end: float, level_dbfs: float) -> list[Escalation]:
        return self.health.on_block(t_start, t_end, level_dbfs)

    def tick(self, t: float) -> list[Escalation]:
        return self.health.tick(t)

    def problem(self) -> str:
        return self.health.problem_detail()
