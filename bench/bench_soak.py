"""Memory over a day of nursery audio through the whole service, faster than real time.

The real `Service` (the microphone source with its resampler, the pipeline, the journaled coach
and its night log, the HA choices, the MQTT publisher and its outbox against a local mosquitto,
the log) is fed generated nursery audio (bench/signals.py: room noise, fan hum and cry-like
bursts every minute) as fast as it can take it: a stand-in PortAudio stream hands over the next
block as soon as the service has taken the last ones, and the service's clocks follow the audio,
so a day of sessions, check-ins and settlings takes minutes instead of 24 hours. Each evening a
sleep session runs from 19:30 to 07:00 with graduated check-ins and a parent's "checked in" every
20 minutes. RSS is sampled every minute of audio; after the first hour (warm-up) it should stay
within 5 MB.

The classifier is the tests' loudness model (tests/model_factory.py) unless --model says
otherwise: the trained model rightly hears no cry in these synthetic bursts, and a day without
events would leave the paths this measures idle.

    .venv/bin/python bench/bench_soak.py [--hours 24] [--model FILE.onnx]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # its mosquitto runner
sys.path.insert(2, str(ROOT / "bench"))

from signals import night_blocks

from pi_monitor import commands
from pi_monitor.capture import InputDevice, SoundDeviceBackend
from pi_monitor.classifier import CryClassifier
from pi_monitor.config import (
    AudioSettings,
    CheckinSettings,
    MqttSettings,
    ServiceSettings,
    Settings,
)
from pi_monitor.events import EVENT_TYPES
from pi_monitor.flow import Edges
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.notify import Notifier
from pi_monitor.service import Service
from pi_monitor.state import MonitorState

from mosquitto import Mosquitto, mosquitto_available

RATE = 16000  # the stand-in microphone's rate: resampled to the model's, as a USB mic's is
BLOCK_S = 0.1
WARM_UP_S = 3600.0
START = datetime.datetime(2027, 1, 10, 12, 0).astimezone()  # noon: the day holds one night
BORN = "2026-06-01"  # old enough for graduated on these dates
MIC = InputDevice(1, "generated nursery", "ALSA", 1, RATE, False)


def memory_mb() -> tuple[float, float]:
    """(RSS, its private part). Under memory pressure the kernel drops the mapped libraries'
    pages and RSS falls with no change in the process; a leak shows in the private part."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    resident, anon = (int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon"))
    return resident, anon


@dataclass
class GeneratedStream:
    """Hands the service the next generated blocks when the bench's loop asks (`feed`), as many
    as the service has room for: no thread, so no waiting that costs CPU on a busy machine."""

    callback: Any
    blocks: Any
    active: bool = True

    def start(self) -> None:
        pass

    def feed(self, room: Any) -> None:
        while self.active and room():
            block = next(self.blocks, None)
            if block is None:
                self.active = False
                return
            self.callback(block[:, None], len(block), None, None)

    def abort(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


class GeneratedBackend(SoundDeviceBackend):
    """The PortAudio boundary with a generated microphone behind it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stream: GeneratedStream | None = None

    def refresh(self) -> None:
        pass

    def input_devices(self) -> list[InputDevice]:
        return [MIC]

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool:
        return rate == RATE and channels == 1

    def open_stream(
        self, device: InputDevice, rate: int, channels: int, blocksize: int, callback: Any
    ) -> GeneratedStream:
        blocks = night_blocks(RATE, self.seconds, block_s=BLOCK_S, seed=3)
        self.stream = GeneratedStream(callback, iter(blocks))
        return self.stream


class Counted:
    """A sink that counts the contract's events by type."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def event(self, line: dict[str, Any]) -> None:
        if line["type"] in EVENT_TYPES:
            self.counts[line["type"]] += 1

    def state(self, state: MonitorState) -> None:
        pass


def made_loudness_model(path: Path) -> Path:
    """The tests' loudness model, written by another process (onnx stays out of this one)."""
    code = "import sys; from pathlib import Path; from model_factory import loudness_model; "
    code += "loudness_model(Path(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env)
    return path


def parent_commands(hours: float) -> list[tuple[float, commands.Command]]:
    """(audio time, command): each evening's session, and a visit every 20 minutes in it."""
    out: list[tuple[float, commands.Command]] = []
    day = 0
    while True:
        evening = START.replace(hour=19, minute=30) + datetime.timedelta(days=day)
        start_s = (evening - START).total_seconds()
        end_s = start_s + 11.5 * 3600
        if start_s >= hours * 3600:
            return out
        out.append((start_s, commands.SessionStart()))
        out += [(t, commands.CheckedIn()) for t in np.arange(start_s + 1200, end_s, 1200)]
        out.append((end_s, commands.SessionEnd()))
        day += 1


def stopped(signum: int, frame: Any) -> None:
    """SIGTERM (or Ctrl-C) ends the soak early with the figures so far."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="hours of audio")
    parser.add_argument("--model", type=Path, help="ONNX model (default: the loudness model)")
    args = parser.parse_args()
    total_s = args.hours * 3600

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or made_loudness_model(tmp / "loudness.onnx")
        logging.basicConfig(
            filename=tmp / "service.log", level=logging.INFO, format="%(levelname)s %(message)s"
        )
        broker = None
        mqtt = MqttSettings()
        if mosquitto_available():
            broker = Mosquitto(tmp / "broker")
            broker.start()
            mqtt = MqttSettings(enabled=True, host=broker.host, port=broker.port)
        settings = Settings(
            model=replace(Settings().model, path=str(model)),
            audio=AudioSettings(device="generated", block_s=BLOCK_S),
            checkin=CheckinSettings(method="graduated", birth_date=BORN),
            mqtt=mqtt,
            service=ServiceSettings(state_dir=str(tmp / "state")),
        )
        now = [0.0]  # audio time: the service's clocks follow it
        edges = Edges(
            monotonic=lambda: now[0],
            wall=lambda: START.timestamp() + now[0],
            sleep=lambda _: None,
            synced=lambda: True,
        )
        backend = GeneratedBackend(total_s)
        publisher = MqttPublisher(mqtt, tmp / "state") if broker else None
        counted = Counted()
        service = Service(
            settings,
            CryClassifier(model, settings.model.threads),
            backend=backend,
            publisher=publisher,
            notifier=Notifier({}),
            sinks=[counted],
            edges=edges,
        )
        room = lambda: service.mic._queue.qsize() < 4  # noqa: E731
        if publisher is not None:
            publisher.start()
        todo = parent_commands(args.hours)
        samples: list[float] = []
        private: list[float] = []
        started = time.monotonic()
        signal.signal(signal.SIGTERM, stopped)
        try:
            while now[0] < total_s - BLOCK_S:
                if backend.stream is not None:
                    backend.stream.feed(room)
                service.step()
                now[0] = service.flow.now
                while todo and todo[0][0] <= now[0]:
                    service.on_command(todo.pop(0)[1])
                if now[0] >= 60.0 * (len(samples) + 1):
                    resident, anon = memory_mb()
                    samples.append(resident)
                    private.append(anon)
                    if len(samples) % 60 == 0:
                        print(
                            f"  {len(samples) // 60:2d} h: RSS {resident:.1f} MB "
                            f"({anon:.1f} MB private)",
                            flush=True,
                        )
        except KeyboardInterrupt:
            print(f"stopped after {now[0] / 3600:.2f} h of audio", flush=True)
        try:
            if publisher is not None:
                publisher.wait_drained(30)
            left = len(publisher.outbox) if publisher else 0
            seq = publisher.outbox.last_seq if publisher else 0
        finally:
            service.shutdown()
            if broker is not None:
                broker.kill()
        elapsed = time.monotonic() - started
        log_lines = sum(1 for _ in (tmp / "service.log").open())

    covered_h = len(samples) / 60
    speed = covered_h * 3600 / elapsed
    print(f"audio {covered_h:.2f} of {args.hours:g} h in {elapsed / 60:.1f} min ({speed:.0f}x)")
    print(f"model {model.name}; MQTT {'on' if broker else 'off (no mosquitto)'}")
    print(f"events: {dict(sorted(counted.counts.items()))}")
    print(f"MQTT: {seq} events queued, {left} not acknowledged at the end")
    print(f"log: {log_lines} lines; capture drops: {service.mic.stats.dropped_blocks}")
    for name, series in (("RSS", samples), ("private RSS (RssAnon)", private)):
        warm = [s for i, s in enumerate(series) if (i + 1) * 60 > WARM_UP_S] or series[-1:]
        print(f"{name} sampled every audio minute: {len(series)} samples, first {series[0]:.1f} MB")
        print(f"  after the {WARM_UP_S / 60:.0f}-minute warm-up: {warm[0]:.1f} MB")
        print(f"  then min {min(warm):.1f}, max {max(warm):.1f}, last {warm[-1]:.1f} MB")
        print(f"  spread after warm-up: {max(warm) - min(warm):.2f} MB (target: within 5 MB)")


if __name__ == "__main__":
    main()
