"""Commands from Home Assistant, parsed strictly (pure, no I/O).

Anything that is not exactly an allowed value is rejected with a `CommandError` saying why, so the
publisher can log it and carry on; a bad payload never reaches the service and never changes state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pi_monitor.config import MIN_BOUT_MAX_S
from pi_monitor.methods import METHODS as CHECKIN_METHODS

MAX_PAYLOAD_BYTES = 64


class CommandError(ValueError):
    """A command payload or topic that is not allowed; the message says what was expected."""


@dataclass(frozen=True)
class SetMethod:
    """Switch the sleep-training method (select entity)."""

    method: str


@dataclass(frozen=True)
class SetSession:
    """Start (True) or end (False) tonight's sleep session (switch entity)."""

    on: bool


@dataclass(frozen=True)
class CheckedIn:
    """A parent went in (button entity)."""


@dataclass(frozen=True)
class SetMinBout:
    """How long crying must last before it is reported (number entity, `detector.min_bout_s`)."""

    seconds: float


Command = SetMethod | SetSession | CheckedIn | SetMinBout
COMMAND_NAMES = ("method", "session", "checked_in", "min_bout_s")


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
        if text not in CHECKIN_METHODS:
            raise CommandError(f"set/method: {text!r} is not one of {', '.join(CHECKIN_METHODS)}")
        return SetMethod(text)
    if name == "session":
        if text not in ("ON", "OFF"):
            raise CommandError(f"set/session: {text!r} is not ON or OFF")
        return SetSession(text == "ON")
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
    return value
