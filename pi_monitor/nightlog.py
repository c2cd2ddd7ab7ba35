"""The night log: every sleep-training night, in the state directory's file (`store.py`).

It keeps the coach's inputs for each night (detector events and parent commands), so a restart
mid-night rebuilds the coach by replaying them (`journal.py`), and the coach's outputs
(check-ins, answers, settled episodes, escalations) for the report.
Times are stored as Unix epoch seconds: audio time restarts at 0 with every stream, so each
stream's `origin` (the epoch of its audio time 0) converts both ways.

A row that cannot be read back (an unknown input type, bad JSON, a field of the wrong type, an
evening that is not a date: a damaged or hand-edited file) is skipped with a warning that names
it; the rest of the night still counts.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pi_monitor.checkin import AudioHeard, AudioLost, CoachStatus, Input
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart, SetMethod
from pi_monitor.events import TIME_FIELDS, CheckinDue, CryEnd, CryOnset, Escalation, Event, Settled
from pi_monitor.store import Store

log = logging.getLogger(__name__)

EVENING_SHIFT = datetime.timedelta(hours=12)
INPUT_TYPES: dict[str, type] = {
    cls.type: cls
    for cls in (
        CryOnset,
        CryEnd,
        SessionStart,
        SessionEnd,
        CheckedIn,
        SetMethod,
        AudioLost,
        AudioHeard,
    )
}
NUMBER = "integer', 'real"  # SQLite's typeof() for a number: `typeof(x) IN ('{NUMBER}')`
T = TypeVar("T")


class BadRow(ValueError):
    """A row the log cannot use; the message says what is wrong with it."""


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
        """Nights in evening order; `last` keeps only the most recent ones (good rows only)."""
        rows = self.store.rows(
            "SELECT id, evening, night, method, fading_step, started, ended, last_seen, wakings,"
            " cry_s, checkins FROM nights ORDER BY evening DESC",
        )
        nights = list(self._readable("nights", rows, _night))
        return list(reversed(nights if last is None else nights[:last]))

    def night_number(self, evening: datetime.date, method: str) -> int:
        """The plan's night for `evening`: its own if logged, else 1 + earlier `method` nights."""
        row = self.store.row("SELECT night FROM nights WHERE evening = ?", (evening.isoformat(),))
        if row and _is_int(row[0]) and row[0] >= 1:
            return int(row[0])
        earlier = self.store.row(
            "SELECT COUNT(*) FROM nights WHERE method = ? AND evening < ?",
            (method, evening.isoformat()),
        )
        return int(earlier[0] if earlier else 0) + 1

    def settle_times(self, night_id: int) -> list[float]:
        sql = (
            "SELECT episode_s FROM episodes WHERE night_id = ?"
            f" AND typeof(episode_s) IN ('{NUMBER}') ORDER BY episode"
        )
        return [r[0] for r in self.store.rows(sql, (night_id,))]

    def response_times(self, night_id: int) -> list[float]:
        sql = (
            "SELECT response_s FROM checkins WHERE night_id = ?"
            f" AND typeof(response_s) IN ('{NUMBER}')"
        )
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
        row = self.store.row(
            f"SELECT duration_s FROM last_cry WHERE id = 1 AND typeof(duration_s) IN ('{NUMBER}')"
        )
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
        sql = "SELECT id, payload FROM inputs WHERE night_id = ? ORDER BY id"
        rows = self.store.rows(sql, (night_id,))
        return self._readable("inputs", rows, lambda row: _decode(row[1], origin))

    def _readable(
        self, table: str, rows: Iterable[tuple[Any, ...]], parse: Callable[[tuple[Any, ...]], T]
    ) -> Iterator[T]:
        """`parse` each row (its id first); one warning names the rows that could not be."""
        bad: list[str] = []
        for row in rows:
            try:
                yield parse(row)
            except BadRow as e:
                bad.append(f"{row[0]} ({e})")
        if bad:
            shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
            log.warning("%s: skipped %d unreadable %s rows: %s", self.path, len(bad), table, shown)

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
            case Settled(interrupted=None):  # an interrupted waking has no time to settle
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


def _decode(payload: Any, origin: float) -> Input:
    """An input as logged; BadRow for anything but a known type with every field well typed."""
    try:
        data = json.loads(payload)
    except (TypeError, ValueError) as e:
        raise BadRow(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRow("not a JSON object")
    kind = data.pop("type", None)
    cls = INPUT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadRow(f"unknown type {kind!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise BadRow(f"{kind}: unknown field {key!r}")
        data[key] = _typed(f"{kind}.{key}", value, hints[key])
        if key in TIME_FIELDS:
            data[key] -= origin
    try:
        return cls(**data)
    except TypeError as e:
        raise BadRow(f"{kind}: {e}") from None


def _night(row: tuple[Any, ...]) -> Night:
    """A `nights` row; BadRow when a column does not hold what the schema means."""
    names = [f.name for f in dataclasses.fields(Night)]
    hints = typing.get_type_hints(Night)
    return Night(*(_typed(f"nights.{n}", v, hints[n]) for n, v in zip(names, row, strict=True)))


def _typed(key: str, value: Any, hint: Any) -> Any:
    """`value` as the type `hint` names (a finite float, an int, a str, an ISO date, or None
    where allowed); BadRow otherwise."""
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and _is_number(value):
            return float(value)
        if kind is int and _is_int(value):
            return value
        if kind is str and isinstance(value, str):
            return value
        if kind is datetime.date and isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                break
    raise BadRow(f"{key} = {value!r} is not a {' or '.join(_name(k) for k in allowed)}")


def _name(kind: Any) -> str:
    return "date" if kind is datetime.date else getattr(kind, "__name__", str(kind))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
