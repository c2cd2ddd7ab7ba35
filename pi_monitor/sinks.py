"""Where the flow's output goes: every event line and every new state, to each sink in turn.

A sink takes the events it wants and ignores the rest: JSON Lines (replay's output), the log
(the service's journal), and MQTT for Home Assistant (`mqtt.MqttPublisher`) are all sinks.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol, TextIO

from pi_monitor.events import EVENT_TYPES, Escalation
from pi_monitor.state import MonitorState

log = logging.getLogger(__name__)


class Sink(Protocol):
    def event(self, line: dict[str, Any]) -> None:
        """One event in its wire form (`type` first; `wall`, `file` where known)."""

    def state(self, state: MonitorState) -> None:
        """What Home Assistant should show now (sent after every change)."""


class JsonlSink:
    """One JSON object per line: the contract's events, and window scores when asked for."""

    def __init__(self, out: TextIO, scores: bool = False) -> None:
        self.out = out
        self.types = {*EVENT_TYPES, "score"} if scores else set(EVENT_TYPES)

    def event(self, line: dict[str, Any]) -> None:
        if line["type"] in self.types:
            self.out.write(json.dumps(line, separators=(",", ":")) + "\n")

    def state(self, state: MonitorState) -> None:
        """JSON Lines carry events only."""


class LogSink:
    """One log line per event (escalations as warnings); systemd's journal keeps them."""

    def event(self, line: dict[str, Any]) -> None:
        if line["type"] in EVENT_TYPES:
            level = logging.WARNING if line["type"] == Escalation.type else logging.INFO
            log.log(level, "event %s", json.dumps(line, separators=(",", ":")))

    def state(self, state: MonitorState) -> None:
        """The log records events, not states."""
