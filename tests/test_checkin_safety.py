"""Safety rules no config value can switch off: the age gate and the crying cap (hypothesis)."""

from __future__ import annotations

import calendar
import datetime
import math

import pytest
from checkin_script import END_DELAY_S, TODAY, bouts, of_type, run
from hypothesis import assume, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pi_monitor.checkin import CheckinCoach, Refused
from pi_monitor.commands import SessionStart, SetMethod
from pi_monitor.config import CheckinSettings, ConfigError, settings_from_dict
from pi_monitor.events import Escalation
from pi_monitor.methods import METHODS, AgeGateError, age_gate

ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**9), 10**9),
    st.booleans(),
    st.text(max_size=12),
    st.none(),
    st.lists(st.floats(-100, 100), max_size=3),
)
DATES = st.dates(datetime.date(2015, 1, 1), datetime.date(2035, 12, 31))


def near(lo: float, hi: float) -> st.SearchStrategy[object]:
    """Mostly values around the allowed range, sometimes anything at all."""
    return st.one_of(st.floats(lo, hi), st.integers(int(lo), int(hi)), ANY_VALUE)


def full_months(born: datetime.date, day: datetime.date) -> int:
    """Completed months of age; a month ending on a shorter month's last day counts as full."""
    months = (day.year - born.year) * 12 + day.month - born.month
    last_day = calendar.monthrange(day.year, day.month)[1]
    if day.day < born.day and day.day != last_day:
        months -= 1
    return months


def checkin_table(draw: st.DrawFn) -> dict[str, object]:
    table: dict[str, object] = {}
    for key, values in {
        "method": st.sampled_from(METHODS),
        "birth_date": st.one_of(DATES.map(str), DATES.map(str), st.text(max_size=12)),
        "settle_s": near(0, 4000),
        "max_crying_s": near(0, 5000),
        "responsive_step_s": near(0, 2000),
        "graduated_minutes": st.one_of(
            ANY_VALUE,
            st.lists(
                st.lists(st.one_of(st.floats(-1, 70), st.just(math.nan)), max_size=3), max_size=3
            ),
        ),
    }.items():
        if key in ("method", "birth_date") or draw(st.integers(0, 4)) == 0:
            table[key] = draw(values)
    return table


def gate_expected(table: dict[str, object], today: datetime.date) -> str:
    """refused / warned / ok for an extinction method, computed without the code under test."""
    try:
        born = datetime.date.fromisoformat(str(table.get("birth_date", "")))
    except ValueError:
        return "refused"
    if born > today or full_months(born, today) < 4:
        return "refused"
    return "warned" if full_months(born, today) < 6 else "ok"


@hsettings(max_examples=600, deadline=None)
@given(table=st.composite(checkin_table)(), today=DATES, age_days=st.integers(-30, 400))
def test_no_config_passes_the_age_gate_for_an_extinction_method_under_4_months(
    table, today, age_days
):
    """Birth dates mostly near the 4 and 6 month boundaries, sometimes anything at all."""
    if age_days % 7:
        table["birth_date"] = (today - datetime.timedelta(days=age_days)).isoformat()
    try:
        settings = settings_from_dict({"checkin": table}).checkin
        warnings = age_gate(settings.method, settings.birth_date, today)
        coach = CheckinCoach(settings, today)
    except (ConfigError, AgeGateError) as e:
        assert "checkin." in str(e)
        event("refused")
        return
    event(f"accepted {settings.method}")
    if settings.method in ("extinction", "graduated"):
        expected = gate_expected(table, today)
        assert expected != "refused"
        assert bool(warnings) == (expected == "warned")
        assert coach.warnings == warnings


@hsettings(max_examples=300, deadline=None)
@given(born=DATES, day=DATES, method=st.sampled_from(["extinction", "graduated"]))
def test_no_session_or_method_change_gets_past_the_age_gate(born, day, method):
    settings = CheckinSettings(method="responsive", birth_date=born.isoformat())
    coach = CheckinCoach(settings, day)
    expected = gate_expected({"birth_date": born.isoformat()}, day)
    for command in (
        SetMethod(t=0.0, method=method),
        SessionStart(t=0.0, night=1, date=day, method=method),
    ):
        if expected == "refused":
            with pytest.raises(Refused):
                coach.handle(command)
        else:
            coach.handle(command)
    assert (coach.status().method == method) == (expected != "refused")


@hsettings(max_examples=300, deadline=None)
@given(
    cap=near(0, 5000),
    settle=near(0, 4000),
    method=st.sampled_from(METHODS),
    pattern=st.lists(
        st.tuples(st.floats(1.0, 290.0), st.floats(1.0, 2400.0)), min_size=1, max_size=8
    ),
)
def test_no_config_stops_the_cap_escalating_by_60_min_of_crying_without_settling(
    cap, settle, method, pattern
):
    """Bouts split by pauses under 5 min (whatever settle_s says): escalation comes exactly when
    the crying reaches the cap, which is never above 60 min."""
    table = {"method": method, "birth_date": "2020-01-01", "max_crying_s": cap, "settle_s": settle}
    try:
        settings = settings_from_dict({"checkin": table}).checkin
    except ConfigError:
        event("refused")
        return
    event("accepted")
    assert 0 < settings.max_crying_s <= 3600.0
    spans, t = [], 10.0
    for pause, cry in pattern:
        spans.append((t, t + cry))
        t += cry + 3.0 + pause
    limit = settings.max_crying_s
    crossing, total = None, 0.0
    for onset, end in spans:
        if total + (end - onset) >= limit:
            crossing = onset + limit - total
            break
        total += end - onset
    assume(crossing is not None)
    coach = CheckinCoach(settings, TODAY)
    coach.handle(SessionStart(t=0.0, night=1, date=TODAY))
    out = run(coach, bouts(spans), until=t + 10.0, tick_s=None)
    first = of_type(out, Escalation)[0]
    # Until the detector decides a bout ended (END_DELAY_S later) the coach counts it as crying,
    # so the cap may be raised with up to END_DELAY_S less crying heard, never later.
    cried = sum(max(0.0, min(end, first.t) - onset) for onset, end in spans)
    assert first.t <= crossing + 1e-6
    assert cried >= limit - END_DELAY_S - 1e-6


@hsettings(max_examples=300, deadline=None)
@given(cap=st.floats(allow_nan=True, allow_infinity=True), settle=st.floats(allow_nan=True))
def test_hand_built_settings_cannot_bypass_the_cap_either(cap, settle):
    """The coach checks its settings itself, so skipping the config loader changes nothing."""
    settings = CheckinSettings(
        method="extinction", birth_date="2020-01-01", max_crying_s=cap, settle_s=settle
    )
    try:
        coach = CheckinCoach(settings, TODAY)
    except ConfigError:
        return
    out = run(coach, bouts([(0.0, 4000.0)]), until=4100.0, tick_s=None)
    assert 0 < of_type(out, Escalation)[0].t <= 3600.0


def test_the_cap_above_60_min_is_refused_at_load_naming_the_key():
    with pytest.raises(ConfigError, match=r"checkin\.max_crying_s"):
        settings_from_dict({"checkin": {"max_crying_s": 3601.0}})
    with pytest.raises(ConfigError, match=r"checkin\.max_crying_s"):
        settings_from_dict({"checkin": {"max_crying_s": math.nan}})


def test_extinction_methods_need_a_birth_date():
    with pytest.raises(AgeGateError, match=r"checkin\.birth_date' is required"):
        CheckinCoach(CheckinSettings(method="graduated"), TODAY)


def test_the_gate_opens_at_exactly_4_months_and_warns_until_6():
    def gate(day: datetime.date) -> list[str]:
        return age_gate("graduated", "2023-10-31", day)

    with pytest.raises(AgeGateError, match="under 4 months"):
        gate(datetime.date(2024, 2, 28))
    assert gate(datetime.date(2024, 2, 29))
    assert gate(datetime.date(2024, 4, 29))
    assert gate(datetime.date(2024, 4, 30)) == []
