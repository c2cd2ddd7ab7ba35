"""End to end through the real sounddevice/PortAudio path, without a sound card.

`pi-monitor run` listens to a private PulseAudio null sink's monitor while `paplay` plays a
generated WAV into it; its events (placed in the file by their `wall` times) must match a replay
of the same file within 0.5 s.
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

import numpy as np
import pytest
import soundfile as sf

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import Settings
from pi_monitor.replay import replay_paths

from pulse import PulseServer, PulseUnavailable
from recorder import Recorder

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


def service_events(stdout: str) -> list[dict]:
    return [
        json.loads(line.split(" event ", 1)[1])
        for line in stdout.splitlines()
        if " event {" in line
    ]


def wall_epoch(event: dict) -> float:
    return datetime.fromisoformat(event["wall"]).timestamp()


def test_live_service_events_match_a_replay_of_the_played_file(
    pulse: PulseServer, tmp_path: Path, test_model: Path, fixtures_dir: Path
) -> None:
    wav = live_wav(fixtures_dir, tmp_path / "nursery.wav")
    recorder = Recorder()
    report = replay_paths([str(wav)], CryClassifier(test_model, 1), Settings(), [recorder])
    replayed = recorder.lines
    assert report.errors == [] and [e["type"] for e in replayed] == ["cry_onset", "cry_end"]

    notify = NotifyListener(tmp_path / "notify.sock")
    env = {**pulse.env, "NOTIFY_SOCKET": str(notify.path), "PYTHONPATH": str(ROOT)}
    config = write_config(tmp_path, test_model)
    service = subprocess.Popen(
        [sys.executable, "-m", "pi_monitor", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        notify.wait_for("READY=1", timeout=60)
        notify.wait_for("STATUS=listening", timeout=30)
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
