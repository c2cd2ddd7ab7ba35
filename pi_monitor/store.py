"""The state directory's SQLite files, behind one small interface that never fails the service.

The night log and the settings chosen in Home Assistant live in `nightlog.sqlite3`, the MQTT
outbox in `mqtt-outbox.sqlite3`; every read and write of either goes through a `Store`, so what a
failing disk does to them is decided here, once (docs/DESIGN.md "When the disk fails"):

- A file that cannot be written (a full disk, a read-only mount, no permission) is no error for
  its user: the store carries on in memory from what the file held, reports a `storage_failed`
  fault that says how to fix it (the problem sensor and an escalation), and writes everything
  back by itself, tried with backoff, as soon as the file takes it again.
- A damaged file (not SQLite, truncated, failing its check, overwritten while in use) is moved
  aside as `<name>.corrupt-<time>` and replaced by what the store still holds, or by an empty one
  (its users then write back what they hold in memory), with a one-off `storage_failed` notice.

An error that says the SQL itself is wrong (a bug) is raised as it is. `pi-monitor report`
opens the file with `repair=False`: it only reads, and a file it cannot use is a `StoreError`.
WAL with synchronous=NORMAL: appends suit an SD card, a crash or restart of the service loses
nothing, and a power cut can lose only the last seconds the OS had not written, never the file.
"""

from __future__ import annotations

import datetime
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pi_monitor.backoff import Backoff
from pi_monitor.events import Reason
from pi_monitor.faults import Faults

log = logging.getLogger(__name__)

FILENAME = "nightlog.sqlite3"
SQLITE_HEADER = b"SQLite format 3\x00"
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0  # writing back to a file that failed
CHECK_EVERY_S = 5.0  # looking at the file under a store that works: still ours, still SQLite
DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
UNWRITABLE = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_PROTOCOL,
    }
)

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

T = TypeVar("T")


class StoreError(RuntimeError):
    """The state file cannot be read (`repair=False` only); the message names the file."""


class _Damaged(Exception):
    """The file is not a sound SQLite database; the message says what is wrong with it."""


def _failure(e: BaseException) -> str | None:
    """ "damaged" or "unwritable" for a failure of the file or the disk; None for a bug."""
    if isinstance(e, _Damaged):
        return "damaged"
    if isinstance(e, OSError):
        return "unwritable"
    code = getattr(e, "sqlite_errorcode", None)
    if not isinstance(e, sqlite3.Error) or code is None:
        return None
    if code & 0xFF in DAMAGED:
        return "damaged"
    return "unwritable" if code & 0xFF in UNWRITABLE else None


class Store:
    """One SQLite file (or, while it fails, its copy in memory); every write commits at once.
    Thread-safe: the outbox is written by the flow and acknowledged by the MQTT thread."""

    def __init__(
        self,
        path: str | Path,
        faults: Faults | None = None,
        *,
        what: str = "the night log",
        repair: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.faults = faults or Faults()
        self.what = what
        self.repair = repair
        self.monotonic = monotonic
        self._lock = threading.RLock()
        self._schemas: list[str] = []
        self._on_fresh: list[Callable[[], None]] = []
        self._retry = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        self._retry_at = 0.0
        self._checked_at = monotonic()
        self._inode = 0
        self.in_memory = False
        self._closed = False
        self._db: sqlite3.Connection
        self._open()

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, faults: Faults | None = None) -> Store:
        return cls(Path(state_dir) / FILENAME, faults)

    # ---- what its users call ----

    def create(self, schema: str) -> None:
        """Create the tables a user of the file needs (a no-op when they exist); remembered, so a
        replacement file gets them too."""
        with self._lock:
            self._schemas.append(schema)
            self._use(lambda db: db.executescript(schema))

    def on_fresh(self, restore: Callable[[], None]) -> None:
        """Call `restore` whenever the store had to start over empty (its file was damaged beyond
        rescue), so a user can write back what it holds in memory."""
        self._on_fresh.append(restore)

    def write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one statement and commit; returns the new row's id (0 when none)."""
        return self.transact(lambda db: db.execute(sql, args).lastrowid or 0)

    def transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one transaction and commit. It may run twice (again in memory after the
        file failed), so it must change nothing but the database."""

        def run(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return self._use(run)

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._use(lambda db: db.execute(sql, args).fetchall())

    def row(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._use(lambda db: db.execute(sql, args).fetchone())

    def recover(self) -> None:
        """Call often (the service's loop, the MQTT thread): in memory, write back to the file
        when the backoff allows; on the file, check now and then that it is still ours."""
        with self._lock:
            now = self.monotonic()
            if self.in_memory and now >= self._retry_at:
                self._write_back()
            elif not self.in_memory and self.repair and now - self._checked_at >= CHECK_EVERY_S:
                self._checked_at = now
                self._check_file()

    def close(self) -> None:
        """A last try to write back what is only in memory, then close (once)."""
        with self._lock:
            if self._closed:
                return
            if self.in_memory:
                self._write_back()
            self._db.close()
            self._closed = True

    # ---- the file, and what to do when it fails ----

    def _use(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the file; when the file fails, again on what replaces it (a new file, then
        memory, which does not fail)."""
        with self._lock:
            for _ in range(2):
                try:
                    return work(self._db)
                except (sqlite3.Error, OSError) as e:
                    kind = _failure(e)
                    if kind is None or self.in_memory:
                        raise
                    if not self.repair:
                        raise StoreError(f"{self.path}: cannot use the state file ({e})") from None
                    self._failed(kind, e)
            return work(self._db)

    def _connect(self) -> sqlite3.Connection:
        """The file, opened and checked (raises what `_failure` sorts)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise _Damaged(f"integrity check: {verdict}")
            self._inode = self.path.stat().st_ino
            for schema in self._schemas:
                db.executescript(schema)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> None:
        """At start: the file; a damaged one moved aside for a new one; memory if none works."""
        try:
            self._db = self._connect()
        except (sqlite3.Error, OSError, _Damaged) as e:
            kind = _failure(e)
            if kind is None:
                raise
            if not self.repair:
                raise StoreError(f"{self.path}: cannot open the state file ({e})") from None
            if kind == "damaged":
                self._replace(e, None)
            else:
                self._to_memory(e, self._read_only_copy())

    def _failed(self, kind: str, error: BaseException) -> None:
        """The file failed in use: rescue what the connection holds, then replace or leave it."""
        held = self._copy(self._db)
        self._db.close()
        if kind == "damaged":
            self._replace(error, held)
        else:
            self._to_memory(error, held)

    def _check_file(self) -> None:
        try:
            with self.path.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
            inode = self.path.stat().st_ino
        except OSError as e:
            self._failed("damaged", _Damaged(f"the file is gone ({e.strerror})"))
            return
        if inode != self._inode:
            self._failed("damaged", _Damaged("the file was replaced while in use"))
        elif header != SQLITE_HEADER:
            self._failed("damaged", _Damaged("the file was overwritten: not SQLite any more"))

    def _replace(self, why: BaseException, held: sqlite3.Connection | None) -> None:
        """Move the damaged file aside and go on in a new one with what `held` holds."""
        moved = self._move_aside()
        from_ = "what the service still held" if held else "empty (the rest is in the moved file)"
        detail = f"{self.path} was damaged ({why}) and {moved}; {self.what} goes on from {from_}"
        log.error("%s", detail)
        self.faults.notice(Reason.STORAGE_FAILED, detail)
        self._fresh_file(held)

    def _move_aside(self) -> str:
        """Keep the damaged file for a look later, out of the way of a new one; says where."""
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        if not self.path.exists():
            return "is gone"
        try:
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    companion.rename(aside.with_name(aside.name + suffix))
        except OSError as e:
            return f"could not be moved aside ({e.strerror})"
        return f"was moved aside as {aside.name}"

    def _fresh_file(self, held: sqlite3.Connection | None) -> None:
        """A new file with what `held` holds (or empty, and its users restore what they can)."""
        try:
            db = self._connect()
            if held is not None:
                held.backup(db)
        except (sqlite3.Error, OSError, _Damaged) as e:
            if _failure(e) is None:
                raise
            self._to_memory(e, held)
            return
        self._db, self.in_memory = db, False
        if held is None:
            self._restore()
        else:
            held.close()

    def _to_memory(self, error: BaseException, held: sqlite3.Connection | None) -> None:
        """Carry on in memory with what `held` holds, and say so until the file works again."""
        memory = held or sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        for schema in self._schemas:
            memory.executescript(schema)
        self._db = memory
        was_in_memory, self.in_memory = self.in_memory, True
        self._retry_at = self.monotonic() + self._retry.next_delay()
        self.faults.report(str(self.path), Reason.STORAGE_FAILED, self._advice(error))
        if not was_in_memory:
            log.error("%s", self._advice(error))
        if held is None:
            self._restore()

    def _advice(self, error: BaseException) -> str:
        where = self.path.parent
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        if code == sqlite3.SQLITE_FULL or getattr(error, "errno", None) in FULL_ERRNOS:
            fix = f"free some space on the disk that holds {where}"
        elif code == sqlite3.SQLITE_IOERR:
            fix = f"check the disk that holds {where} (full, or failing)"
        else:
            fix = f"make {where} writable for the service (is its disk mounted read-only?)"
        return (
            f"{self.path} cannot be written ({error}); {self.what} is kept in memory and written "
            f"back by itself once it can (a restart before then loses it): {fix}"
        )

    def _write_back(self) -> None:
        """Memory back to the file, in one transaction: it all lands, or the file is as it was."""
        try:
            db = self._connect()
        except (sqlite3.Error, OSError, _Damaged) as e:
            if _failure(e) is None:
                raise
            if _failure(e) == "damaged":
                detail = f"{self.path} was damaged ({e}) and {self._move_aside()}"
                log.error("%s; %s is written to a new one", detail, self.what)
                self.faults.notice(Reason.STORAGE_FAILED, detail)
            self._retry_at = self.monotonic() + self._retry.next_delay()
            return
        try:
            self._db.backup(db)
        except (sqlite3.Error, OSError) as e:
            db.close()
            if _failure(e) is None:
                raise
            self._retry_at = self.monotonic() + self._retry.next_delay()
            return
        self._db.close()
        self._db, self.in_memory = db, False
        self._retry.reset()
        self._checked_at = self.monotonic()
        self.faults.clear(str(self.path))
        log.warning("%s: written back; %s is kept on disk again", self.path, self.what)

    def _copy(self, db: sqlite3.Connection) -> sqlite3.Connection | None:
        """What `db` still holds, in memory; None when it cannot be read whole and sound (a
        backup copies pages as they are, so the copy is checked)."""
        memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        try:
            db.backup(memory)
            (verdict,) = memory.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.Error:
            verdict = "unreadable"
        if verdict != "ok":
            memory.close()
            return None
        return memory

    def _read_only_copy(self) -> sqlite3.Connection | None:
        """What the file holds, read without writing anything (a read-only disk), or None."""
        if not self.path.is_file():
            return None
        for mode in ("ro", "ro&immutable=1"):
            try:
                source = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode={mode}", uri=True)
            except sqlite3.Error:
                continue
            try:
                copy = self._copy(source)
            finally:
                source.close()
            if copy is not None:
                return copy
        return None

    def _restore(self) -> None:
        for restore in self._on_fresh:
            restore()
