"""Scripted nights for the check-in tests: cry bouts as detector events, fed with ticks."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from pi_monitor.checkin import CheckinCoach, Input, known_at
from pi_monitor.config import CheckinSettings
from pi_monitor.events import CryEnd, CryOnset, Event

ONSET_DELAY_S = 0.6
END_DELAY_S = 3.0
TODAY = datetime.date(2024, 6, 1)
BORN_8_MONTHS = "2023-10-01"


def settings(**kw: object) -> CheckinSettings:
    kw.setdefault("birth_date", BORN_8_MONTHS)
    return CheckinSettings(**kw)  # type: ignore[arg-type]


def bout(onset: float, end: float) -> list[Input]:
    """One detector bout: the onset decided a little after it began, the end after the gap."""
    return [
        CryOnset(t=onset, emitted_t=onset + ONSET_DELAY_S, score=0.9),
        CryEnd(
            t=end,
            onset_t=onset,
            duration_s=end - onset,
            emitted_t=end + END_DELAY_S,
            peak_score=0.95,
            mean_score=0.8,
        ),
    ]


def bouts(spans: Iterable[tuple[float, float]]) -> list[Input]:
    return [item for onset, end in spans for item in bout(onset, end)]


def run(
    coach: CheckinCoach, items: Sequence[Input], until: float, tick_s: float | None = 1.0
) -> list[Event]:
    """Feed `items` in the order they became known, ticking every `tick_s` (None: never)."""
    out: list[Event] = []
    pending = sorted(items, key=known_at)
    steps = 0 if tick_s is None else int(until / tick_s) + 1
    for i in range(steps):
        t = i * tick_s
        while pending and known_at(pending[0]) <= t:
            out += coach.handle(pending.pop(0))
        out += coach.tick(t)
    for item in pending:
        out += coach.handle(item)
    return out + coach.tick(until)


def of_type(events: Iterable[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]
