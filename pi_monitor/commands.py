"""A parent's commands (from Home Assistant), one definition each, and their strict parser (pure).

Each command is an event in audio time like every other input of the flow: the parser cannot
know when it will be applied, so it leaves `t` at 0 and the flow stamps its own time on it when
the command's turn comes. Anything that is not exactly an allowed value is rejected with a
`CommandError` saying why, so the publisher can log it and carry on; a bad payload never reaches
the flow and never changes state.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import ClassVar

from pi_monitor.config import MIN_BOUT_MAX_S, MIN_BOUT_STEP_S
from pi_monitor.events import Event
from pi_monitor.methods import METHODS

MAX_PAYLOAD_BYTES = 64


class CommandError(ValueError):
    """A command payload or topic that is not allowed; the message says what was expected."""


@dataclass(frozen=True)
class SetMethod(Event):
    """The parents chose another method (select entity); it applies from the next check-in."""

    type: ClassVar[str] = "set_method"
    method: str
    t: float = 0.0


@dataclass(frozen=True)
class SessionStart(Event):
    """Tonight's sleep session begins (switch on). What the parent does not say the coach fills
    in: the plan's `night` (the row of the timing table), the evening's `date`, the method."""

    type: ClassVar[str] = "session_start"
    night: int | None = None
    date: datetime.date | None = None
    method: str | None = None
    fading_step: str | None = None
    t: float = 0.0


@dataclass(frozen=True)
class SessionEnd(Event):
    """The session is switched off: no more check-ins; the safety cap stays on."""

    type: ClassVar[str] = "session_end"
    t: float = 0.0


@dataclass(frozen=True)
class CheckedIn(Event):
    """A parent went in (button entity)."""

    type: ClassVar[str] = "checked_in"
    t: float = 0.0


@dataclass(frozen=True)
class SetMinBout(Event):
    """How long crying must last before it is reported (number entity, `detector.min_bout_s`)."""

    type: ClassVar[str] = "set_min_bout"
    seconds: float
    t: float = 0.0


Command = SetMethod | SessionStart | SessionEnd | CheckedIn | SetMinBout
COMMAND_NAMES = ("method", "session", "checked_in", "min_bout_s")  # topics under `<base>/set/`


def parse_command(name: str, payload: bytes) -> Command:
    """`name` is the last topic level under `<base>/set/`; raises CommandError if not allowed."""
    if name not in COMMAND_NAMES:
        raise CommandError(f"unknown command topic 'set/{name[:40]}'; known: {COMMAND_NAMES}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"set/{name}: payload of {len(payload)} bytes is too long")
    try:
        text = payload.decode("utf-8").strip(" \t\r\n")
    except UnicodeDecodeError:
        raise CommandError(f"set/{name}: payload is not valid UTF-8") from None
    if name == "method":
        if text not in METHODS:
            raise CommandError(f"set/method: {text!r} is not one of {', '.join(METHODS)}")
        return SetMethod(text)
    if name == "session":
        if text not in ("ON", "OFF"):
            raise CommandError(f"set/session: {text!r} is not ON or OFF")
        return SessionStart() if text == "ON" else SessionEnd()
    if name == "min_bout_s":
        return SetMinBout(_seconds(text))
    if text != "PRESS":
        raise CommandError(f"set/checked_in: {text!r} is not PRESS")
    return CheckedIn()


def _seconds(text: str) -> float:
    """A number of seconds in the range the config file allows for `detector.min_bout_s`."""
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"set/min_bout_s: {text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0.0 <= value <= MIN_BOUT_MAX_S):
        raise CommandError(f"set/min_bout_s: {text} is out of range; allowed 0 to {MIN_BOUT_MAX_S}")
    steps = value / MIN_BOUT_STEP_S
    if abs(steps - round(steps)) > 1e-9:
        raise CommandError(f"set/min_bout_s: {text} is not a multiple of {MIN_BOUT_STEP_S} s")
    return round(steps) * MIN_BOUT_STEP_S
