"""The state file under the night log and the outbox: damage met while the service runs.

(A full or read-only disk and damage found at start-up are in tests/test_outbox.py and
tests/test_service_faults.py; here the file goes wrong under a store that is in use.)
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import pytest
from checkin_script import bout, settings

from pi_monitor.commands import SessionStart
from pi_monitor.faults import Faults
from pi_monitor.journal import JournaledCoach
from pi_monitor.nightlog import NightLog
from pi_monitor.store import CHECK_EVERY_S, FILENAME, Store

EVENING = datetime.datetime(2026, 12, 1, 19, 30).astimezone()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def a_night(path: Path, clock: Clock, faults: Faults) -> JournaledCoach:
    """A night log with tonight's session and a 50 s cry in it."""
    log = NightLog(Store(path, faults, monotonic=clock))
    coach = JournaledCoach.open(settings(method="extinction"), log, EVENING)
    coach.handle(SessionStart(t=0.0))
    for item in bout(10.0, 60.0):
        coach.handle(item)
    coach.tick(90.0)
    return coach


def on_disk(path: Path) -> list:
    """The nights as `pi-monitor report` reads them from the file."""
    return NightLog(Store(path, repair=False)).nights()


def test_a_file_overwritten_while_in_use_is_moved_aside_and_rebuilt_from_what_the_store_held(
    tmp_path: Path,
) -> None:
    path, clock, faults = tmp_path / FILENAME, Clock(), Faults()
    coach = a_night(path, clock, faults)
    path.write_bytes(b"\xff" * path.stat().st_size)
    clock.now += CHECK_EVERY_S
    coach.log.store.recover()
    (aside,) = tmp_path.glob(f"{FILENAME}.corrupt-*")
    (notice,) = faults.take_notices()
    assert "overwritten" in notice.detail and aside.name in notice.detail
    (night,) = on_disk(path)
    assert night.cry_s == pytest.approx(50.0), "rebuilt from what the service still held"
    coach.tick(400.0)
    assert on_disk(path)[0].wakings == 1 and not faults.active()


def test_a_file_removed_while_in_use_is_written_again(tmp_path: Path) -> None:
    path, clock, faults = tmp_path / FILENAME, Clock(), Faults()
    coach = a_night(path, clock, faults)
    path.unlink()
    clock.now += CHECK_EVERY_S
    coach.log.store.recover()
    (night,) = on_disk(path)
    assert night.cry_s == pytest.approx(50.0)
    assert "gone" in faults.take_notices()[0].detail


def test_a_file_beyond_rescue_starts_empty_and_the_coach_writes_tonight_back(
    tmp_path: Path,
) -> None:
    path, clock, faults = tmp_path / FILENAME, Clock(), Faults()
    db = sqlite3.connect(path)
    with db:  # older nights' worth of pages the store never reads, so never holds
        db.execute("CREATE TABLE old (x)")
        db.executemany("INSERT INTO old VALUES (?)", [("x" * 1000,)] * 3000)
    db.close()
    coach = a_night(path, clock, faults)
    path.write_bytes(b"\xff" * path.stat().st_size)
    clock.now += CHECK_EVERY_S
    coach.log.store.recover()
    assert len(list(tmp_path.glob(f"{FILENAME}.corrupt-*"))) == 1
    (night,) = on_disk(path)
    assert night.evening == EVENING.date() and night.cry_s == pytest.approx(50.0)
    assert night.ended is None, "tonight's session goes on in the new file"


def test_an_error_in_the_sql_itself_is_raised_not_taken_for_a_failing_disk(tmp_path: Path) -> None:
    faults = Faults()
    store = Store(tmp_path / FILENAME, faults)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.write("INSERT INTO nowhere VALUES (1)")
    assert not faults.active() and not store.in_memory


def test_a_store_its_users_each_close_on_a_full_disk_closes_once_without_an_error(
    small_disk,
) -> None:
    """The service closes the store after the night log did (a shutdown while the disk is full)."""
    store = Store(small_disk.path / FILENAME, Faults())
    store.create("CREATE TABLE IF NOT EXISTS kept (x INTEGER)")
    small_disk.fill()
    store.write("INSERT INTO kept VALUES (1)")
    assert store.in_memory
    store.close()  # the night log's
    store.close()  # the service's: no write-back from a closed copy
