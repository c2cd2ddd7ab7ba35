"""The event contract of docs/DESIGN.md as typed dataclasses.

Every stage below the audio source works in audio seconds (`t`); the service adds `wall` once,
at the edge. `to_dict()` gives the JSON Lines / MQTT object with its `type` first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar, Self

TIME_FIELDS = ("t", "emitted_t", "onset_t")  # every field that is an audio time


@dataclass(frozen=True)
class Event:
    """Base of every event; `type` names it on the wire."""

    type: ClassVar[str] = "event"

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        """The wire form: `type` first, then the fields, then `extra` (e.g. `file`, `wall`)."""
        body = {k: _round(v) for k, v in asdict(self).items() if v is not None}
        return {"type": self.type, **body, **extra}

    def shifted(self, dt: float) -> Self:
        """The same event with every audio time moved by `dt` seconds."""
        return replace(self, **{k: getattr(self, k) + dt for k in TIME_FIELDS if hasattr(self, k)})


def _round(value: Any) -> Any:
    """Keep JSON readable: audio times and scores to microseconds / six digits."""
    return round(value, 6) if isinstance(value, float) else value


@dataclass(frozen=True)
class Score(Event):
    """One classifier window: `t` is the window's centre, `score` the calibrated probability."""

    type: ClassVar[str] = "score"
    t: float
    score: float
    logit: float


@dataclass(frozen=True)
class CryOnset(Event):
    """Crying began at `t` (estimate); the detector decided at `emitted_t`."""

    type: ClassVar[str] = "cry_onset"
    t: float
    emitted_t: float
    score: float


@dataclass(frozen=True)
class CryEnd(Event):
    """A bout that began at `onset_t` ended at `t`; short pauses inside it were merged."""

    type: ClassVar[str] = "cry_end"
    t: float
    onset_t: float
    duration_s: float
    emitted_t: float
    peak_score: float
    mean_score: float


@dataclass(frozen=True)
class CheckinDue(Event):
    """The chosen method says a parent may go in now."""

    type: ClassVar[str] = "checkin_due"
    t: float
    method: str
    night: int
    episode: int
    checkin: int
    waited_s: float
    next_interval_s: float | None = None
    detail: str | None = None


class Reason(StrEnum):
    """Why an `Escalation` was raised.

    A stalled processing loop has no reason of its own: it cannot report itself, so it stops the
    systemd watchdog pings, systemd restarts the service, and Home Assistant sees the monitor go
    unavailable (the MQTT last will) until it is back.
    """

    MAX_CRYING_EXCEEDED = "max_crying_exceeded"
    MIC_LOST = "mic_lost"
    MIC_SILENT = "mic_silent"


@dataclass(frozen=True)
class Escalation(Event):
    """Something a parent must look at now: long crying, a dead or silent microphone."""

    type: ClassVar[str] = "escalation"
    t: float
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Settled(Event):
    """A waking ended: the baby has been quiet for the settle time."""

    type: ClassVar[str] = "settled"
    t: float
    episode: int
    cry_s: float
    episode_s: float


@dataclass(frozen=True)
class SessionStarted(Event):
    """Tonight's sleep session began: night `night` of the plan with `method`; `detail` is the
    reminder that comes first (feeding, nappy and comfort), so it reaches the parent too."""

    type: ClassVar[str] = "session_started"
    t: float
    night: int
    method: str
    detail: str
    fading_step: str | None = None


@dataclass(frozen=True)
class CommandRefused(Event):
    """A parent's command that was not applied (e.g. a method the age gate refuses); `command`
    is its type and `detail` says why and what to do instead."""

    type: ClassVar[str] = "command_refused"
    t: float
    command: str
    detail: str


CONTRACT_EVENTS: tuple[type[Event], ...] = (
    CryOnset,
    CryEnd,
    CheckinDue,
    Escalation,
    Settled,
    SessionStarted,
    CommandRefused,
)
EVENT_TYPES = tuple(cls.type for cls in CONTRACT_EVENTS)  # what MQTT and Home Assistant carry
