"""A bounded on-disk queue of events waiting for the broker's acknowledgement.

Every event gets a `seq` that grows by one per event and is never reused, even across restarts
(the counter lives in the same SQLite file), so a subscriber can spot duplicates and gaps. An
event leaves the outbox only when the broker has acknowledged it (QoS 1 PUBACK), so a crash,
a broker restart or a network cut loses nothing that was queued.

Size: at most `max_events` rows (config `mqtt.queue_max_events`, default 10 000; a JSON event is
~200 bytes, so about 2 MB). When full, the OLDEST event is dropped to make room (a stale
`cry_onset` from hours ago matters less than what is happening now), counted in `dropped` (kept
on disk) and logged with the dropped seq range (a flood: one line and a counted summary a minute).

Durability: the queue is a `Store` (SQLite in WAL mode with synchronous=NORMAL): a process crash
loses nothing that `put` returned for; a power cut may lose the last few puts but never corrupts
the file. A full or read-only disk does not stop events: the store keeps the queue in memory,
bounded like the file, until it can write it back (a `storage_failed` fault meanwhile).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pi_monitor.faults import Faults
from pi_monitor.repeated import RepeatedWarning
from pi_monitor.store import Store

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('dropped', 0);
"""


class Outbox:
    """Thread-safe: the service puts, the MQTT thread reads and acknowledges."""

    def __init__(
        self,
        path: Path,
        max_events: int,
        faults: Faults | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self.path = path
        self.max_events = max_events
        self.store = Store(path, faults, what="the queue of events for MQTT", monotonic=monotonic)
        self.store.create(_SCHEMA)
        self._lock = threading.Lock()
        self._last_seq = self._meta("last_seq")  # in memory: the MQTT thread polls it often
        row = self.store.row("SELECT COUNT(*) FROM outbox")
        self._count = int(row[0]) if row else 0
        self._drops = RepeatedWarning(log, monotonic=monotonic)

    def put(self, event: dict[str, Any]) -> int:
        """Store `event` with the next `seq` added to it; returns that seq."""
        with self._lock:
            seq = self._last_seq + 1
            payload = json.dumps({**event, "seq": seq}, separators=(",", ":")).encode()
            self._count, dropped = self.store.transact(lambda db: self._insert(db, seq, payload))
            self._last_seq = seq
        if dropped is not None:
            self._drops.warn(
                "MQTT outbox full (%d events): dropped oldest seq %d..%d; %d dropped in total",
                self.max_events,
                *dropped,
            )
        return seq

    def _insert(
        self, db: sqlite3.Connection, seq: int, payload: bytes
    ) -> tuple[int, tuple[int, int, int] | None]:
        """Add one event, then drop the oldest beyond `max_events`: the events now waiting, and
        (first, last, total) of those dropped."""
        db.execute("INSERT INTO outbox VALUES (?, ?)", (seq, payload))
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
        (count,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = count - self.max_events
        if excess <= 0:
            return count, None
        first, last = db.execute(
            "SELECT MIN(seq), MAX(seq) FROM (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
            (excess,),
        ).fetchone()
        db.execute("DELETE FROM outbox WHERE seq <= ?", (last,))
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
        (total,) = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return self.max_events, (first, last, total)

    def peek(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` waiting events with seq > `after_seq`, oldest first."""
        rows = self.store.rows(
            "SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        )
        return [(seq, bytes(payload)) for seq, payload in rows]

    def ack(self, seq: int) -> None:
        """The broker has the event: forget it (a seq dropped meanwhile is ignored). Deleted and
        counted under the lock `put` counts under: a put in between would see the delete twice."""
        sql = "DELETE FROM outbox WHERE seq = ?"
        with self._lock:
            self._count -= self.store.transact(lambda db: db.execute(sql, (seq,)).rowcount)

    def recover(self) -> None:
        """Now and then (the MQTT thread): write a queue kept in memory back to its file, and
        log the summary of dropped events when one is due."""
        self.store.recover()
        self._drops.flush()

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def dropped(self) -> int:
        """Events dropped because the outbox was full, over the file's whole life."""
        return self._meta("dropped")

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._last_seq

    def _meta(self, key: str) -> int:
        row = self.store.row("SELECT value FROM meta WHERE key = ?", (key,))
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.store.close()
