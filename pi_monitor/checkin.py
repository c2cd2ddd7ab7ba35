"""Sleep-training check-in timing: detector events and parent commands in, coach events out.

Pure logic in audio seconds (no clock, sleep or I/O), so a night replays deterministically and
tests run a night in milliseconds. Decisions use only what was known at the time: a detector
event counts from its `emitted_t`, a command from its `t`, and `tick(t)` moves time on between
them. Event times are exact (a check-in due at onset + 180 s says t = onset + 180 whatever the
tick rate), so a replay reproduces the timing table to the second.

Timing semantics (docs/DESIGN.md "Check-in timing"):
- A waking (episode) starts at a cry onset and ends when no crying has been heard for
  `settle_s` after the last bout ended -> `settled` at last end + settle_s, with `cry_s` (crying
  in its bouts) and `episode_s` (first onset to last end: the time it took to settle).
- The wait for a check-in counts from the later of the previous check-in's due time and the
  parent's last "checked in" (the first wait of a waking counts from its first onset). Quiet
  spells inside a waking do not stop the wait, but a check-in only falls due while the baby is
  crying: one whose wait ran out during a pause falls due when crying resumes.
- `graduated`: waits from the night's row of `graduated_minutes` (the last row and the last
  value repeat); every waking starts again at the row's first value.
- `responsive`: the first check-in is due at the onset itself ("voice"); each further
  `responsive_step_s` of crying after the last check-in climbs the ladder (touch, pick up).
  Response time = parent's "checked in" minus the due time, i.e. from the onset for the first.
- `extinction` and `fading`: no check-ins; crying and settling are still logged.
- Safety cap, whatever the method or session: when the crying seconds of a waking reach
  `max_crying_s`, `escalation` (max_crying_exceeded) is raised once for that waking.
  "Continuous" means "without settling": pauses between bouts pause the count but do not reset
  it, so crying with breaks cannot dodge the cap. Only quiet of at least the settle time, and
  never less than CAP_RESET_S (5 min) whatever `settle_s` says, resets it: with a short settle
  time the count carries over into the next waking. A bout counts as crying until the
  detector reports its end, so the cap can fire up to that delay early, never late.
"""

from __future__ import annotations

import datetime
import logging
import math
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart, SetMethod
from pi_monitor.config import CheckinSettings, check_checkin
from pi_monitor.events import (
    CheckinDue,
    CryEnd,
    CryOnset,
    Escalation,
    Event,
    Reason,
    SessionStarted,
    Settled,
)
from pi_monitor.methods import METHODS, AgeGateError, age_gate

log = logging.getLogger(__name__)

LADDER = ("voice", "touch", "pick_up")
QUICK_ANSWER_S = 10.0
CAP_RESET_S = 300.0
SAFETY_REMINDER = (
    "Before any sleep training: feeding, a clean nappy and comfort come first. "
    "If the baby seems unwell, hungry or in pain, go in whatever the method says."
)


@dataclass(frozen=True)
class AudioLost(Event):
    """The audio stream stopped at `t` (restart, lost microphone): an open bout ends there."""

    type: ClassVar[str] = "audio_lost"
    t: float


Input = CryOnset | CryEnd | AudioLost | SessionStart | SessionEnd | CheckedIn | SetMethod


class Refused(ValueError):
    """A parent command the coach will not apply (one line saying why); state is unchanged."""


@dataclass(frozen=True)
class Answer:
    """What a "checked in" answered: `checkin` 0 means a visit with no check-in due."""

    episode: int
    checkin: int
    t: float
    response_s: float | None


@dataclass(frozen=True)
class CoachStatus:
    """The coach's state for the service's retained state topic and the night log."""

    session: bool
    night: int
    method: str
    episode: int
    crying: bool
    checkins: int
    cry_s: float
    next_checkin_t: float | None
    night_wakings: int
    night_cry_s: float
    night_checkins: int
    last_cry_s: float | None


@dataclass
class _Episode:
    number: int
    start_t: float
    anchor_t: float
    last_end_t: float
    bout_t: float | None
    cry_closed_s: float = 0.0
    checkins: int = 0
    answered: int = 0
    last_due_t: float = 0.0
    escalated: bool = False
    cap_carry_s: float = 0.0

    def cry_s(self, now: float) -> float:
        open_s = max(0.0, now - self.bout_t) if self.bout_t is not None else 0.0
        return self.cry_closed_s + open_s


class Coach(Protocol):
    """What the flow asks of a coach: the plain `CheckinCoach` (replay rehearsals) and the
    `JournaledCoach` (the service, `journal.py`) both are one."""

    def handle(self, item: Input) -> list[Event]: ...

    def tick(self, t: float) -> list[Event]: ...

    def status(self) -> CoachStatus: ...


def known_at(item: Input) -> float:
    """When the coach could first know `item`: the detector's decision time, or a command's t."""
    return item.emitted_t if isinstance(item, CryOnset | CryEnd) else item.t


class CheckinCoach:
    """The check-in state machine; `handle` an input or `tick` the time, get events back."""

    def __init__(self, settings: CheckinSettings, today: datetime.date) -> None:
        """Refuses what the safety rules refuse, even for hand-built settings: ConfigError for
        values out of range, AgeGateError for a method the baby is too young for."""
        check_checkin(settings)
        self.warnings = age_gate(settings.method, settings.birth_date, today)
        for w in self.warnings:
            log.warning("%s", w)
        self._settings = settings
        self._today = today
        self._method = settings.method
        self._session: SessionStart | None = None
        self._last_session: SessionStart | None = None
        self._ep: _Episode | None = None
        self._last_settled: _Episode | None = None
        self._episodes = 0
        self._night_cry_s = 0.0
        self._night_checkins = 0
        self._now = -math.inf
        self.last_answer: Answer | None = None
        self.last_cry_s: float | None = None  # the last bout's length, session or not

    @property
    def now(self) -> float:
        return self._now

    @property
    def settings(self) -> CheckinSettings:
        return self._settings

    def tick(self, t: float) -> list[Event]:
        """Move audio time on to `t`; returns what fell due up to then, in time order."""
        out = self._advance(t)
        self._now = max(self._now, t)
        return out

    def handle(self, item: Input) -> list[Event]:
        """Apply one detector event or command at the time it became known.

        A refused command raises Refused before anything changes, so no event is lost."""
        self._check(item)
        at = known_at(item)
        out = self._advance(at)
        self._now = max(self._now, at)
        match item:
            case CryOnset():
                self._onset(item.t)
            case CryEnd():
                self._close_bout(item.t)
                self.last_cry_s = item.duration_s
            case AudioLost():
                self._close_bout(item.t)
            case SessionStart():
                out.append(self._start(self.planned(item)))
            case SessionEnd():
                self._end()
            case CheckedIn():
                self.last_answer = self._answer(item.t)
            case SetMethod():
                self._method = item.method
            case _:
                return out
        return out + self.tick(at)

    def status(self) -> CoachStatus:
        ep = self._ep
        in_session = self._session is not None
        return CoachStatus(
            session=in_session,
            night=self._session.night if self._session else 0,
            method=self._method,
            episode=ep.number if ep else 0,
            crying=bool(ep and ep.bout_t is not None),
            checkins=ep.checkins if ep else 0,
            cry_s=ep.cry_s(self._now) if ep else 0.0,
            next_checkin_t=self._expected_checkin_t(ep) if ep and in_session else None,
            night_wakings=self._episodes,
            night_cry_s=self._night_cry_s + self._session_cry_s(self._now),
            night_checkins=self._night_checkins,
            last_cry_s=self.last_cry_s,
        )

    def interval_s(self, k: int) -> float | None:
        """The wait before check-in k+1 of a waking under the current method; None: no more."""
        if self._method == "graduated":
            table = self._settings.graduated_minutes
            row = table[min(self._night() - 1, len(table) - 1)]
            return float(row[min(k, len(row) - 1)]) * 60.0
        if self._method == "responsive" and k < len(LADDER):
            return 0.0 if k == 0 else float(self._settings.responsive_step_s)
        return None

    def planned(self, start: SessionStart) -> SessionStart:
        """`start` with what the parent left out filled in: night 1, today, the method in effect."""
        return replace(
            start,
            night=1 if start.night is None else start.night,
            date=start.date or self._today,
            method=start.method or self._method,
        )

    def _night(self) -> int:
        return self._session.night if self._session else 1

    def _check(self, item: Input) -> None:
        """Refuse a command the safety rules forbid, before the coach changes at all."""
        match item:
            case SessionStart():
                if item.night is not None and item.night < 1:
                    raise Refused(f"night must be 1 or more, got {item.night}")
                self._gate(item.method or self._method, item.date or self._today)
            case SetMethod():
                self._gate(item.method, self._session.date if self._session else self._today)

    def _gate(self, method: str, day: datetime.date) -> None:
        if method not in METHODS:
            raise Refused(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        try:
            warnings = age_gate(method, self._settings.birth_date, day)
        except AgeGateError as e:
            raise Refused(str(e)) from None
        for w in warnings:
            log.warning("%s", w)

    def _start(self, s: SessionStart) -> SessionStarted:
        """Begin (or, for the same date and night, resume) a night; the reminder comes first."""
        method = s.method or self._method
        self._method = method
        last, self._session = self._last_session, s
        self._last_session = s
        step = s.fading_step or self._settings.fading_step
        started = SessionStarted(
            t=s.t,
            night=self._night(),
            method=method,
            detail=SAFETY_REMINDER,
            fading_step=step if method == "fading" and step else None,
        )
        if last is not None and (last.date, last.night) == (s.date, s.night):
            return started
        self._night_cry_s = 0.0
        self._night_checkins = 0
        self._episodes = 0
        if self._ep is not None:
            self._episodes = self._ep.number = 1
            self._ep.anchor_t = max(self._ep.anchor_t, s.t)
        return started

    def _end(self) -> None:
        self._night_cry_s += self._session_cry_s(self._now)
        self._session = None

    def _session_cry_s(self, until: float) -> float:
        """The open bout's crying since the session (re)started, up to `until`."""
        ep = self._ep
        if self._session is None or ep is None or ep.bout_t is None:
            return 0.0
        return max(0.0, until - max(ep.bout_t, self._session.t))

    def _onset(self, t: float) -> None:
        ep = self._ep
        if ep is None:
            self._episodes += 1
            self._ep = _Episode(self._episodes, start_t=t, anchor_t=t, last_end_t=t, bout_t=t)
            prev = self._last_settled
            if prev and t - prev.last_end_t < max(self._settings.settle_s, CAP_RESET_S):
                self._ep.cap_carry_s = prev.cap_carry_s + prev.cry_closed_s
                self._ep.escalated = prev.escalated
        elif ep.bout_t is None:
            ep.bout_t = max(t, ep.last_end_t)

    def _close_bout(self, t: float) -> None:
        ep = self._ep
        if ep is None or ep.bout_t is None:
            return
        end = max(t, ep.bout_t)
        self._night_cry_s += self._session_cry_s(end)
        ep.cry_closed_s += end - ep.bout_t
        ep.last_end_t = end
        ep.bout_t = None

    def _answer(self, t: float) -> Answer:
        ep = self._ep
        if ep is None or self._session is None:
            return Answer(episode=0, checkin=0, t=t, response_s=None)
        ep.anchor_t = max(ep.anchor_t, t)
        if ep.answered < ep.checkins:
            ep.answered = ep.checkins
            return Answer(ep.number, ep.checkins, t, t - ep.last_due_t)
        return Answer(ep.number, 0, t, None)

    def _next_checkin_t(self, ep: _Episode) -> float | None:
        wait = self.interval_s(ep.checkins)
        return None if wait is None else ep.anchor_t + wait

    def _expected_checkin_t(self, ep: _Episode) -> float | None:
        """When the next check-in falls due if nothing else happens: while the baby cries, at the
        end of the wait; in a pause, only a wait still running has a time (one that ran out falls
        due when crying resumes, which nobody can know)."""
        due = self._next_checkin_t(ep)
        if due is None:
            return None
        if ep.bout_t is not None:
            return max(due, ep.bout_t)
        return due if due > self._now else None

    def _advance(self, now: float) -> list[Event]:
        out: list[Event] = []
        while (event := self._next_event(now)) is not None:
            out.append(event)
        return out

    def _next_event(self, now: float) -> Event | None:
        """The earliest event due by `now` (applying its state change), or None."""
        ep = self._ep
        if ep is None:
            return None
        if ep.bout_t is None:
            settle_t = ep.last_end_t + self._settings.settle_s
            return self._settle(ep, settle_t) if settle_t <= now else None
        cap_t = ep.bout_t + self._settings.max_crying_s - ep.cap_carry_s - ep.cry_closed_s
        due = self._next_checkin_t(ep) if self._session is not None else None
        due_t = None if due is None else max(due, ep.bout_t)
        if not ep.escalated and cap_t <= now and (due_t is None or cap_t <= due_t):
            ep.escalated = True
            minutes = self._settings.max_crying_s / 60.0
            return Escalation(
                t=cap_t,
                reason=Reason.MAX_CRYING_EXCEEDED,
                detail=f"episode {ep.number}: {minutes:.3g} min of crying without settling; "
                "go in and check on the baby now",
            )
        if due_t is None or due_t > now:
            return None
        return self._checkin(ep, due_t)

    def _checkin(self, ep: _Episode, t: float) -> CheckinDue:
        k = ep.checkins
        waited = t - ep.anchor_t
        ep.checkins += 1
        ep.anchor_t = ep.last_due_t = t
        self._night_checkins += 1
        ladder = self._method == "responsive"
        return CheckinDue(
            t=t,
            method=self._method,
            night=self._night(),
            episode=ep.number,
            checkin=ep.checkins,
            waited_s=waited,
            next_interval_s=self.interval_s(k + 1),
            detail=LADDER[k] if ladder else None,
        )

    def _settle(self, ep: _Episode, t: float) -> Settled:
        self._ep = None
        self._last_settled = ep
        return Settled(
            t=t, episode=ep.number, cry_s=ep.cry_closed_s, episode_s=ep.last_end_t - ep.start_t
        )
