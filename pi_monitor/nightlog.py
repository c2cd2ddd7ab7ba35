"""The night log: a SQLite file in the state directory with every sleep-training night.

It keeps the coach's inputs for each night (detector events and parent commands), so a restart
mid-night rebuilds the coach by replaying them (same episode, same check-in count), the coach's
outputs (check-ins, answers, settled episodes, escalations) for the report, and the settings a
parent chose in Home Assistant, so those outlast a restart too.
Times are stored as Unix epoch seconds: audio time restarts at 0 with every stream, so each
stream's `origin` (the epoch of its audio time 0) converts both ways.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pi_monitor.checkin import AudioLost, CheckinCoach, CoachStatus, Input
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart, SetMethod
from pi_monitor.config import CheckinSettings
from pi_monitor.events import TIME_FIELDS, CheckinDue, CryEnd, CryOnset, Escalation, Event, Settled

FILENAME = "nightlog.sqlite3"
HEARTBEAT_S = 30.0
EVENING_SHIFT = datetime.timedelta(hours=12)
INPUT_TYPES: dict[str, type] = {
    cls.type: cls
    for cls in (CryOnset, CryEnd, SessionStart, SessionEnd, CheckedIn, SetMethod, AudioLost)
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS nights (
    id INTEGER PRIMARY KEY,
    evening TEXT NOT NULL UNIQUE,
    night INTEGER NOT NULL,
    method TEXT NOT NULL,
    fading_step TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL,
    ended REAL,
    last_seen REAL NOT NULL,
    wakings INTEGER NOT NULL DEFAULT 0,
    cry_s REAL NOT NULL DEFAULT 0,
    checkins INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS inputs (
    id INTEGER PRIMARY KEY,
    night_id INTEGER NOT NULL REFERENCES nights(id),
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS episodes (
    night_id INTEGER NOT NULL REFERENCES nights(id),
    episode INTEGER NOT NULL,
    settled REAL NOT NULL,
    cry_s REAL NOT NULL,
    episode_s REAL NOT NULL,
    PRIMARY KEY (night_id, episode)
);
CREATE TABLE IF NOT EXISTS checkins (
    id INTEGER PRIMARY KEY,
    night_id INTEGER NOT NULL REFERENCES nights(id),
    episode INTEGER NOT NULL,
    checkin INTEGER NOT NULL,
    due REAL,
    method TEXT NOT NULL,
    waited_s REAL,
    detail TEXT,
    answered REAL,
    response_s REAL
);
CREATE TABLE IF NOT EXISTS choices (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    config_value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    id INTEGER PRIMARY KEY,
    night_id INTEGER NOT NULL REFERENCES nights(id),
    t REAL NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class NightLogError(RuntimeError):
    """The night log file cannot be opened or used; the message names the file."""


@dataclass(frozen=True)
class Night:
    """One night's row: totals as the coach last reported them, times as epoch seconds."""

    id: int
    evening: datetime.date
    night: int
    method: str
    fading_step: str
    started: float
    ended: float | None
    last_seen: float
    wakings: int
    cry_s: float
    checkins: int


def evening_of(moment: datetime.datetime) -> datetime.date:
    """The evening a moment belongs to: 02:00 on the 5th is the night of the 4th."""
    return (moment - EVENING_SHIFT).date()


class NightLog:
    """The SQLite file, every write committed at once.

    WAL with synchronous=NORMAL: appends suit an SD card, a crash or restart of the service loses
    nothing, and a power cut can lose only the last seconds the OS had not written, never the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise NightLogError(f"{self.path}: cannot open the night log ({e})") from None

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> NightLog:
        return cls(Path(state_dir) / FILENAME)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._db:
            return self._db.execute(sql, args).lastrowid or 0

    def choices(self) -> dict[str, tuple[Any, Any]]:
        """Settings chosen in Home Assistant: key -> (value, the config file's value back then)."""
        rows = self._db.execute("SELECT key, value, config_value FROM choices").fetchall()
        return {key: (json.loads(value), json.loads(then)) for key, value, then in rows}

    def remember_choice(self, key: str, value: Any, config_value: Any) -> None:
        self._write(
            "INSERT OR REPLACE INTO choices (key, value, config_value) VALUES (?, ?, ?)",
            (key, json.dumps(value), json.dumps(config_value)),
        )

    def forget_choice(self, key: str) -> None:
        self._write("DELETE FROM choices WHERE key = ?", (key,))

    def nights(self, last: int | None = None) -> list[Night]:
        """Nights in evening order; `last` keeps only the most recent ones."""
        rows = self._db.execute(
            "SELECT id, evening, night, method, fading_step, started, ended, last_seen, wakings,"
            " cry_s, checkins FROM nights ORDER BY evening DESC LIMIT ?",
            (-1 if last is None else last,),
        ).fetchall()
        return [Night(r[0], datetime.date.fromisoformat(r[1]), *r[2:]) for r in reversed(rows)]

    def night_number(self, evening: datetime.date, method: str) -> int:
        """The plan's night for `evening`: its own if logged, else 1 + earlier `method` nights."""
        row = self._db.execute(
            "SELECT night FROM nights WHERE evening = ?", (evening.isoformat(),)
        ).fetchone()
        if row:
            return int(row[0])
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM nights WHERE method = ? AND evening < ?",
            (method, evening.isoformat()),
        ).fetchone()
        return int(count) + 1

    def settle_times(self, night_id: int) -> list[float]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT episode_s FROM episodes WHERE night_id = ? ORDER BY episode", (night_id,)
            )
        ]

    def response_times(self, night_id: int) -> list[float]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT response_s FROM checkins WHERE night_id = ? AND response_s IS NOT NULL",
                (night_id,),
            )
        ]

    def escalation_count(self, night_id: int) -> int:
        (n,) = self._db.execute(
            "SELECT COUNT(*) FROM escalations WHERE night_id = ?", (night_id,)
        ).fetchone()
        return int(n)

    def open_night(self, start: SessionStart, method: str, fading_step: str, at: float) -> int:
        """Insert the evening's row, or reopen it when the session is switched on again."""
        evening = start.date.isoformat()
        with self._db:
            self._db.execute(
                "INSERT INTO nights (evening, night, method, fading_step, started, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (evening) DO UPDATE SET ended = NULL,"
                " method = excluded.method, last_seen = excluded.last_seen",
                (evening, start.night, method, fading_step, at, at),
            )
            (night_id,) = self._db.execute(
                "SELECT id FROM nights WHERE evening = ?", (evening,)
            ).fetchone()
        return int(night_id)

    def end_night(self, night_id: int, at: float) -> None:
        self._write("UPDATE nights SET ended = ?, last_seen = ? WHERE id = ?", (at, at, night_id))

    def add_input(self, night_id: int, item: Input, origin: float) -> None:
        self._write(
            "INSERT INTO inputs (night_id, payload) VALUES (?, ?)",
            (night_id, json.dumps(_encode(item, origin))),
        )

    def inputs(self, night_id: int, origin: float) -> Iterator[Input]:
        """The night's inputs in order, in the audio time of a stream starting at `origin`."""
        for (payload,) in self._db.execute(
            "SELECT payload FROM inputs WHERE night_id = ? ORDER BY id", (night_id,)
        ).fetchall():
            yield _decode(json.loads(payload), origin)

    def add_output(self, night_id: int, event: Event, origin: float) -> None:
        match event:
            case CheckinDue():
                self._write(
                    "INSERT INTO checkins (night_id, episode, checkin, due, method, waited_s,"
                    " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        night_id,
                        event.episode,
                        event.checkin,
                        origin + event.t,
                        event.method,
                        event.waited_s,
                        event.detail,
                    ),
                )
            case Settled():
                self._write(
                    "INSERT OR REPLACE INTO episodes (night_id, episode, settled, cry_s,"
                    " episode_s) VALUES (?, ?, ?, ?, ?)",
                    (night_id, event.episode, origin + event.t, event.cry_s, event.episode_s),
                )
            case Escalation():
                self._write(
                    "INSERT INTO escalations (night_id, t, reason, detail) VALUES (?, ?, ?, ?)",
                    (night_id, origin + event.t, event.reason, event.detail),
                )

    def add_answer(
        self, night_id: int, episode: int, checkin: int, answered: float, response_s: float | None
    ) -> None:
        """A parent's "checked in": fills the check-in it answered, or logs a visit (checkin 0)."""
        if checkin:
            self._write(
                "UPDATE checkins SET answered = ?, response_s = ? WHERE night_id = ?"
                " AND episode = ? AND checkin = ?",
                (answered, response_s, night_id, episode, checkin),
            )
        else:
            self._write(
                "INSERT INTO checkins (night_id, episode, checkin, method, answered)"
                " VALUES (?, ?, 0, '', ?)",
                (night_id, episode, answered),
            )

    def update_night(self, night_id: int, status: CoachStatus, at: float) -> None:
        self._write(
            "UPDATE nights SET wakings = ?, cry_s = ?, checkins = ?, method = ?,"
            " last_seen = MAX(last_seen, ?) WHERE id = ?",
            (
                status.night_wakings,
                status.night_cry_s,
                status.night_checkins,
                status.method,
                at,
                night_id,
            ),
        )

    def touch(self, night_id: int, at: float) -> None:
        self._write("UPDATE nights SET last_seen = MAX(last_seen, ?) WHERE id = ?", (at, night_id))


def _encode(item: Input, origin: float) -> dict[str, Any]:
    data = item.to_dict()
    for key in TIME_FIELDS:
        if key in data:
            data[key] = origin + getattr(item, key)
    if "date" in data:
        data["date"] = data["date"].isoformat()
    return data


def _decode(data: dict[str, Any], origin: float) -> Input:
    cls = INPUT_TYPES[data.pop("type")]
    for key in TIME_FIELDS:
        if key in data:
            data[key] -= origin
    if "date" in data:
        data["date"] = datetime.date.fromisoformat(data["date"])
    return cls(**data)


class JournaledCoach:
    """A CheckinCoach whose nights are written to the night log as they happen.

    Same `handle` / `tick` / `status` as the coach. Open it with `JournaledCoach.open` at
    start-up: it replays tonight's logged inputs, so after a restart the coach is in the same
    episode with the same check-in count; a bout that was open when the stream stopped is ended
    at the last moment the log saw (the new stream's detector reports crying that goes on).
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
