"""The journaled coach: a check-in coach whose nights are written to the night log as they happen.

Every input of a night (detector events and parent commands) is logged with the coach's outputs,
so a restart mid-night rebuilds the coach by replaying them: same episode, same check-in count.
"""

from __future__ import annotations

import datetime
from dataclasses import replace

from pi_monitor.checkin import AudioLost, CheckinCoach, CoachStatus, Input
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart
from pi_monitor.config import CheckinSettings
from pi_monitor.events import Event
from pi_monitor.nightlog import NightLog, evening_of

HEARTBEAT_S = 30.0


class JournaledCoach:
    """A CheckinCoach whose nights are written to the night log as they happen.

    A `Coach` like the one it wraps (`handle` / `tick` / `status`). Open it with
    `JournaledCoach.open` at start-up: it replays tonight's logged inputs, so after a restart the
    coach is in the same episode with the same check-in count; a bout that was open when the
    stream stopped is ended at the last moment the log saw (the new stream's detector reports
    crying that goes on).
    """

    def __init__(self, coach: CheckinCoach, log: NightLog, origin: float) -> None:
        self.coach = coach
        self.log = log
        self.origin = origin
        self._night_id: int | None = None
        self._beat = -float("inf")

    @classmethod
    def open(
        cls, settings: CheckinSettings, log: NightLog, origin: datetime.datetime
    ) -> JournaledCoach:
        """Coach for a stream whose audio time 0 is `origin` (aware), resuming tonight's night."""
        coach = CheckinCoach(settings, origin.date())
        journaled = cls(coach, log, origin.timestamp())
        journaled._resume(evening_of(origin))
        return journaled

    def _resume(self, evening: datetime.date) -> None:
        nights = self.log.nights(last=1)
        if not nights:
            return
        night = nights[0]
        if night.evening != evening:
            if night.ended is None:
                self.log.end_night(night.id, night.last_seen)
            return
        for item in self.log.inputs(night.id, self.origin):
            self.coach.handle(item)
        self.coach.tick(night.last_seen - self.origin)
        if night.ended is None:
            self._night_id = night.id
            if self.coach.status().crying:
                lost = AudioLost(t=night.last_seen - self.origin)
                self.coach.handle(lost)
                self.log.add_input(night.id, lost, self.origin)

    def _planned(self, start: SessionStart) -> SessionStart:
        """`start` as it is logged: tonight's evening, the plan's night for it, the method."""
        moment = datetime.datetime.fromtimestamp(self.origin + start.t).astimezone()
        evening = start.date or evening_of(moment)
        method = start.method or self.coach.status().method
        night = self.log.night_number(evening, method) if start.night is None else start.night
        return self.coach.planned(replace(start, night=night, date=evening, method=method))

    def status(self) -> CoachStatus:
        return self.coach.status()

    def handle(self, item: Input) -> list[Event]:
        """Apply `item` (CommandRefused leaves coach and log unchanged) and log it with outputs."""
        if isinstance(item, SessionStart):
            item = self._planned(item)
        out = self.coach.handle(item)
        at = self.origin + self.coach.now
        if isinstance(item, SessionStart):
            status = self.coach.status()
            step = item.fading_step or self.coach.settings.fading_step
            self._night_id = self.log.open_night(item, status.method, step, at)
        if self._night_id is None:
            return out
        night_id = self._night_id
        self.log.add_input(night_id, item, self.origin)
        self._record(out)
        answer = self.coach.last_answer
        if isinstance(item, CheckedIn) and answer is not None:
            self.log.add_answer(
                night_id, answer.episode, answer.checkin, self.origin + answer.t, answer.response_s
            )
        if isinstance(item, SessionEnd):
            self.log.end_night(night_id, at)
            self._night_id = None
        return out

    def tick(self, t: float) -> list[Event]:
        out = self.coach.tick(t)
        if self._night_id is not None and (out or t - self._beat >= HEARTBEAT_S):
            self._record(out)
        return out

    def _record(self, out: list[Event]) -> None:
        assert self._night_id is not None
        for event in out:
            self.log.add_output(self._night_id, event, self.origin)
        self.log.update_night(self._night_id, self.coach.status(), self.origin + self.coach.now)
        self._beat = self.coach.now
