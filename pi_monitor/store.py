"""The state directory's SQLite file, behind one small interface.

The night log and the settings chosen in Home Assistant both live in it; every read and write
goes through `Store`, so what a failing disk does to them is decided here, in one place.
WAL with synchronous=NORMAL: appends suit an SD card, a crash or restart of the service loses
nothing, and a power cut can lose only the last seconds the OS had not written, never the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

FILENAME = "nightlog.sqlite3"


class StoreError(RuntimeError):
    """The state file cannot be opened or used; the message names the file."""


class Store:
    """One SQLite connection; every write is committed at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{self.path}: cannot open the state file ({e})") from None

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> Store:
        return cls(Path(state_dir) / FILENAME)

    def create(self, schema: str) -> None:
        """Create the tables a user of the file needs (a no-op when they exist)."""
        try:
            self._db.executescript(schema)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot use the state file ({e})") from None

    def write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one statement and commit; returns the new row's id (0 when none)."""
        with self._db:
            return self._db.execute(sql, args).lastrowid or 0

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, args).fetchall()

    def row(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._db.execute(sql, args).fetchone()

    def close(self) -> None:
        self._db.close()
