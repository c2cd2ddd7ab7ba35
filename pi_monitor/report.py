"""`pi-monitor report`: is the method working? A table per night and an optional plot.

Reads the night log only. matplotlib is an optional extra (`pi-monitor[report]`), imported only
when a plot is asked for, so the service never needs it.
"""

from __future__ import annotations

import os
import pwd
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pi_monitor.checkin import QUICK_ANSWER_S
from pi_monitor.nightlog import NightLog
from pi_monitor.store import FILENAME, Store, StoreError

MAX_NIGHTS = 36_500  # a hundred years; more is a typo (and overflows SQLite's integers)


class ReportError(RuntimeError):
    """The report cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class NightReport:
    """One night's figures as parents read them: minutes, counts, medians."""

    label: str
    night: int
    method: str
    fading_step: str
    wakings: int
    cry_min: float
    checkins: int
    settle_median_min: float | None
    settle_longest_min: float | None
    response_median_s: float | None
    quick_answers: int
    answers: int
    escalations: int


def night_reports(log: NightLog, last: int | None = None) -> list[NightReport]:
    """The last `last` nights (all when None), oldest first."""
    reports = []
    for n in log.nights(last):
        settle = [s / 60.0 for s in log.settle_times(n.id)]
        responses = log.response_times(n.id)
        reports.append(
            NightReport(
                label=n.evening.strftime("%a %d %b"),
                night=n.night,
                method=n.method,
                fading_step=n.fading_step,
                wakings=n.wakings,
                cry_min=n.cry_s / 60.0,
                checkins=n.checkins,
                settle_median_min=statistics.median(settle) if settle else None,
                settle_longest_min=max(settle) if settle else None,
                response_median_s=statistics.median(responses) if responses else None,
                quick_answers=sum(r <= QUICK_ANSWER_S for r in responses),
                answers=len(responses),
                escalations=log.escalation_count(n.id),
            )
        )
    return reports


COLUMNS = (
    ("evening", 10),
    ("night", 5),
    ("method", 10),
    ("wakings", 7),
    ("crying min", 10),
    ("check-ins", 9),
    ("settle min (median/longest)", 27),
    ("answer s (median)", 17),
    (f"answered <={QUICK_ANSWER_S:.0f}s", 14),
    ("escalations", 11),
)


def format_table(reports: list[NightReport]) -> str:
    """A plain-text table, one row per night; '-' where a night has nothing to show."""
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS).rstrip()]
    for r in reports:
        settle = (
            f"{r.settle_median_min:.1f} / {r.settle_longest_min:.1f}"
            if r.settle_median_min is not None and r.settle_longest_min is not None
            else "-"
        )
        cells = (
            r.label,
            str(r.night),
            r.method,
            str(r.wakings),
            f"{r.cry_min:.1f}",
            str(r.checkins),
            settle,
            "-" if r.response_median_s is None else f"{r.response_median_s:.0f}",
            f"{r.quick_answers}/{r.answers}" if r.answers else "-",
            str(r.escalations),
        )
        lines.append(
            "  ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()
        )
    steps = [f"  {r.label}: {r.fading_step}" for r in reports if r.fading_step]
    if steps:
        lines += ["", "fading steps:", *steps]
    return "\n".join(lines)


def plot_reports(reports: list[NightReport], path: str | Path) -> Path:
    """Three stacked panels (crying minutes, wakings, time to settle), large enough to read."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError(
            "--plot needs matplotlib, which is not installed; "
            "install the report extra: pip install 'pi-monitor[report]'"
        ) from None
    path = Path(path)
    x = list(range(len(reports)))
    labels = [f"Night {r.night}\n{r.label}" for r in reports]
    settle = [
        r.settle_median_min if r.settle_median_min is not None else float("nan") for r in reports
    ]
    plt.rcParams.update({"font.size": 13})
    fig, (ax_cry, ax_wake, ax_settle) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    methods = sorted({r.method for r in reports})
    fig.suptitle(f"Sleep training progress ({', '.join(methods)}): lower is better", fontsize=16)
    cap_notes = [f"\ncap reached x{r.escalations}" if r.escalations else "" for r in reports]
    panels = (
        (ax_cry, [r.cry_min for r in reports], cap_notes, "Crying (minutes)", "#d9534f"),
        (ax_wake, [float(r.wakings) for r in reports], [""] * len(x), "Wakings", "#5b7db1"),
    )
    for ax, values, notes, title, colour in panels:
        bars = ax.bar(x, values, color=colour, width=0.6)
        texts = [f"{v:.0f}{note}" for v, note in zip(values, notes, strict=True)]
        ax.bar_label(bars, labels=texts, padding=3)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_ylim(0, max([*values, 1.0]) * 1.35)
    ax_settle.plot(x, settle, marker="o", markersize=9, linewidth=2.5, color="#2e8b57")
    for xi, value in zip(x, settle, strict=True):
        if value == value:
            ax_settle.annotate(
                f"{value:.0f}",
                (xi, value),
                textcoords="offset points",
                xytext=(0, 10),
                ha="center",
            )
    ax_settle.set_title(
        "Time to settle, median per waking (minutes)", loc="left", fontweight="bold"
    )
    finite = [v for v in settle if v == v]
    ax_settle.set_ylim(0, max([*finite, 1.0]) * 1.3)
    ax_settle.set_xticks(x, labels)
    for ax in (ax_cry, ax_wake, ax_settle):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise ReportError(f"{path}: cannot write the plot ({e.strerror})") from None
    finally:
        plt.close(fig)
    return path


def run_report(
    state_dir: str | Path, nights: int | None, plot: str | Path | None, out: TextIO
) -> None:
    """What `pi-monitor report` does; ReportError for anything the user must fix."""
    path = Path(state_dir) / FILENAME
    if nights is not None and not 1 <= nights <= MAX_NIGHTS:
        raise ReportError(f"--nights {nights}: give 1 to {MAX_NIGHTS}")
    try:
        found = path.is_file()
    except PermissionError:
        raise ReportError(_not_yours(path)) from None
    if not found:
        raise ReportError(
            f"{path}: no night log here; the service writes it during sleep sessions "
            "(give the service's state directory with --state-dir)"
        )
    try:
        log = NightLog(Store(path))
    except StoreError as e:
        usable = os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK)
        raise ReportError(str(e) if usable else _not_yours(path)) from None
    try:
        reports = night_reports(log, nights)
    finally:
        log.close()
    if not reports:
        out.write(f"{path}: no nights logged yet\n")
        return
    out.write(format_table(reports) + "\n")
    if plot:
        out.write(f"plot: {plot_reports(reports, plot)}\n")


def _not_yours(path: Path) -> str:
    """The state directory is the service's (mode 0750): say whose, and what to run instead."""
    try:
        owner = pwd.getpwuid(path.parent.stat().st_uid).pw_name
    except (OSError, KeyError):
        owner = "pi-monitor"
    program = sys.argv[0] if Path(sys.argv[0]).name == "pi-monitor" else "pi-monitor"
    return (
        f"{path}: permission denied: the night log belongs to the service's user '{owner}'; "
        f"run the report as that user: sudo -u {owner} {program} report (with your options)"
    )
