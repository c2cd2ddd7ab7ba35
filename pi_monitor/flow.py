"""The one event flow of `pi-monitor run` and `pi-monitor replay`:

    source → pipeline → coach → state → sinks

A block from the source goes through the pipeline; its detector events go to the coach, whose
decisions follow them; every event is folded into the state Home Assistant shows and, stamped
with its wall time (once, here), handed to every sink. Between blocks, parent commands are
applied and the coach and the source's health are ticked. The service runs this flow on the
microphone for months; a replay runs it once per file, as fast as the file can be read.

Flow time is audio time since the flow began: each stream (a file, or the microphone between
two failures) starts its pipeline at 0 and is shifted to the flow time it opened at. While a lost
microphone is awaited the monotonic clock carries flow time on, so the coach and the health
checks keep their timing through an outage.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pi_monitor.checkin import Coach, Refused
from pi_monitor.choices import Choices
from pi_monitor.classifier import CryClassifier
from pi_monitor.clock import Clock, StartClock
from pi_monitor.commands import Command, SetMinBout
from pi_monitor.config import Settings
from pi_monitor.events import CommandRefused, CryEnd, CryOnset, Event
from pi_monitor.health import level_dbfs
from pi_monitor.pipeline import Pipeline
from pi_monitor.recovery import GiveUp, Recovery
from pi_monitor.sinks import Sink
from pi_monitor.source import AudioSource, SourceEnded, SourceError
from pi_monitor.state import MonitorState, coached, heard, with_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowSettings:
    """How a flow runs: `poll_s` is the longest it waits for audio before ticking the coach and
    the health checks; `file` names the file on every line of a replay."""

    poll_s: float = 0.25
    file: str | None = None


@dataclass(frozen=True)
class Edges:
    """Contact with real time, injected so tests need not sleep through it. A replay uses
    `AUDIO_ONLY`: a file is never waited for, so its flow time is its audio time."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


AUDIO_ONLY = Edges(monotonic=lambda: 0.0, sleep=lambda _: None)


class Flow:
    """Run with `step()` until it returns False (the source ended or failed for good), then
    `close()`; `command()` may be called from any thread."""

    def __init__(
        self,
        source: AudioSource,
        classifier: CryClassifier,
        settings: Settings,
        *,
        sinks: Sequence[Sink] = (),
        coach: Coach | None = None,
        choices: Choices | None = None,
        clock: Clock | None = None,
        recovery: Recovery | None = None,
        edges: Edges = AUDIO_ONLY,
        behaviour: FlowSettings = FlowSettings(),
    ) -> None:
        self.source = source
        self.classifier = classifier
        self.settings = settings
        self.sinks = list(sinks)
        self.coach = coach
        self.choices = choices
        self.clock = clock or StartClock(None)
        self.recovery = recovery or GiveUp()
        self.edges = edges
        self.behaviour = behaviour
        self.pipeline: Pipeline | None = None
        self.error: SourceError | None = None
        self.ended = False
        self._commands: queue.Queue[Command] = queue.Queue()
        self._offset = 0.0  # flow time of the current stream's audio time 0
        self._last_t = 0.0  # flow time at the end of the last block
        self._last_mono = edges.monotonic()
        self._next_open = self._last_mono
        self._problem = ""
        self.state = self._initial_state()
        self._sent: MonitorState | None = None

    def _initial_state(self) -> MonitorState:
        """After a restart HA must show what the coach resumed from the night log (the session,
        tonight's crying, the check-in due, the last cry), not the config's defaults."""
        state = MonitorState(
            method=self.settings.checkin.method, min_bout_s=self.settings.detector.min_bout_s
        )
        if self.coach is None:
            return state
        return self._coached(replace(state, last_cry_s=self.coach.status().last_cry_s))

    def _coached(self, state: MonitorState) -> MonitorState:
        assert self.coach is not None
        status = self.coach.status()
        due = status.next_checkin_t
        return coached(state, status, None if due is None else self.clock.iso(due, "seconds"))

    @property
    def now(self) -> float:
        """Flow time: audio time while a stream runs, the monotonic clock while one is awaited."""
        if self.pipeline is not None:
            return self._offset + self.pipeline.time_s
        return self._last_t + max(0.0, self.edges.monotonic() - self._last_mono)

    def command(self, command: Command) -> None:
        """A parent's command (any thread): applied in order at the start of the next step."""
        self._commands.put(command)

    def run(self) -> None:
        """Until the source ends (a file), then close."""
        while self.step():
            pass
        self.close()

    def step(self) -> bool:
        """One turn: the parents' commands, a block (or an attempt to open the source), then
        what time brings. False once the flow has ended."""
        t = self.now
        while not self._commands.empty():
            self._apply(self._commands.get_nowait(), t)
        if self.pipeline is None:
            self._open()
        else:
            self._read()
        self._tick()
        return not self.ended

    def close(self) -> None:
        """End the stream under way (a bout in progress gets its `cry_end`) and send the state."""
        if self.pipeline is not None:
            self._end_stream()
        self.source.close()
        self._send_state()

    # ---- the source ----

    def _open(self) -> None:
        mono = self.edges.monotonic()
        if mono < self._next_open:
            self.edges.sleep(min(self.behaviour.poll_s, self._next_open - mono))
            return
        t = self.now
        try:
            self.source.open()
        except SourceError as e:
            self._retry_in(self.recovery.open_failed(e, t), e)
            return
        self._offset, self._last_t, self._last_mono = t, t, mono
        self.pipeline = Pipeline(self.classifier, self.settings.detector)
        self.recovery.opened(self.source)

    def _read(self) -> None:
        try:
            block = self.source.read(self.behaviour.poll_s)
        except SourceEnded:
            self._end_stream()
            self.ended = True
        except SourceError as e:
            self._end_stream()  # close the bout under way first: a cut-short night keeps its cry
            self._retry_in(self.recovery.lost(e, self._last_t), e)
        else:
            if block is not None:
                self._process(block)

    def _retry_in(self, delay: float | None, error: SourceError) -> None:
        if delay is None:
            self.error, self.ended = error, True
            return
        self._next_open = self.edges.monotonic() + delay

    def _end_stream(self) -> None:
        assert self.pipeline is not None
        self._emit_stream(self.pipeline.finish())
        self.pipeline = None
        self.source.close()

    def _process(self, block: np.ndarray) -> None:
        assert self.pipeline is not None
        t_start = self.now
        events = self.pipeline.process(block)
        t_end = self.now
        first = self.pipeline.samples_seen == len(block)
        self._last_t, self._last_mono = t_end, self.edges.monotonic()
        self.clock.observe(t_end, restart=first)
        level = level_dbfs(block)
        self.state = replace(self.state, level_dbfs=level)
        self._emit_stream(events)
        self._emit(self.recovery.block(t_start, t_end, level))
        if first:
            self.recovery.listening(self.source)

    # ---- commands and time-driven work ----

    def _tick(self) -> None:
        t = self.now
        self._emit(self.recovery.tick(t))
        if self.coach is not None:
            self._emit(self.coach.tick(t))
            self.state = self._coached(self.state)
        self._sync_problem()
        self._send_state()

    def _apply(self, command: Command, t: float) -> None:
        """A parent's command at flow time `t`: the detector's confirmation time, or the coach's."""
        command = replace(command, t=t)
        if isinstance(command, SetMinBout):
            self._choose(command)
            if self.pipeline is not None:
                self.pipeline.set_detector(self.settings.detector)
            log.info("command: min_bout_s %.2f s", command.seconds)
            self.state = replace(self.state, min_bout_s=self.settings.detector.min_bout_s)
            return
        if self.coach is None:
            log.warning("command %s ignored: no check-in coach in this flow", command.type)
            return
        try:
            out = self.coach.handle(command)
        except Refused as e:
            log.warning("command refused: %s", e)
            self._emit([CommandRefused(t=t, command=command.type, detail=str(e))])
            return
        log.info("command %s", json.dumps(command.to_dict(), default=str, separators=(",", ":")))
        self._choose(command)
        self._emit(out)
        self.state = self._coached(self.state)

    def _choose(self, command: Command) -> None:
        """A choice made in HA becomes the effective setting (kept, when the flow keeps them)."""
        if self.choices is not None:
            self.settings = self.choices.choose(command)
        elif isinstance(command, SetMinBout):
            detector = replace(self.settings.detector, min_bout_s=command.seconds)
            self.settings = replace(self.settings, detector=detector)

    # ---- events out ----

    def _emit_stream(self, events: list[Event]) -> None:
        """Pipeline events: the stream's audio time moved to flow time."""
        self._emit([e.shifted(self._offset) for e in events] if self._offset else events)

    def _emit(self, events: Iterable[Event]) -> None:
        """Stamp `wall`, fold into the state, hand to the sinks; the coach hears detector events
        and its decisions follow them."""
        for event in events:
            extra: dict[str, str] = {}
            if self.behaviour.file is not None:
                extra["file"] = self.behaviour.file
            wall = self.clock.iso(event.t)
            if wall is not None:
                extra["wall"] = wall
            line = event.to_dict(**extra)
            self.state = heard(self.state, event)
            for sink in self.sinks:
                sink.event(line)
            if self.coach is not None and isinstance(event, CryOnset | CryEnd):
                self._emit(self.coach.handle(event))

    def _sync_problem(self) -> None:
        detail = self.recovery.problem()
        if detail != self._problem:
            if not detail:
                log.warning("problem cleared: %s", self._problem)
            self._problem = detail
            self.state = with_problem(self.state, bool(detail), detail)

    def _send_state(self) -> None:
        if self.state != self._sent:
            self._sent = self.state
            for sink in self.sinks:
                sink.state(self.state)
