"""A sink for tests: keeps the contract's event lines (and window scores when asked) and states."""

from __future__ import annotations

from typing import Any

from pi_monitor.events import EVENT_TYPES
from pi_monitor.state import MonitorState


class Recorder:
    def __init__(self, scores: bool = False) -> None:
        self.lines: list[dict[str, Any]] = []
        self.states: list[MonitorState] = []
        self.scores = scores

    def event(self, line: dict[str, Any]) -> None:
        if line["type"] in EVENT_TYPES or (self.scores and line["type"] == "score"):
            self.lines.append(line)

    def state(self, state: MonitorState) -> None:
        self.states.append(state)
