"""The sleep-training methods and the safety rules no setting can lift.

`age_gate` refuses the extinction methods (crying it out, with or without timed check-ins) for a
baby under 4 months and warns until 6, from the birth date; `MAX_CRYING_CAP_S` is the highest the
crying cap may be set. The config loader, the check-in coach and the choices a parent makes in
Home Assistant all apply these same rules.
"""

from __future__ import annotations

import calendar
import datetime

METHODS = ("extinction", "graduated", "responsive", "fading")
EXTINCTION_METHODS = ("extinction", "graduated")
MAX_CRYING_CAP_S = 3600.0
REFUSED_UNDER_MONTHS = 4
WARNED_UNDER_MONTHS = 6


class AgeGateError(ValueError):
    """An extinction method refused for this baby; the message names the key and the way out."""


def age_gate(method: str, birth_date: str, today: datetime.date) -> list[str]:
    """Refuse (AgeGateError) an extinction method under 4 months; returns warnings until 6."""
    if method not in EXTINCTION_METHODS:
        return []
    if not birth_date:
        raise AgeGateError(
            f"'checkin.birth_date' is required for method '{method}' (the age gate needs it); "
            "set it as YYYY-MM-DD or choose responsive or fading"
        )
    try:
        birth = datetime.date.fromisoformat(birth_date)
    except ValueError:
        raise AgeGateError(
            f"'checkin.birth_date' = {birth_date!r} is not a date; write it as YYYY-MM-DD"
        ) from None
    if birth > today:
        raise AgeGateError(f"'checkin.birth_date' = {birth_date} is after today ({today})")
    allowed_from = add_months(birth, REFUSED_UNDER_MONTHS)
    if today < allowed_from:
        raise AgeGateError(
            f"'checkin.method' = '{method}' is refused for a baby under {REFUSED_UNDER_MONTHS} "
            f"months (born {birth}); use responsive or fading until {allowed_from}"
        )
    if today < add_months(birth, WARNED_UNDER_MONTHS):
        return [
            f"'checkin.method' = '{method}' for a baby under {WARNED_UNDER_MONTHS} months "
            f"(born {birth}): check with your health visitor or paediatrician first"
        ]
    return []


def add_months(d: datetime.date, months: int) -> datetime.date:
    """The same day `months` later, clamped to the month's end (31 Oct + 4 -> 28/29 Feb)."""
    year, month0 = divmod(d.month - 1 + months, 12)
    year += d.year
    days = calendar.monthrange(year, month0 + 1)[1]
    return datetime.date(year, month0 + 1, min(d.day, days))
