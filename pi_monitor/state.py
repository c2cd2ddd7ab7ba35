"""What Home Assistant shows right now, and when it is worth a message (pure, times passed in).

Each value has one source: the detector's events and scores (crying, durations, score), the
latest block (sound level), the coach's status (session, method, next check-in, tonight's
crying), the effective settings (confirmation time) and the flow's problems (the microphone's
health and the faults of the parts around it). The
flow keeps one `MonitorState` from them and hands every change to the sinks; the MQTT publisher
sends it retained on `<base>/state` (and `<base>/crying`) when `StatePacer` says it is news.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pi_monitor.checkin import CoachStatus
from pi_monitor.config import DetectorSettings
from pi_monitor.events import CryEnd, CryOnset, Event, Score


class Key(StrEnum):
    """The keys of the retained `<base>/state` JSON: written here, read by the discovery value
    templates (`discovery.py`) and paced by the publisher (`mqtt.py`)."""

    CRYING = "crying"
    CRY_S = "cry_s"
    LAST_CRY_S = "last_cry_s"
    SCORE = "score"
    LEVEL_DBFS = "level_dbfs"
    METHOD = "method"
    MIN_BOUT_S = "min_bout_s"
    NEXT_CHECKIN = "next_checkin"
    TONIGHT_CRY_MIN = "tonight_cry_min"
    SESSION = "session"
    PROBLEM = "problem"
    PROBLEM_DETAIL = "problem_detail"


@dataclass(frozen=True)
class MonitorState:
    """Current values; `*_t` are flow seconds, `next_checkin` an ISO-8601 wall time.

    `tonight_cry_s` is the coach's figure for tonight's session (the night log's, which the
    report shows too): crying heard while the session was on, kept after it is switched off
    and restored after a restart, until the next night's session starts."""

    crying: bool = False
    cry_onset_t: float | None = None
    cry_s: float = 0.0
    last_cry_s: float | None = None
    score: float | None = None
    level_dbfs: float | None = None
    method: str = "responsive"
    min_bout_s: float = DetectorSettings().min_bout_s
    next_checkin: str | None = None
    tonight_cry_s: float = 0.0
    session: bool = False
    problem: bool = False
    problem_detail: str = ""

    def to_payload(self) -> dict[Key, Any]:
        """The retained `<base>/state` JSON read by the discovery value templates."""
        return {
            Key.CRYING: self.crying,
            Key.CRY_S: round(self.cry_s, 1),
            Key.LAST_CRY_S: None if self.last_cry_s is None else round(self.last_cry_s, 1),
            Key.SCORE: None if self.score is None else round(self.score, 3),
            Key.LEVEL_DBFS: None if self.level_dbfs is None else round(self.level_dbfs, 1),
            Key.METHOD: self.method,
            Key.MIN_BOUT_S: self.min_bout_s,
            Key.NEXT_CHECKIN: self.next_checkin,
            Key.TONIGHT_CRY_MIN: round(self.tonight_cry_s / 60.0, 1),
            Key.SESSION: self.session,
            Key.PROBLEM: self.problem,
            Key.PROBLEM_DETAIL: self.problem_detail,
        }


def heard(state: MonitorState, event: Event) -> MonitorState:
    """Fold what the detector heard (window scores and cry bouts); other events change nothing."""
    match event:
        case Score():
            onset = state.cry_onset_t
            cry_s = max(event.t - onset, 0.0) if onset is not None else 0.0
            return replace(state, score=event.score, cry_s=cry_s)
        case CryOnset():
            cry_s = max(event.emitted_t - event.t, 0.0)
            return replace(state, crying=True, cry_onset_t=event.t, cry_s=cry_s)
        case CryEnd():
            return replace(
                state, crying=False, cry_onset_t=None, cry_s=0.0, last_cry_s=event.duration_s
            )
    return state


def coached(state: MonitorState, status: CoachStatus, next_checkin: str | None) -> MonitorState:
    """What the coach says: session, method, tonight's crying, and `next_checkin`, its
    `next_checkin_t` as wall time (None while no check-in is expected)."""
    return replace(
        state,
        session=status.session,
        method=status.method,
        next_checkin=next_checkin,
        tonight_cry_s=status.night_cry_s,
    )


def with_problem(state: MonitorState, on: bool, detail: str = "") -> MonitorState:
    """Set or clear the monitor's problem (microphone lost or silent, a state file that cannot be
    written, the MQTT link failing, a method held back for want of a clock it can trust)."""
    return replace(state, problem=on, problem_detail=detail if on else "")


@dataclass(frozen=True)
class Pace:
    """A value that changes all the time is sent again only once it has moved by more than
    `deadband` since it was last sent and `min_interval_s` has passed since then (at once when
    it becomes known or unknown)."""

    deadband: float
    min_interval_s: float


# Chosen for a parent watching a dashboard and for Home Assistant's recorder (every message on a
# sensor is a row): 3 dB is a change anyone hears (twice the sound power), 0.1 a tenth of the
# score's range; at most one message in 10 s for each, so a noisy room costs at most 6 rows a
# minute per sensor instead of 60. The current cry's duration counts up every 10 s, tonight's
# total every minute. Everything else (crying first of all) goes out the moment it changes.
PACES = {
    Key.LEVEL_DBFS: Pace(deadband=3.0, min_interval_s=10.0),
    Key.SCORE: Pace(deadband=0.1, min_interval_s=10.0),
    Key.CRY_S: Pace(deadband=0.0, min_interval_s=10.0),
    Key.TONIGHT_CRY_MIN: Pace(deadband=0.0, min_interval_s=60.0),
}


class StatePacer:
    """Decides when the state is news: `due(payload, now)`, then `sent(payload, now)`."""

    def __init__(self, paces: dict[Key, Pace] = PACES) -> None:
        self.paces = paces
        self._sent: dict[Key, Any] | None = None
        self._sent_at: dict[Key, float] = {}

    def due(self, payload: dict[Key, Any], now: float) -> bool:
        if self._sent is None:
            return True
        for key, value in payload.items():
            last = self._sent.get(key)
            if value == last:
                continue
            pace = self.paces.get(key)
            if pace is None or last is None or value is None:
                return True  # not paced, or a value that becomes known or unknown
            waited = now - self._sent_at.get(key, -math.inf) >= pace.min_interval_s
            if waited and abs(value - last) > pace.deadband:
                return True
        return False

    def sent(self, payload: dict[Key, Any], now: float) -> None:
        for key, value in payload.items():
            if self._sent is None or self._sent.get(key) != value:
                self._sent_at[key] = now
        self._sent = payload
