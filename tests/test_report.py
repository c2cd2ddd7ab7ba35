"""`pi-monitor report`: a generated week of nights into a night log, its table and plot."""

from __future__ import annotations

import datetime
import io
import os
import pwd
import shutil
import struct
import sys
from pathlib import Path

import pytest
from checkin_script import bout, settings
from cli_run import run_cli

from pi_monitor.checkin import known_at
from pi_monitor.cli import main
from pi_monitor.commands import CheckedIn, SessionEnd, SessionStart
from pi_monitor.events import CheckinDue, Escalation
from pi_monitor.journal import JournaledCoach
from pi_monitor.nightlog import NightLog
from pi_monitor.report import ReportError, format_table, night_reports, run_report
from pi_monitor.store import FILENAME

REPO = Path(__file__).resolve().parent.parent
WEEK_PLOT = REPO / "out" / "checkin-report-week.png"
FIRST_EVENING = datetime.datetime(
    2024, 6, 3, 19, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
)
NIGHT_S = 11 * 3600.0
TICK_S = 5.0
# (hours after 19:30 the waking starts, minutes of crying per bout, pause minutes between bouts)
WEEK = [
    [(1.5, [35], 0), (5.0, [12, 8], 2), (7.5, [12], 0)],
    [(2.0, [25], 0), (6.0, [10], 0)],
    [(2.0, [10, 8], 3), (6.5, [6], 0)],
    [(2.5, [12], 0), (7.0, [4], 0)],
    [(3.0, [9], 0)],
    [(3.0, [6], 0)],
    [(4.0, [3], 0)],
]
ANSWER_S = [25.0, 20.0, 15.0, 12.0, 10.0, 8.0, 6.0]


def night_bouts(wakings) -> list:
    items = []
    for hours, cries, pause in wakings:
        t = hours * 3600.0
        for minutes in cries:
            items += bout(t, t + minutes * 60.0)
            t += (minutes + pause) * 60.0
    return items


def simulate_night(log: NightLog, day: int) -> list:
    """One session from 19:30 to 06:30; the parent answers each check-in after ANSWER_S."""
    coach = JournaledCoach.open(
        settings(method="graduated"), log, FIRST_EVENING + datetime.timedelta(days=day)
    )
    out = coach.handle(SessionStart(t=0.0))
    pending = sorted(night_bouts(WEEK[day]), key=known_at)
    t = 0.0
    while t <= NIGHT_S:
        while pending and known_at(pending[0]) <= t:
            out += coach.handle(pending.pop(0))
        fresh = coach.tick(t)
        for due in fresh:
            if isinstance(due, CheckinDue):
                pending.append(CheckedIn(t=due.t + ANSWER_S[day]))
        pending.sort(key=known_at)
        out += fresh
        t += TICK_S
    out += coach.handle(SessionEnd(t=NIGHT_S))
    return out


@pytest.fixture(scope="module")
def week_log(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("state")
    log = NightLog.in_state_dir(state)
    outputs = [simulate_night(log, day) for day in range(len(WEEK))]
    log.close()
    assert [sum(isinstance(e, Escalation) for e in out) for out in outputs][:2] == [1, 0]
    return state


def test_the_week_table_shows_each_nights_wakings_crying_and_settling(week_log):
    log = NightLog.in_state_dir(week_log)
    reports = night_reports(log)
    assert [r.night for r in reports] == list(range(1, 8))
    assert [r.wakings for r in reports] == [len(w) for w in WEEK]
    assert [round(r.cry_min, 3) for r in reports] == [
        sum(sum(cries) for _, cries, _ in w) for w in WEEK
    ]
    assert reports[0].escalations == 1 and sum(r.escalations for r in reports[1:]) == 0
    assert reports[0].settle_longest_min == 35.0
    assert reports[2].settle_median_min == pytest.approx((21.0 + 6.0) / 2)
    assert reports[0].response_median_s == 25.0 and reports[6].answers == 0
    assert reports[5].quick_answers == reports[5].answers == 0
    assert reports[4].quick_answers == reports[4].answers == 0
    assert reports[3].answers == 1 and reports[3].quick_answers == 0
    text = format_table(reports)
    print(text)
    assert len(text.splitlines()) == 1 + 7
    assert reports[0].label == "Mon 03 Jun"


def test_the_report_writes_a_readable_week_plot(week_log):
    """The PNG for the closing note; look at it, it is for a tired parent at 3 am."""
    out = io.StringIO()
    run_report(week_log, nights=None, plot=str(WEEK_PLOT), out=out)
    print(out.getvalue())
    print(f"week plot: {WEEK_PLOT}")
    header = WEEK_PLOT.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width >= 1000 and height >= 1000
    assert f"plot: {WEEK_PLOT}" in out.getvalue()


def test_the_report_keeps_the_last_n_nights(week_log):
    out = io.StringIO()
    run_report(week_log, nights=3, plot=None, out=out)
    rows = out.getvalue().splitlines()[1:]
    assert [row.split()[3] for row in rows] == ["5", "6", "7"]


def test_a_plot_without_matplotlib_says_how_to_install_it(week_log, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ReportError, match=r"pi-monitor\[report\]"):
        run_report(week_log, nights=None, plot=str(tmp_path / "p.png"), out=io.StringIO())


def test_a_missing_night_log_names_the_state_dir(tmp_path):
    with pytest.raises(ReportError, match="--state-dir"):
        run_report(tmp_path, nights=None, plot=None, out=io.StringIO())


def test_the_report_command_prints_the_table_and_writes_the_plot(week_log, tmp_path, capsys):
    plot = tmp_path / "last2.png"
    code = main(["report", "--state-dir", str(week_log), "--nights", "2", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0 and plot.stat().st_size > 10_000
    assert len(out.splitlines()) == 1 + 2 + 1 and f"plot: {plot}" in out


def test_the_report_command_fails_with_one_line_without_a_night_log(tmp_path, capsys):
    assert main(["report", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pi-monitor: error:")


@pytest.mark.parametrize("nights", ["0", str(10**20)])
def test_a_night_count_out_of_range_is_one_line(week_log, capsys, nights: str):
    assert main(["report", "--state-dir", str(week_log), "--nights", nights]) == 2
    err = capsys.readouterr().err
    assert err == f"pi-monitor: error: --nights {nights}: give 1 to 36500\n"


def test_the_services_own_state_directory_says_whom_to_run_the_report_as(week_log, tmp_path):
    """StateDirectoryMode=0750: a parent's own account cannot read the service's night log."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(week_log / FILENAME, state / FILENAME)
    if os.geteuid() == 0:
        os.chown(state, 65534, 65534)  # as systemd makes it: owned by the service's user
        state.chmod(0o750)
    else:
        state.chmod(0)  # the same refusal for a user who cannot become another
    try:
        result = run_cli("report", "--state-dir", str(state), unprivileged=True)
    finally:
        state.chmod(0o750)
    owner = pwd.getpwuid(state.stat().st_uid).pw_name
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"pi-monitor: error: {state / FILENAME}: permission denied: the night log belongs to the "
        f"service's user '{owner}'; run the report as that user: sudo -u {owner} pi-monitor "
        "report (with your options)"
    ]
