"""The night log: every sleep-training night, in the state directory's file (`store.py`).

It keeps the coach's inputs for each night (detector events and parent commands), so a restart
mid-night rebuilds the coach by replaying them (`journal.py`), and the coach's outputs
(check-ins, answers, settled episodes, escalations) for the report.
Times are stored as Unix epoch seconds: audio time restarts at 0 with every stream, so each
stream's `origin` (the epoch of its audio time 0) converts both ways.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pi_monitor.checkin import AudioLost, CoachStatus, Input
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart, SetMethod
from pi_monitor.events import TIME_FIELDS, CheckinDue, CryEnd, CryOnset, Escalation, Event, Settled
from pi_monitor.store import Store

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
CREATE TABLE IF NOT EXISTS escalations (
    id INTEGER PRIMARY KEY,
    night_id INTEGER NOT NULL REFERENCES nights(id),
    t REAL NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS last_cry (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ended REAL NOT NULL,
    duration_s REAL NOT NULL
);
"""


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
    """The nights in the state file; every write is committed at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.create(SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> NightLog:
        return cls(Store.in_state_dir(state_dir))

    @property
    def path(self) -> Path:
        return self.store.path

    def close(self) -> None:
        self.store.close()

    def nights(self, last: int | None = None) -> list[Night]:
        """Nights in evening order; `last` keeps only the most recent ones."""
        rows = self.store.rows(
            "SELECT id, evening, night, method, fading_step, started, ended, last_seen, wakings,"
            " cry_s, checkins FROM nights ORDER BY evening DESC LIMIT ?",
            (-1 if last is None else last,),
        )
        return [Night(r[0], datetime.date.fromisoformat(r[1]), *r[2:]) for r in reversed(rows)]

    def night_number(self, evening: datetime.date, method: str) -> int:
        """The plan's night for `evening`: its own if logged, else 1 + earlier `method` nights."""
        row = self.store.row("SELECT night FROM nights WHERE evening = ?", (evening.isoformat(),))
        if row:
            return int(row[0])
        earlier = self.store.row(
            "SELECT COUNT(*) FROM nights WHERE method = ? AND evening < ?",
            (method, evening.isoformat()),
        )
        return int(earlier[0] if earlier else 0) + 1

    def settle_times(self, night_id: int) -> list[float]:
        sql = "SELECT episode_s FROM episodes WHERE night_id = ? ORDER BY episode"
        return [r[0] for r in self.store.rows(sql, (night_id,))]

    def response_times(self, night_id: int) -> list[float]:
        sql = "SELECT response_s FROM checkins WHERE night_id = ? AND response_s IS NOT NULL"
        return [r[0] for r in self.store.rows(sql, (night_id,))]

    def escalation_count(self, night_id: int) -> int:
        row = self.store.row("SELECT COUNT(*) FROM escalations WHERE night_id = ?", (night_id,))
        return int(row[0] if row else 0)

    def open_night(self, start: SessionStart, method: str, fading_step: str, at: float) -> int:
        """Insert the evening's row, or reopen it when the session is switched on again."""
        assert start.date is not None and start.night is not None, "a planned SessionStart"
        evening = start.date.isoformat()
        self.store.write(
            "INSERT INTO nights (evening, night, method, fading_step, started, last_seen)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (evening) DO UPDATE SET ended = NULL,"
            " method = excluded.method, last_seen = excluded.last_seen",
            (evening, start.night, method, fading_step, at, at),
        )
        row = self.store.row("SELECT id FROM nights WHERE evening = ?", (evening,))
        assert row is not None
        return int(row[0])

    def last_cry_s(self) -> float | None:
        """How long the last cry heard lasted, in a session or not (None: none yet)."""
        row = self.store.row("SELECT duration_s FROM last_cry WHERE id = 1")
        return None if row is None else float(row[0])

    def set_last_cry(self, ended: float, duration_s: float) -> None:
        self.store.write(
            "INSERT OR REPLACE INTO last_cry (id, ended, duration_s) VALUES (1, ?, ?)",
            (ended, duration_s),
        )

    def end_night(self, night_id: int, at: float) -> None:
        self.store.write(
            "UPDATE nights SET ended = ?, last_seen = ? WHERE id = ?", (at, at, night_id)
        )

    def add_input(self, night_id: int, item: Input, origin: float) -> None:
        self.store.write(
            "INSERT INTO inputs (night_id, payload) VALUES (?, ?)",
            (night_id, json.dumps(_encode(item, origin))),
        )

    def inputs(self, night_id: int, origin: float) -> Iterator[Input]:
        """The night's inputs in order, in the audio time of a stream starting at `origin`."""
        sql = "SELECT payload FROM inputs WHERE night_id = ? ORDER BY id"
        for (payload,) in self.store.rows(sql, (night_id,)):
            yield _decode(json.loads(payload), origin)

    def add_output(self, night_id: int, event: Event, origin: float) -> None:
        match event:
            case CheckinDue():
                self.store.write(
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
                self.store.write(
                    "INSERT OR REPLACE INTO episodes (night_id, episode, settled, cry_s,"
                    " episode_s) VALUES (?, ?, ?, ?, ?)",
                    (night_id, event.episode, origin + event.t, event.cry_s, event.episode_s),
                )
            case Escalation():
                self.store.write(
                    "INSERT INTO escalations (night_id, t, reason, detail) VALUES (?, ?, ?, ?)",
                    (night_id, origin + event.t, event.reason, event.detail),
                )

    def add_answer(
        self, night_id: int, episode: int, checkin: int, answered: float, response_s: float | None
    ) -> None:
        """A parent's "checked in": fills the check-in it answered, or logs a visit (checkin 0)."""
        if checkin:
            self.store.write(
                "UPDATE checkins SET answered = ?, response_s = ? WHERE night_id = ?"
                " AND episode = ? AND checkin = ?",
                (answered, response_s, night_id, episode, checkin),
            )
        else:
            self.store.write(
                "INSERT INTO checkins (night_id, episode, checkin, method, answered)"
                " VALUES (?, ?, 0, '', ?)",
                (night_id, episode, answered),
            )

    def update_night(self, night_id: int, status: CoachStatus, at: float) -> None:
        self.store.write(
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
