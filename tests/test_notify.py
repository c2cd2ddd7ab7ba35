"""sd_notify against a datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from pi_monitor.notify import Notifier, WatchdogPacer


@pytest.fixture
def listener(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock, str(tmp_path / "notify")
    sock.close()


def test_messages_reach_a_path_socket(listener) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.ready("warming up") and n.watchdog() and n.status("ok") and n.stopping()
    got = [sock.recv(256).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=warming up", "WATCHDOG=1", "STATUS=ok", "STOPPING=1"]
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"pi-monitor-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled and not n.ready() and n.watchdog_s is None


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path, caplog) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not n.watchdog()
    assert "sd_notify 'WATCHDOG' to" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_the_environment(env: dict, expected: float | None) -> None:
    assert Notifier(env).watchdog_s == expected


def test_pings_are_paced_at_half_the_watchdog_interval() -> None:
    pacer = WatchdogPacer(10.0)
    assert [t for t in (0.0, 1.0, 4.9, 5.0, 9.0, 10.1) if pacer.due(t)] == [0.0, 5.0, 10.1]
    assert not WatchdogPacer(None).due(0.0)
