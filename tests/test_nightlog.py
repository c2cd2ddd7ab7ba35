"""Night log: a restart mid-night resumes the same episode and check-in count."""

from __future__ import annotations

import datetime

import pytest
from checkin_script import bout, of_type, settings

from pi_monitor.checkin import known_at
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart
from pi_monitor.events import CheckinDue, Settled
from pi_monitor.journal import JournaledCoach
from pi_monitor.nightlog import NightLog, evening_of
from pi_monitor.store import FILENAME, Store, StoreError

TZ = datetime.timezone(datetime.timedelta(hours=1))
EVENING = datetime.datetime(2024, 6, 1, 19, 30, tzinfo=TZ)


def feed(coach: JournaledCoach, items, until: float, start: float = 0.0) -> list:
    """Ticks every second from `start`, inputs as they become known."""
    out, pending = [], sorted(items, key=known_at)
    for i in range(int(start), int(until) + 1):
        while pending and known_at(pending[0]) <= i:
            out += coach.handle(pending.pop(0))
        out += coach.tick(float(i))
    return out


def open_coach(state_dir, origin: datetime.datetime, **kw) -> JournaledCoach:
    return JournaledCoach.open(
        settings(method="graduated", **kw), NightLog.in_state_dir(state_dir), origin
    )


def test_a_restart_mid_episode_resumes_the_same_episode_and_check_in_count(tmp_path):
    coach = open_coach(tmp_path, EVENING)
    coach.handle(SessionStart(t=0.0))
    first = bout(60.0, 9999.0)[0]
    out = feed(coach, [*bout(10.0, 30.0), first, CheckedIn(t=400.0)], until=900.0)
    assert [(d.episode, d.checkin) for d in of_type(out, CheckinDue)] == [(1, 1), (1, 2)]
    assert [s.episode for s in of_type(out, Settled)] == [] and coach.status().episode == 1
    coach.log.close()  # power cut at audio 900 s; the new stream starts 60 s later

    origin = EVENING + datetime.timedelta(seconds=960)
    again = open_coach(tmp_path, origin)
    status = again.status()
    assert (status.session, status.night, status.episode, status.checkins) == (True, 1, 1, 2)
    assert not status.crying
    out = feed(again, [bout(20.0, 2000.0)[0]], until=1300.0)
    dues = of_type(out, CheckinDue)
    assert (dues[0].episode, dues[0].checkin) == (1, 3)
    assert of_type(out, Settled) == []
    # check-in 2 fell due 5 min after the parent's visit at 400 s; check-in 3 waits 10 min more
    assert dues[0].t + 960.0 == pytest.approx(400.0 + 300.0 + 600.0)


def test_a_night_that_settled_during_the_outage_is_settled_once_on_restart(tmp_path):
    coach = open_coach(tmp_path, EVENING)
    coach.handle(SessionStart(t=0.0))
    feed(coach, [bout(10.0, 99999.0)[0]], until=220.0)
    coach.log.close()  # last heartbeat at 220 s: check-in 1 logged at 190 s, then 30 s later
    again = open_coach(tmp_path, EVENING + datetime.timedelta(hours=1))
    out = again.tick(0.0)
    (settled,) = of_type(out, Settled)
    assert settled.episode == 1 and settled.cry_s == pytest.approx(210.0)
    assert again.tick(1.0) == []
    assert again.log.nights()[0].wakings == 1


def test_inputs_logged_twice_across_restarts_rebuild_the_same_state(tmp_path):
    coach = open_coach(tmp_path, EVENING)
    coach.handle(SessionStart(t=0.0))
    feed(coach, [bout(10.0, 9999.0)[0]], until=500.0)
    coach.log.close()
    for minutes in (10, 20):
        reopened = open_coach(tmp_path, EVENING + datetime.timedelta(minutes=minutes))
        assert (reopened.status().episode, reopened.status().checkins) == (1, 2)
        reopened.log.close()


def test_a_session_switched_back_on_the_same_evening_keeps_the_night(tmp_path):
    coach = open_coach(tmp_path, EVENING)
    coach.handle(SessionStart(t=0.0))
    feed(coach, bout(10.0, 100.0), until=500.0)
    coach.handle(SessionEnd(t=600.0))
    coach.handle(SessionStart(t=700.0))
    feed(coach, bout(800.0, 900.0), until=1300.0, start=700.0)
    (night,) = coach.log.nights()
    assert (night.night, night.wakings, night.ended) == (1, 2, None)


def test_nights_are_numbered_per_method_and_evening(tmp_path):
    log = NightLog(Store(tmp_path / FILENAME))
    for day in range(3):
        origin = EVENING + datetime.timedelta(days=day)
        coach = JournaledCoach.open(settings(method="graduated"), log, origin)
        coach.handle(SessionStart(t=0.0))
        assert coach.status().night == day + 1 and log.nights()[-1].evening == origin.date()
        coach.handle(SessionEnd(t=36000.0))
    assert [n.night for n in log.nights()] == [1, 2, 3]
    assert [n.night for n in log.nights(last=2)] == [2, 3]


def test_a_stale_open_night_is_closed_at_its_last_sign_of_life(tmp_path):
    coach = open_coach(tmp_path, EVENING)
    coach.handle(SessionStart(t=0.0))
    feed(coach, [], until=100.0)
    coach.log.close()
    later = open_coach(tmp_path, EVENING + datetime.timedelta(days=2))
    assert not later.status().session
    (night,) = later.log.nights()
    assert night.ended == night.last_seen == pytest.approx(EVENING.timestamp() + 90.0)


def test_two_in_the_morning_belongs_to_the_evening_before():
    late = datetime.datetime(2024, 6, 2, 2, 0, tzinfo=TZ)
    assert evening_of(late) == datetime.date(2024, 6, 1)


def test_an_unusable_night_log_path_names_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="file"):
        NightLog(Store(blocker / "sub" / FILENAME))
    bad = tmp_path / FILENAME
    bad.write_text("not a database" * 100)
    with pytest.raises(StoreError, match=FILENAME):
        NightLog(Store(bad))
