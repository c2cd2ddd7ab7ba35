"""A real mosquitto broker on a free loopback port, for tests and benchmarks.

It can be killed (SIGKILL, like a crash) and started again on the same port, so reconnection is
tested against the real thing. Persistence is saved on every change, so a subscriber's durable
session (clean_session=False, QoS 1) survives a SIGKILL and queues what arrives while the
subscriber is still reconnecting, once the save has run: a kill right after the SUBACK can beat
it (`stop()`, SIGTERM, always saves).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_available() -> bool:
    return Path(MOSQUITTO).is_file() and os.access(MOSQUITTO, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker process; `start`, `kill`, `stop` and `start` again keep the same port."""

    def __init__(
        self, workdir: Path, port: int | None = None, extra_conf: tuple[str, ...] = ()
    ) -> None:
        """`extra_conf`: more mosquitto.conf lines for the listener (TLS files, password_file)."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.conf_path = workdir / "mosquitto.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            *extra_conf,
            f"allow_anonymous {str(not any('password_file' in x for x in extra_conf)).lower()}",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_on_changes true",
            "autosave_interval 1",
            "max_queued_messages 100000",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err or self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing sessions or saving anything."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Subscriber:
    """A paho test client that records every message; `durable` keeps its session at the broker."""

    def __init__(self, broker: Mosquitto, topics: list[str], durable: bool = False) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.arrived: list[float] = []  # time.time() of each message's arrival
        self._cond = threading.Condition()
        self._topics = topics
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=not durable,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("test subscriber got no SUBACK within 10 s")

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self.arrived.append(time.time())
            self._cond.notify_all()

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def timed(self, topic: str) -> list[tuple[float, paho.MQTTMessage]]:
        """(arrival time, message) on `topic`, in order."""
        with self._cond:
            pairs = zip(self.arrived, self.messages, strict=True)
            return [(at, m) for at, m in pairs if m.topic == topic]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def latest(self, topic: str, timeout: float = 10.0) -> bytes | None:
        """Payload of the newest message on `topic`, waiting for a first one."""
        self.wait_for(lambda: any(m.topic == topic for m in self.messages), timeout)
        found = self.on(topic)
        return found[-1].payload if found else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll for state no subscriber message signals (publisher or service side)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def publish_raw(broker: Mosquitto, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish one message as an outside client (e.g. Home Assistant) and wait for PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
