"""End to end through the real sounddevice/PortAudio path, without a sound card.

`pi-monitor run` listens to a private PulseAudio null sink's monitor while `paplay` plays a
generated WAV into it; its events (placed in the file by their `wall` times) must match a replay
of the same file within 0.5 s. With faults injected (a full disk, a damaged night log, a killed
broker) every cry still reaches the broker within 2 s of the replay's decision.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import MqttSettings, Settings
from pi_monitor.discovery import Topics
from pi_monitor.install import as_the_unit
from pi_monitor.replay import replay_paths
from pi_monitor.store import FILENAME

from mosquitto import Mosquitto, Subscriber
from pulse import PulseServer, PulseUnavailable
from recorder import Recorder
from service_rig import shown

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE_S = 0.5


@pytest.fixture
def pulse(tmp_path: Path):
    server = PulseServer(tmp_path / "pulse")
    try:
        server.start()
    except PulseUnavailable as e:
        pytest.skip(f"PulseAudio cannot start here: {e}")
    yield server
    server.stop()


class NotifyListener:
    """A stand-in for systemd's notify socket: collects the service's datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if any(line.startswith(prefix) for line in m.splitlines()):
                    return m
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {prefix!r} from the service in {timeout} s: {self.messages}")


def live_wav(fixtures_dir: Path, path: Path) -> Path:
    """The cry fixture with 3 s of quiet on either side, as the nursery would sound."""
    x, rate = sf.read(fixtures_dir / "cry_like_16k.wav", dtype="float32")
    quiet = np.random.default_rng(7).normal(0, 1e-3, 3 * rate).astype(np.float32)
    sf.write(path, np.concatenate([quiet, x, quiet]), rate, subtype="PCM_16")
    return path


def write_config(tmp_path: Path, model: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[model]\npath = "{model}"\n'
        '[audio]\ndevice = "pulse"\n'
        f'[service]\nstate_dir = "{tmp_path / "state"}"\nlog_level = "INFO"\n'
    )
    return config


@pytest.fixture(scope="module")
def unit_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit's cache directory root (`%C`), shared so that only the first start compiles."""
    return tmp_path_factory.mktemp("cache")


def run_service(
    pulse: PulseServer, config: Path, notify: NotifyListener, stdout: Any, cache: Path
) -> subprocess.Popen[str]:
    """`pi-monitor run` on the PulseAudio rig as the unit runs it (its environment: Python at
    -OO, compiled files in the cache directory), telling `notify` as it would tell systemd."""
    env = as_the_unit(pulse.env, cache) | {
        "NOTIFY_SOCKET": str(notify.path),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pi_monitor", "run", "--config", str(config)],
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
    )


def service_events(stdout: str) -> list[dict]:
    return [
        json.loads(line.split(" event ", 1)[1])
        for line in stdout.splitlines()
        if " event {" in line
    ]


def wall_epoch(event: dict) -> float:
    return datetime.fromisoformat(event["wall"]).timestamp()


def test_live_service_events_match_a_replay_of_the_played_file(
    pulse: PulseServer, tmp_path: Path, test_model: Path, fixtures_dir: Path, unit_cache: Path
) -> None:
    wav = live_wav(fixtures_dir, tmp_path / "nursery.wav")
    recorder = Recorder()
    report = replay_paths([str(wav)], CryClassifier(test_model, 1), Settings(), [recorder])
    replayed = recorder.lines
    assert report.errors == [] and [e["type"] for e in replayed] == ["cry_onset", "cry_end"]

    notify = NotifyListener(tmp_path / "notify.sock")
    config = write_config(tmp_path, test_model)
    service = run_service(pulse, config, notify, subprocess.PIPE, unit_cache)
    try:
        notify.wait_for("READY=1", timeout=60)
        notify.wait_for("STATUS=listening", timeout=30)
        maps = Path(f"/proc/{service.pid}/maps").read_text()
        assert "libcrypto" not in maps, "without mqtt.tls the service keeps OpenSSL out"
        played_at = time.time()
        assert pulse.play(wav).wait(60) == 0
        time.sleep(1.0)
        service.send_signal(signal.SIGTERM)
        stdout, _ = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, stdout
    notify.wait_for("STOPPING=1", timeout=1)

    live = [e for e in service_events(stdout) if e["type"] in ("cry_onset", "cry_end")]
    assert [e["type"] for e in live] == [e["type"] for e in replayed], stdout
    for got, want in zip(live, replayed, strict=True):
        file_offset = wall_epoch(got) - got["t"] - played_at  # file time = service time + this
        for key in ("t", "emitted_t", "onset_t"):
            if key in want:
                assert abs(got[key] + file_offset - want[key]) <= TOLERANCE_S, (key, got, want)
        if "duration_s" in want:
            assert abs(got["duration_s"] - want["duration_s"]) <= TOLERANCE_S
    written = [p.name for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert written and not [n for n in written if n.endswith((".wav", ".flac", ".raw"))], written
    compiled = {p.name for p in unit_cache.rglob("*.pyc")}  # the service ran at -OO, caching here
    assert f"service.{sys.implementation.cache_tag}.opt-2.pyc" in compiled


def cry_clip(fixtures_dir: Path, path: Path) -> Path:
    """The fixture's cry with 1 s of quiet before and its 4 s after (the bout ends in them)."""
    x, rate = sf.read(fixtures_dir / "cry_like_16k.wav", dtype="float32")
    sf.write(path, x[2 * rate :], rate, subtype="PCM_16")
    return path


@pytest.mark.slow
def test_a_full_disk_a_damaged_night_log_and_a_killed_broker_never_delay_a_cry_beyond_2_s(
    pulse: PulseServer,
    small_disk,
    broker: Mosquitto,
    tmp_path: Path,
    test_model: Path,
    fixtures_dir: Path,
    unit_cache: Path,
) -> None:
    clip = cry_clip(fixtures_dir, tmp_path / "cry.wav")
    recorder = Recorder()
    replay_paths([str(clip)], CryClassifier(test_model, 1), Settings(), [recorder])
    ((onset, decided),) = [
        (e["t"], e["emitted_t"]) for e in recorder.lines if e["type"] == "cry_onset"
    ]

    config = tmp_path / "config.toml"
    config.write_text(
        f'[model]\npath = "{test_model}"\n[audio]\ndevice = "pulse"\n'
        f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n'
        'device_id = "nursery"\nreconnect_min_s = 0.05\nreconnect_max_s = 0.5\n'
        f'[service]\nstate_dir = "{small_disk.path}"\nlog_level = "INFO"\n'
    )
    topics = Topics.from_settings(MqttSettings(device_id="nursery"))
    watcher = Subscriber(broker, [topics.event, topics.state], durable=True)
    notify = NotifyListener(tmp_path / "notify.sock")
    log = (tmp_path / "service.log").open("w")
    service = run_service(pulse, config, notify, log, unit_cache)

    def events(kind: str) -> list[tuple[float, dict]]:
        """Each event's first arrival (a repeat after a reconnection has the same seq)."""
        first: dict[int, tuple[float, dict]] = {}
        for at, message in watcher.timed(topics.event):
            event = json.loads(message.payload)
            first.setdefault(event["seq"], (at, event))
        return [(at, e) for at, e in first.values() if e["type"] == kind]

    delays: list[float] = []

    def cry() -> None:
        """Play one cry; its onset must reach the broker within 2 s of the replay's decision,
        placed where the clip's audio reached the service (the onset's `wall`; not when paplay
        was started, which a busy machine delays)."""
        before = len(events("cry_onset"))
        assert pulse.play(clip).wait(60) == 0
        assert watcher.wait_for(lambda: len(events("cry_onset")) > before, 10), "never arrived"
        arrived, live = events("cry_onset")[before]
        delays.append(arrived - (wall_epoch(live) - onset + decided))

    def storage_notes() -> list[str]:
        return [e["detail"] for _, e in events("escalation") if e["reason"] == "storage_failed"]

    try:
        notify.wait_for("READY=1", timeout=60)
        notify.wait_for("STATUS=listening", timeout=30)

        small_disk.fill()
        cry()
        assert watcher.wait_for(lambda: shown(watcher, topics, "problem") is True, 10)
        assert any("free some space" in d for d in storage_notes())
        small_disk.free()
        assert watcher.wait_for(lambda: shown(watcher, topics, "problem") is False, 30)

        night_log = small_disk.path / FILENAME
        night_log.write_bytes(b"\xff" * night_log.stat().st_size)
        assert watcher.wait_for(lambda: any("moved aside" in d for d in storage_notes()), 15)
        cry()

        broker.kill()
        broker.start()
        cry()
        assert service.poll() is None, "the service never exits"
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
    finally:
        if service.poll() is None:
            service.kill()
        log.close()
        watcher.close()
    print(f"cry onset delays after the replay's decision: {[round(d, 2) for d in delays]} s")
    assert len(delays) == 3 and max(delays) < 2.0, delays
    assert list(small_disk.path.glob(f"{FILENAME}.corrupt-*"))
