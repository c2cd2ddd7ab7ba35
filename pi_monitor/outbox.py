"""A bounded on-disk queue of events waiting for the broker's acknowledgement.

Every event gets a `seq` that grows by one per event and is never reused, even across restarts
(the counter lives in the same SQLite file), so a subscriber can spot duplicates and gaps. An
event leaves the outbox only when the broker has acknowledged it (QoS 1 PUBACK), so a crash,
a broker restart or a network cut loses nothing that was queued.

Size: at most `max_events` rows (config `mqtt.queue_max_events`, default 10 000; a JSON event is
~200 bytes, so about 2 MB). When full, the OLDEST event is dropped to make room (a stale
`cry_onset` from hours ago matters less than what is happening now), counted in `dropped` (kept
on disk) and logged as a warning with the dropped seq range.

Durability: SQLite in WAL mode with synchronous=NORMAL: a process crash loses nothing that
`put` returned for; a power cut may lose the last few puts but never corrupts the file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('dropped', 0);
"""


class Outbox:
    """Thread-safe: the service puts, the MQTT thread reads and acknowledges."""

    def __init__(self, path: Path, max_events: int) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self.path = path
        self.max_events = max_events
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise OSError(
                f"{path}: cannot open the MQTT outbox ({e}); check service.state_dir"
            ) from None
        self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._last_seq = self._meta("last_seq")  # in memory: the MQTT thread polls it often

    def put(self, event: dict[str, Any]) -> int:
        """Store `event` with the next `seq` added to it; returns that seq."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            seq = self._meta("last_seq") + 1
            payload = json.dumps({**event, "seq": seq}, separators=(",", ":")).encode()
            self._db.execute("INSERT INTO outbox VALUES (?, ?)", (seq, payload))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
            self._last_seq = seq
            self._count += 1
            excess = self._count - self.max_events
            if excess > 0:
                self._drop_oldest(excess)
        return seq

    def _drop_oldest(self, n: int) -> None:
        first, last = self._db.execute(
            "SELECT MIN(seq), MAX(seq) FROM (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
            (n,),
        ).fetchone()
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (last,))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (n,))
        self._count -= n
        log.warning(
            "MQTT outbox full (%d events): dropped oldest seq %d..%d; %d dropped in total",
            self.max_events,
            first,
            last,
            self._meta("dropped"),
        )

    def peek(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` waiting events with seq > `after_seq`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(seq, bytes(payload)) for seq, payload in rows]

    def ack(self, seq: int) -> None:
        """The broker has the event: forget it (a seq dropped meanwhile is ignored)."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
            self._count -= deleted

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def dropped(self) -> int:
        """Events dropped because the outbox was full, over the file's whole life."""
        with self._lock:
            return self._meta("dropped")

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._last_seq

    def _meta(self, key: str) -> int:
        return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
