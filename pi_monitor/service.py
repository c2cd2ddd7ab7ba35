"""`pi-monitor run`: the flow on the live microphone, for months unattended.

This module is wiring and edges: it assembles the flow (microphone, journaled coach, HA choices,
log and MQTT sinks) and runs it in one loop that also pings systemd's watchdog, so a stalled loop
stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pi_monitor.capture import MicSource, SoundDeviceBackend
from pi_monitor.choices import Choices
from pi_monitor.classifier import CryClassifier
from pi_monitor.clock import WallClock
from pi_monitor.commands import Command
from pi_monitor.config import ConfigError, Settings
from pi_monitor.flow import Edges, Flow
from pi_monitor.health import MicHealth
from pi_monitor.journal import JournaledCoach
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.nightlog import NightLog
from pi_monitor.notify import Notifier, WatchdogPacer
from pi_monitor.recovery import Reopen
from pi_monitor.sinks import LogSink, Sink
from pi_monitor.store import Store, StoreError

log = logging.getLogger(__name__)

STATS_LOG_INTERVAL_S = 60.0


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
        sinks: Sequence[Sink] = (),
        edges: Edges | None = None,
    ) -> None:
        """`edges` default to the real clocks, with waits that end at once on `stop()`."""
        self.notifier = notifier or Notifier()
        self.publisher = publisher
        self._stop = threading.Event()
        self.edges = edges or Edges(sleep=self._stop.wait)
        self.watchdog = WatchdogPacer(self.notifier.watchdog_s)
        self.mic = MicSource(settings.audio, classifier.info.features.sample_rate, backend)
        clock = WallClock(self.edges.wall)
        origin = clock.moment(0.0)
        self.store = Store.in_state_dir(settings.service.state_dir)
        choices = Choices(self.store, settings, origin.date())
        a = choices.settings.audio
        health = MicHealth(a.silence_floor_dbfs, a.silence_timeout_s, a.lost_after_s)
        all_sinks = [*sinks, LogSink(), *([publisher] if publisher else [])]
        self.flow = Flow(
            self.mic,
            classifier,
            choices.settings,
            sinks=all_sinks,
            coach=JournaledCoach.open(choices.settings.checkin, NightLog(self.store), origin),
            choices=choices,
            clock=clock,
            recovery=Reopen(health, a.retry_max_s, self.notifier.status),
            edges=self.edges,
        )
        if publisher is not None:
            publisher.on_command = self.on_command
        self._stats_logged = (0, 0, 0)
        self._stats_at = -STATS_LOG_INTERVAL_S

    def on_command(self, command: Command) -> None:
        """MQTT thread: hand the command to the flow, which applies it in order."""
        self.flow.command(command)

    def stop(self) -> None:
        """Safe from a signal handler: the loop ends within the flow's poll time."""
        self._stop.set()

    def run(self) -> None:
        if self.publisher is not None:
            self.publisher.start()
        self.notifier.ready("starting microphone")
        log.info("pi-monitor running: model %s", self.flow.settings.model.path)
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self.shutdown()

    def step(self) -> None:
        """One turn of the flow, then the watchdog ping it earned."""
        self.flow.step()
        mono = self.edges.monotonic()
        if self.watchdog.due(mono):
            self.notifier.watchdog()
        self._log_stats(mono)

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

    def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        self.flow.close()
        if self.publisher is not None:
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
        publisher = None
        if settings.mqtt.enabled:
            publisher = MqttPublisher(settings.mqtt, Path(settings.service.state_dir))
        return Service(settings, classifier, backend=SoundDeviceBackend(), publisher=publisher)
    except (StoreError, OSError) as e:
        raise ConfigError(f"'service.state_dir': {e}") from None


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
