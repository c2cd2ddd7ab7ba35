"""What Home Assistant shows right now, derived from events by pure functions.

The service folds every event (including `score`) and every accepted command into one
`MonitorState` and hands it to the publisher, which sends it retained on `<base>/state` (and
`<base>/crying`), so HA sees the latest values even after it or the broker restarts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pi_monitor.checkin import CoachStatus
from pi_monitor.commands import Command, SessionEnd, SessionStart, SetMethod, SetMinBout
from pi_monitor.events import Reason

HEALTH_REASONS = (Reason.MIC_LOST, Reason.MIC_SILENT)


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
    """Current values; times `*_t` are audio seconds, `next_checkin` an ISO-8601 wall time."""

    crying: bool = False
    cry_onset_t: float | None = None
    cry_s: float = 0.0
    last_cry_s: float | None = None
    score: float | None = None
    level_dbfs: float | None = None
    method: str = "responsive"
    min_bout_s: float = 0.5
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


def apply_event(state: MonitorState, event: dict[str, Any]) -> MonitorState:
    """Fold one event dict (the wire form) into the state; unknown types leave it unchanged."""
    kind = event.get("type")
    if kind == "score":
        cry_s = event["t"] - state.cry_onset_t if state.cry_onset_t is not None else 0.0
        return replace(state, score=event["score"], cry_s=max(cry_s, 0.0))
    if kind == "cry_onset":
        cry_s = max(event["emitted_t"] - event["t"], 0.0)
        return replace(state, crying=True, cry_onset_t=event["t"], cry_s=cry_s)
    if kind == "cry_end":
        return replace(
            state,
            crying=False,
            cry_onset_t=None,
            cry_s=0.0,
            last_cry_s=event["duration_s"],
            tonight_cry_s=state.tonight_cry_s + event["duration_s"],
        )
    if kind == "checkin_due":
        return replace(state, next_checkin=_next_checkin(event))
    if kind == "settled":
        return replace(state, next_checkin=None)
    if kind == "escalation" and event.get("reason") in HEALTH_REASONS:
        detail = event.get("detail") or event["reason"]
        return with_problem(state, True, f"{event['reason']}: {detail}")
    return state


def _next_checkin(event: dict[str, Any]) -> str | None:
    """Wall time of the next check-in, when the event carries both a wall time and an interval."""
    wall, interval = event.get("wall"), event.get("next_interval_s")
    if wall is None or interval is None:
        return None
    return (dt.datetime.fromisoformat(wall) + dt.timedelta(seconds=interval)).isoformat()


def apply_command(state: MonitorState, command: Command) -> MonitorState:
    """Accepted commands that change what HA shows; a new session starts tonight's totals afresh."""
    if isinstance(command, SetMethod):
        return replace(state, method=command.method)
    if isinstance(command, SetMinBout):
        return replace(state, min_bout_s=command.seconds)
    if isinstance(command, SessionStart) and not state.session:
        return replace(state, session=True, tonight_cry_s=0.0, next_checkin=None)
    if isinstance(command, SessionEnd):
        return replace(state, session=False)
    return state


def resumed(coach: CoachStatus, next_checkin: str | None, min_bout_s: float) -> MonitorState:
    """The state at start-up, from the coach as the night log gave it back: after a restart in
    the night HA must show the session still on, tonight's crying and the check-in due."""
    return MonitorState(
        method=coach.method,
        min_bout_s=min_bout_s,
        session=coach.session,
        tonight_cry_s=coach.night_cry_s,
        next_checkin=next_checkin,
    )


def with_problem(state: MonitorState, on: bool, detail: str = "") -> MonitorState:
    """Set or clear the monitor's health problem (microphone lost or silent)."""
    return replace(state, problem=on, problem_detail=detail if on else "")
