"""CheckinCoach timing: the graduated table to the second, wakings, the cap, other methods."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from checkin_script import TODAY, bout, bouts, of_type, run, settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pi_monitor.checkin import LADDER, SAFETY_REMINDER, AudioLost, CheckinCoach, Refused
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart, SetMethod
from pi_monitor.config import DEFAULT_GRADUATED_MINUTES
from pi_monitor.events import CheckinDue, Escalation, SessionStarted, Settled

ONSET = 1234.0
END_GAP = 4.0


def coach_for(method: str = "graduated", night: int = 1, **kw: object) -> CheckinCoach:
    coach = CheckinCoach(settings(method=method, **kw), TODAY)
    coach.handle(SessionStart(t=0.0, night=night, date=TODAY))
    return coach


def times(events: list, kind: type = CheckinDue) -> list[float]:
    return [e.t for e in of_type(events, kind)]


@pytest.mark.parametrize("night", range(1, 8))
def test_graduated_checkins_follow_the_default_table_to_the_second(night):
    """Continuous crying: check-ins at onset + running sums of the row, the last value repeating;
    the cap interrupts nothing but raises one escalation at exactly 30 min of crying."""
    row = DEFAULT_GRADUATED_MINUTES[night - 1]
    waits = [*row, row[-1], row[-1]]
    expected = list(itertools.accumulate(m * 60.0 for m in waits))
    coach = coach_for(night=night)
    end = ONSET + expected[-1] + 30.0
    out = run(coach, bout(ONSET, end), until=end + 400.0)
    dues = of_type(out, CheckinDue)
    assert [d.t - ONSET for d in dues] == expected
    assert [d.checkin for d in dues] == list(range(1, len(expected) + 1))
    assert [d.waited_s for d in dues] == [m * 60.0 for m in waits]
    assert [d.next_interval_s for d in dues] == [m * 60.0 for m in [*waits[1:], row[-1]]]
    assert {(d.night, d.episode, d.method) for d in dues} == {(night, 1, "graduated")}
    assert times(out, Escalation) == [ONSET + 1800.0]
    (settled,) = of_type(out, Settled)
    assert settled.t == end + 300.0
    assert settled.cry_s == settled.episode_s == end - ONSET


@pytest.mark.parametrize("night", [7, 8, 30])
def test_nights_beyond_the_table_repeat_its_last_row(night):
    coach = coach_for(night=night)
    out = run(coach, bout(0.0, 3000.0), until=3400.0)
    assert times(out) == [1200.0, 2700.0]


def test_a_new_waking_restarts_at_the_nights_first_interval():
    coach = coach_for(night=3)
    first, second = (100.0, 100.0 + 700.0), (2000.0, 2000.0 + 1000.0)
    out = run(coach, bouts([first, second]), until=3400.0)
    assert times(out) == [100.0 + 600.0, 2000.0 + 600.0]
    assert [(d.episode, d.checkin) for d in of_type(out, CheckinDue)] == [(1, 1), (2, 1)]
    s1, s2 = of_type(out, Settled)
    assert (s1.t, s1.episode, s1.cry_s, s1.episode_s) == (800.0 + 300.0, 1, 700.0, 700.0)
    assert (s2.t, s2.episode) == (3000.0 + 300.0, 2)


def test_crying_that_resumes_within_the_settle_time_is_the_same_waking():
    """Night 2: 4 min of crying, a 160 s pause (the 5 min wait ends inside it), crying again:
    the held check-in falls due the moment crying resumes, and the count goes on."""
    coach = coach_for(night=2)
    out = run(coach, bouts([(0.0, 240.0), (400.0, 1100.0)]), until=1500.0)
    dues = of_type(out, CheckinDue)
    assert [(d.t, d.checkin, d.waited_s) for d in dues] == [(400.0, 1, 400.0), (1000.0, 2, 600.0)]
    (settled,) = of_type(out, Settled)
    assert (settled.episode, settled.cry_s, settled.episode_s) == (1, 940.0, 1100.0)


def test_crying_with_pauses_shorter_than_the_settle_time_still_reaches_the_cap():
    """Bouts of 20 and 15 min with a 2 min pause: no bout reaches 30 min, the waking does."""
    coach = coach_for(method="extinction")
    out = run(coach, bouts([(0.0, 1200.0), (1320.0, 2220.0)]), until=2600.0)
    (esc,) = of_type(out, Escalation)
    assert esc.t == 1320.0 + 600.0
    assert esc.reason == "max_crying_exceeded"
    assert "episode 1" in esc.detail
    assert of_type(out, CheckinDue) == []


def test_settling_resets_the_cap():
    coach = coach_for(method="extinction")
    out = run(coach, bouts([(0.0, 1500.0), (1900.0, 3300.0)]), until=3700.0)
    assert of_type(out, Escalation) == []
    assert len(of_type(out, Settled)) == 2


def test_a_lower_cap_escalates_earlier():
    coach = coach_for(method="extinction", max_crying_s=600.0)
    out = run(coach, bout(50.0, 1000.0), until=1400.0)
    assert times(out, Escalation) == [650.0]


def test_the_cap_applies_outside_a_session_but_check_ins_do_not():
    coach = CheckinCoach(settings(method="graduated"), TODAY)
    out = run(coach, bout(0.0, 2000.0), until=2400.0)
    assert times(out, Escalation) == [1800.0]
    assert of_type(out, CheckinDue) == []


def test_the_wait_counts_from_the_parents_checked_in_when_later():
    coach = coach_for(night=1)
    items = [*bout(0.0, 1500.0), CheckedIn(t=180.0 + 45.0)]
    out = run(coach, items, until=1600.0)
    assert times(out) == [180.0, 225.0 + 300.0, 525.0 + 600.0]
    answer = coach.last_answer
    assert answer is not None and (answer.checkin, answer.response_s) == (1, 45.0)


def test_responsive_is_due_at_once_and_climbs_the_ladder_while_crying_goes_on():
    coach = coach_for(method="responsive", responsive_step_s=120.0)
    items = [*bout(ONSET, ONSET + 600.0), CheckedIn(t=ONSET + 8.0)]
    out = run(coach, items, until=ONSET + 1000.0)
    dues = of_type(out, CheckinDue)
    assert [(d.t - ONSET, d.detail) for d in dues] == [
        (0.0, "voice"),
        (128.0, "touch"),
        (248.0, "pick_up"),
    ]
    assert [d.next_interval_s for d in dues] == [120.0, 120.0, None]
    assert coach.last_answer is not None and coach.last_answer.response_s == 8.0
    assert LADDER == ("voice", "touch", "pick_up")


def test_responsive_ladder_stops_when_the_baby_settles():
    coach = coach_for(method="responsive")
    out = run(coach, bout(10.0, 60.0), until=1000.0)
    assert [d.detail for d in of_type(out, CheckinDue)] == ["voice"]
    assert times(out, Settled) == [360.0]


@pytest.mark.parametrize("method", ["extinction", "fading"])
def test_extinction_and_fading_log_crying_and_settling_without_check_ins(method):
    coach = coach_for(method=method, fading_step="chair by the door")
    out = run(coach, bouts([(0.0, 300.0), (450.0, 600.0)]), until=1000.0)
    assert of_type(out, CheckinDue) == []
    (settled,) = of_type(out, Settled)
    assert (settled.cry_s, settled.episode_s) == (450.0, 600.0)
    status = coach.status()
    assert (status.night_wakings, status.night_cry_s) == (1, 450.0)


def test_integer_tables_and_custom_rows_are_used_as_minutes():
    coach = coach_for(night=2, graduated_minutes=[[1], [2, 4]])
    out = run(coach, bout(0.0, 700.0), until=800.0)
    assert times(out) == [120.0, 360.0, 600.0]


def test_a_method_change_applies_from_the_next_check_in():
    coach = coach_for(night=1)
    items = [*bout(0.0, 900.0), SetMethod(t=200.0, method="extinction")]
    out = run(coach, items, until=1300.0)
    assert times(out) == [180.0]


def test_audio_lost_ends_the_open_bout_there():
    coach = coach_for(method="extinction")
    items = [bout(0.0, 999.0)[0], AudioLost(t=100.0)]
    out = run(coach, items, until=500.0)
    (settled,) = of_type(out, Settled)
    assert (settled.t, settled.cry_s) == (400.0, 100.0)


def test_a_session_starts_with_the_safety_reminder_as_its_first_event():
    coach = CheckinCoach(settings(method="fading", fading_step="chair halfway"), TODAY)
    (started,) = coach.handle(SessionStart(t=5.0, night=2, date=TODAY))
    assert started == SessionStarted(
        t=5.0, night=2, method="fading", detail=SAFETY_REMINDER, fading_step="chair halfway"
    )


def test_session_end_stops_check_ins():
    coach = coach_for(night=1)
    out = run(coach, [*bout(0.0, 900.0), SessionEnd(t=300.0)], until=1300.0)
    assert times(out) == [180.0]


def test_switching_the_same_night_back_on_keeps_its_totals_and_numbering():
    coach = coach_for(method="extinction")
    run(coach, [*bout(0.0, 60.0), SessionEnd(t=500.0)], until=600.0)
    coach.handle(SessionStart(t=700.0, night=1, date=TODAY))
    out = run(coach, bout(800.0, 860.0), until=1300.0)
    assert [s.episode for s in of_type(out, Settled)] == [2]
    assert coach.status().night_wakings == 2


def test_refused_commands_leave_the_coach_unchanged():
    young = dataclasses.replace(settings(method="responsive"), birth_date="2024-03-01")
    coach = CheckinCoach(young, TODAY)
    with pytest.raises(Refused, match="under 4 months"):
        coach.handle(SetMethod(t=1.0, method="graduated"))
    with pytest.raises(Refused, match="under 4 months"):
        coach.handle(SessionStart(t=1.0, night=1, date=TODAY, method="extinction"))
    with pytest.raises(Refused, match="night"):
        coach.handle(SessionStart(t=1.0, night=0, date=TODAY))
    assert coach.status().method == "responsive" and not coach.status().session


@hsettings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(1, 900), st.integers(1, 1500)), min_size=1, max_size=6),
    method=st.sampled_from(["graduated", "responsive", "extinction"]),
    tick=st.sampled_from([0.1, 1.0, 7.0, None]),
)
def test_outputs_do_not_depend_on_how_often_time_is_ticked(gaps, method, tick):
    spans, t = [], 0.0
    for quiet, cry in gaps:
        spans.append((t + quiet, t + quiet + cry))
        t += quiet + cry + END_GAP
    until = t + 400.0
    fine = run(coach_for(method), bouts(spans), until=until, tick_s=1.0)
    other = run(coach_for(method), bouts(spans), until=until, tick_s=tick)
    assert other == fine


def test_status_reports_the_next_check_in_time():
    coach = coach_for(night=4)
    run(coach, bout(10.0, 2000.0)[:1], until=300.0)
    status = coach.status()
    assert (status.episode, status.crying, status.next_checkin_t) == (1, True, 10.0 + 720.0)
    assert status.cry_s == 290.0


def test_night_crying_counts_only_session_time_when_switched_off_and_on_mid_bout():
    coach = coach_for(method="extinction")
    items = [*bout(100.0, 700.0), SessionEnd(t=300.0), SessionStart(t=500.0, night=1, date=TODAY)]
    run(coach, items, until=800.0)
    assert coach.status().night_cry_s == (300.0 - 100.0) + (700.0 - 500.0)
    assert coach.status().night_wakings == 1


def test_a_refused_command_does_not_swallow_what_fell_due_before_it():
    young = dataclasses.replace(settings(method="responsive"), birth_date="2024-03-01")
    coach = CheckinCoach(young, TODAY)
    coach.handle(bout(0.0, 5000.0)[0])
    with pytest.raises(Refused):
        coach.handle(SetMethod(t=2000.0, method="extinction"))
    assert times(coach.tick(2000.0), Escalation) == [1800.0]
