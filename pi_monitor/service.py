"""`pi-monitor run`: microphone → pipeline → coach → MQTT and logs, for months unattended.

One loop does everything in order (read a block, decide, tick the coach and the health checks,
ping the watchdog), so a stalled loop stops the watchdog and systemd restarts the service. Below
the loop all times are service seconds: audio time while the microphone delivers, carried on by
the monotonic clock while it is lost; wall-clock time is added once, here, as `wall`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pi_monitor import commands
from pi_monitor.backoff import Backoff
from pi_monitor.capture import CaptureError, MicSource, SoundDeviceBackend
from pi_monitor.checkin import CommandRefused
from pi_monitor.choices import Choices
from pi_monitor.classifier import CryClassifier
from pi_monitor.config import ConfigError, Settings
from pi_monitor.events import CryEnd, CryOnset, Event, Reason, Score
from pi_monitor.health import MicHealth, level_dbfs
from pi_monitor.journal import JournaledCoach
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.nightlog import NightLog
from pi_monitor.notify import Notifier, WatchdogPacer
from pi_monitor.pipeline import Pipeline
from pi_monitor.replay import EventSink
from pi_monitor.state import apply_command, apply_event, resumed, with_problem
from pi_monitor.store import Store, StoreError

log = logging.getLogger(__name__)

POLL_S = 0.25  # longest the loop waits for audio before ticking the coach, health and watchdog
RETRY_MIN_S = 0.5
STATS_LOG_INTERVAL_S = 60.0


class WallClock:
    """Service time → Unix time, tracked from block arrivals.

    A block arrives a little after it was captured, so the smallest `wall - t` seen is the best
    estimate; it may creep up (audio clock slower than the system's) by `slew` s/s, and a jump
    of more than `step_s` (NTP setting the clock of a Pi without RTC) is taken at once.
    """

    def __init__(self, slew: float = 1e-3, step_s: float = 2.0) -> None:
        self.slew, self.step_s = slew, step_s
        self._offset: float | None = None
        self._t = 0.0

    def observe(self, t: float, wall: float, restart: bool = False) -> None:
        """A block ending at service time `t` arrived at `wall`; `restart`: a new stream."""
        seen = wall - t
        if restart or self._offset is None or abs(seen - self._offset) > self.step_s:
            self._offset = seen
        else:
            self._offset = min(seen, self._offset + self.slew * max(0.0, t - self._t))
        self._t = t

    def wall(self, t: float) -> float:
        return (self._offset or 0.0) + t

    def iso(self, t: float) -> str:
        moment = datetime.datetime.fromtimestamp(self.wall(t)).astimezone()
        return moment.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Edges:
    """The service's contact with real time, injected so tests need not sleep through it."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] | None = None  # None: wait on the stop flag


class Service:
    """Build with settings and a classifier; `run()` until `stop()` (SIGTERM)."""

    def __init__(
        self,
        settings: Settings,
        classifier: CryClassifier,
        *,
        backend: SoundDeviceBackend | None = None,
        publisher: MqttPublisher | None = None,
        notifier: Notifier | None = None,
        sinks: list[EventSink] | None = None,
        edges: Edges = Edges(),
    ) -> None:
        self.classifier = classifier
        self.publisher = publisher
        self.notifier = notifier or Notifier()
        self.sinks = [*(sinks or []), self._log_event]
        self.edges = edges
        self._stop = threading.Event()
        self._sleep = edges.sleep or self._stop.wait
        self.rate = classifier.info.features.sample_rate
        self.mic = MicSource(settings.audio, self.rate, backend)
        a = settings.audio
        self.health = MicHealth(a.silence_floor_dbfs, a.silence_timeout_s, a.lost_after_s)
        self.watchdog = WatchdogPacer(self.notifier.watchdog_s)
        self.clock = WallClock()
        self.commands: queue.Queue[commands.Command] = queue.Queue()
        self.pipeline: Pipeline | None = None
        self._offset = 0.0  # service time of the current stream's audio time 0
        self._last_t = 0.0  # service time at the end of the last block
        self._last_mono = edges.monotonic()
        self._backoff = Backoff(RETRY_MIN_S, settings.audio.retry_max_s)
        self._next_open = self._last_mono
        self._problem = ""
        self._stats_logged = (0, 0, 0)
        self._stats_at = -STATS_LOG_INTERVAL_S
        self.clock.observe(0.0, edges.wall())
        origin = datetime.datetime.fromtimestamp(self.clock.wall(0.0)).astimezone()
        self.store = Store.in_state_dir(settings.service.state_dir)
        self.choices = Choices(self.store, settings, origin.date())
        self.settings = self.choices.settings
        self.coach = JournaledCoach.open(self.settings.checkin, NightLog(self.store), origin)
        status = self.coach.status()
        due = status.next_checkin_t
        self.state = resumed(
            status, None if due is None else self.clock.iso(due), self.settings.detector.min_bout_s
        )

    def on_command(self, command: commands.Command) -> None:
        """MQTT thread: hand the command to the loop, which applies it in order."""
        self.commands.put(command)

    def stop(self) -> None:
        """Safe from a signal handler: the loop ends within `POLL_S`."""
        self._stop.set()

    @property
    def now(self) -> float:
        """Service time: audio time while audio flows, the monotonic clock during an outage."""
        if self.pipeline is not None:
            return self._offset + self.pipeline.time_s
        return self._last_t + max(0.0, self.edges.monotonic() - self._last_mono)

    def run(self) -> None:
        if self.publisher is not None:
            self.publisher.start()
            self._publish_state()
        self.notifier.ready("starting microphone")
        log.info("pi-monitor running: model %s at %d Hz", self.settings.model.path, self.rate)
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self._shutdown()

    def step(self) -> None:
        """One turn of the loop: audio (or a reopen attempt), then time-driven work."""
        if self.pipeline is None:
            self._try_open()
        else:
            try:
                block = self.mic.read(POLL_S)
            except CaptureError as e:
                self._lost(str(e))
            else:
                if block is not None:
                    self._process(block)
        self._housekeeping()

    def _try_open(self) -> None:
        mono = self.edges.monotonic()
        if mono < self._next_open:
            self._sleep(min(POLL_S, self._next_open - mono))
            return
        t = self.now
        try:
            self.mic.open()
        except CaptureError as e:
            first = self._backoff.attempt == 0
            delay = self._backoff.next_delay()
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "microphone unavailable: %s; retrying in %.1f s",
                e,
                delay,
            )
            self.health.on_mic_down(t, str(e))
            self._next_open = mono + delay
            self.notifier.status(f"microphone unavailable: {e}")
            return
        self._backoff.reset()
        self._offset, self._last_t, self._last_mono = t, t, mono
        self.pipeline = Pipeline(self.classifier, self.settings.detector)
        device = self.mic.device.name if self.mic.device else "?"
        log.info("opened '%s' at %d Hz (model %d Hz)", device, self.mic.capture_rate, self.rate)
        self.notifier.status(f"opened '{device}', waiting for audio")

    def _lost(self, why: str) -> None:
        """The stream failed: close the bout under way, release the device, retry soon."""
        log.error("microphone lost: %s", why)
        assert self.pipeline is not None
        self._emit_stream(self.pipeline.finish())
        self.pipeline = None
        self.mic.close()
        self.health.on_mic_down(self._last_t, why)
        self._next_open = self.edges.monotonic() + RETRY_MIN_S
        self.notifier.status(f"microphone lost: {why}; retrying")

    def _process(self, block: np.ndarray) -> None:
        assert self.pipeline is not None
        t_start = self.now
        was_lost = Reason.MIC_LOST in self.health.problems
        events = self.pipeline.process(block)
        t_end = self.now
        first = self.pipeline.samples_seen == len(block)
        self._last_t, self._last_mono = t_end, self.edges.monotonic()
        self.clock.observe(t_end, self.edges.wall(), restart=first)
        level = level_dbfs(block)
        self.state = replace(self.state, level_dbfs=level)
        self._emit_stream(events)
        self._emit(self.health.on_block(t_start, t_end, level))
        if first:
            device = self.mic.device.name if self.mic.device else "?"
            log.log(logging.WARNING if was_lost else logging.INFO, "listening on '%s'", device)
            self.notifier.status(f"listening on '{device}'")

    def _housekeeping(self) -> None:
        t = self.now
        while not self.commands.empty():
            self._command(self.commands.get_nowait(), t)
        self._emit(self.health.tick(t))
        self._emit(self.coach.tick(t))
        self._sync_problem()
        self._publish_state()
        mono = self.edges.monotonic()
        if self.watchdog.due(mono):
            self.notifier.watchdog()
        self._log_stats(mono)

    def _command(self, command: commands.Command, t: float) -> None:
        """A parent's command from Home Assistant: the detector's confirmation time, or a coach
        input at service time `t`."""
        if isinstance(command, commands.SetMinBout):
            self.settings = self.choices.choose(command)
            if self.pipeline is not None:
                self.pipeline.set_detector(self.settings.detector)
            log.info("command: min_bout_s %.2f s", command.seconds)
            self.state = apply_command(self.state, command)
            return
        item = replace(command, t=t)
        try:
            out = self.coach.handle(item)
        except CommandRefused as e:
            log.warning("command refused: %s", e)
            return
        log.info("command: %s", item.to_dict())
        self.settings = self.choices.choose(command)
        self.state = apply_command(self.state, command)
        self._emit(out)

    def _emit_stream(self, events: list[Event]) -> None:
        """Pipeline events: the stream's audio time moved to service time."""
        self._emit([e.shifted(self._offset) for e in events] if self._offset else events)

    def _emit(self, events: list[Event]) -> None:
        """Stamp `wall`, fold into the state, log and publish; the coach hears detector events."""
        for event in events:
            line = event.to_dict(wall=self.clock.iso(event.t))
            self.state = apply_event(self.state, line)
            if not isinstance(event, Score):
                for sink in self.sinks:
                    sink(line)
                if self.publisher is not None:
                    self.publisher.publish_event(line)
            if isinstance(event, CryOnset | CryEnd):
                self._emit(self.coach.handle(event))

    def _sync_problem(self) -> None:
        detail = self.health.problem_detail()
        if detail != self._problem:
            if not detail:
                log.warning("problem cleared: %s", self._problem)
            self._problem = detail
            self.state = with_problem(self.state, bool(detail), detail)

    def _publish_state(self) -> None:
        if self.publisher is not None:
            self.publisher.publish_state(self.state)

    def _log_stats(self, mono: float) -> None:
        """Lost audio is a failure too: say so (at most once a minute) when counters grow."""
        s = self.mic.stats
        counts = (s.overflows, s.underflows, s.dropped_blocks)
        if counts != self._stats_logged and mono - self._stats_at >= STATS_LOG_INTERVAL_S:
            log.warning(
                "audio lost in capture: %d overflows, %d underflows, %d blocks dropped (total)",
                *counts,
            )
            self._stats_logged, self._stats_at = counts, mono

    def _log_event(self, line: dict[str, Any]) -> None:
        level = logging.WARNING if line["type"] == "escalation" else logging.INFO
        log.log(level, "event %s", json.dumps(line, separators=(",", ":")))

    def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        if self.pipeline is not None:
            self._emit_stream(self.pipeline.finish())
            self.pipeline = None
        self.mic.close()
        if self.publisher is not None:
            self._publish_state()
            self.publisher.stop()
        self.store.close()
        self.notifier.close()


JOURNAL_PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalFormatter(logging.Formatter):
    """Prefix `<priority>` so journald files each line under its level."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{JOURNAL_PRIORITIES.get(record.levelname, 6)}>{super().format(record)}"


def setup_logging(level: str) -> None:
    """One line per record on stdout; under systemd journald adds the time stamps."""
    handler = logging.StreamHandler(sys.stdout)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def build_service(settings: Settings) -> Service:
    """The real service: model, microphone, night log and MQTT (when enabled) from the config."""
    classifier = CryClassifier(settings.model.path, settings.model.threads)
    try:
        service = Service(settings, classifier, backend=SoundDeviceBackend())
    except StoreError as e:
        raise ConfigError(f"'service.state_dir': {e}") from None
    if settings.mqtt.enabled:
        state_dir = Path(settings.service.state_dir)
        service.publisher = MqttPublisher(settings.mqtt, state_dir, service.on_command)
    return service


def run_service(settings: Settings) -> int:
    """`pi-monitor run`: until SIGTERM or SIGINT, then a clean stop (exit 0)."""
    setup_logging(settings.service.log_level)
    service = build_service(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    try:
        service.run()
    except Exception:
        log.critical("pi-monitor failed; systemd restarts it", exc_info=True)
        return 1
    return 0
