"""The journaled coach: a check-in coach whose nights are written to the night log as they happen.

Every input of a night (detector events and parent commands) is logged with the coach's outputs,
so a restart mid-night rebuilds the coach by replaying them: same episode, same check-in count.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import replace

from pi_monitor.checkin import AudioLost, CheckinCoach, CoachStatus, Input, Refused
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart, SetMethod
from pi_monitor.config import CheckinSettings
from pi_monitor.events import CryEnd, Event
from pi_monitor.nightlog import NightLog, evening_of

logger = logging.getLogger(__name__)

HEARTBEAT_S = 30.0


class JournaledCoach:
    """A CheckinCoach whose nights are written to the night log as they happen.

    A `Coach` like the one it wraps (`handle` / `tick` / `status`). Open it with
    `JournaledCoach.open` at start-up: it replays the latest night's logged inputs, so after a
    restart the coach is in the same episode with the same check-in count and the same totals;
    a bout that was open when the stream stopped is ended at the last moment the log saw (the
    new stream's detector reports crying that goes on).
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
        """Coach for a stream whose audio time 0 is `origin` (aware), resuming the latest night.

        The method in effect is `settings.method` (the file's, or the one chosen in Home
        Assistant since): a choice made while no session ran is newer than the night's log."""
        coach = CheckinCoach(settings, origin.date())
        journaled = cls(coach, log, origin.timestamp())
        journaled._resume(evening_of(origin))
        journaled._use_method(settings.method)
        return journaled

    def _resume(self, evening: datetime.date) -> None:
        self.coach.last_cry_s = self.log.last_cry_s()
        nights = self.log.nights(last=1)
        if not nights:
            return
        night = nights[0]
        for item in self.log.inputs(night.id, self.origin):
            try:
                self.coach.handle(item)
            except Refused as e:
                logger.warning("%s: logged %s no longer applies (%s)", self.log.path, item.type, e)
        last_seen = night.last_seen - self.origin
        self.coach.tick(last_seen)
        if night.ended is not None:
            return
        if self.coach.status().crying:
            self._resumed(night.id, AudioLost(t=last_seen))
        if night.evening == evening:
            self._night_id = night.id
            return
        # A session left on from an earlier evening ended at its last sign of life; what fell due
        # after that, hours ago, is no news now.
        self._resumed(night.id, SessionEnd(t=last_seen))
        self.log.end_night(night.id, night.last_seen)
        self.coach.tick(0.0)

    def _resumed(self, night_id: int, item: Input) -> None:
        """An input the restart itself implies, applied and logged like any other."""
        self.coach.handle(item)
        self.log.add_input(night_id, item, self.origin)

    def _use_method(self, method: str) -> None:
        if self.coach.status().method == method:
            return
        try:
            self.handle(SetMethod(method=method, t=0.0))
        except Refused as e:
            logger.warning("check-in method stays %s: %s", self.coach.status().method, e)

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
        """Apply `item` (Refused leaves coach and log unchanged) and log it with outputs."""
        if isinstance(item, SessionStart):
            item = self._planned(item)
        out = self.coach.handle(item)
        if isinstance(item, CryEnd):
            self.log.set_last_cry(self.origin + item.t, item.duration_s)
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
