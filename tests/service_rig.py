"""The service on a stand-in microphone (tests/fake_portaudio.py) with time injected: helpers the
service tests and the Home Assistant tests share."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from fake_portaudio import FakeBackend, noise_blocks

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import AudioSettings, MqttSettings, ServiceSettings, Settings
from pi_monitor.discovery import Topics
from pi_monitor.flow import Edges
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.service import Service
from pi_monitor.sinks import Sink

from mosquitto import Mosquitto, Subscriber, wait_until

RATE = 48000
BLOCK = 4800  # 0.1 s
QUIET, LOUD = 0.001, 0.1  # the test model scores these ~0 and ~1


class FakeTime:
    """Monotonic and wall clocks that move only when the service sleeps."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def sleep(self, seconds: float) -> None:
        self.mono += seconds

    def edges(self) -> Edges:
        return Edges(
            monotonic=lambda: self.mono,
            wall=lambda: 1.8e9 + self.mono,
            sleep=self.sleep,
            synced=lambda: True,
        )


def make_settings(tmp_path: Path, model: Path, **audio: object) -> Settings:
    a = {"device": "USB", "queue_blocks": 1000, **audio}
    return Settings(
        model=replace(Settings().model, path=str(model)),
        audio=AudioSettings(**a),  # type: ignore[arg-type]
        service=ServiceSettings(state_dir=str(tmp_path / "state")),
    )


def run_until(service: Service, done, max_steps: int = 5000) -> None:
    for _ in range(max_steps):
        if done():
            return
        service.step()
    raise AssertionError("condition not reached")


def audio(*spans: tuple[float, float]) -> list[np.ndarray]:
    """(seconds, amplitude) spans of noise as 0.1 s blocks: QUIET is a quiet room, LOUD crying."""
    return [
        block
        for i, (seconds, amplitude) in enumerate(spans)
        for block in noise_blocks(seconds, RATE, BLOCK, amplitude, i)
    ]


def with_mqtt(settings: Settings, broker: Mosquitto, device_id: str = "nursery") -> Settings:
    mqtt = MqttSettings(host=broker.host, port=broker.port, device_id=device_id, enabled=True)
    return replace(settings, mqtt=mqtt)


def on_broker(
    settings: Settings,
    model: Path,
    blocks: Iterable[np.ndarray],
    clock: FakeTime,
    sinks: Sequence[Sink] = (),
) -> Service:
    """A service publishing to the broker in `settings.mqtt`, connected and listening for
    commands before it returns; the caller calls `shutdown()` (which also stops the publisher)."""
    publisher = MqttPublisher(settings.mqtt, Path(settings.service.state_dir))
    service = Service(
        settings,
        CryClassifier(model, 1),
        backend=FakeBackend(streams=[(blocks, False)]),
        publisher=publisher,
        sinks=sinks,
        edges=clock.edges(),
    )
    publisher.start()
    assert publisher.wait_listening(10), "the publisher never connected and subscribed"
    return service


def stepped_until(service: Service, done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Step the service until `done()` (a command sent through the broker has arrived, say)."""

    def step_and_check() -> bool:
        service.step()
        return done()

    return wait_until(step_and_check, timeout)


def shown(watcher: Subscriber, topics: Topics, key: str) -> object:
    """The latest retained state's `key` as HA reads it; None before any state arrived."""
    found = watcher.on(topics.state)
    return json.loads(found[-1].payload)[key] if found else None
