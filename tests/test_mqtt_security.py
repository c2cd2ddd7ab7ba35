"""Broker credentials and TLS, against a real mosquitto configured for them."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from pi_monitor.config import MqttSettings
from pi_monitor.mqtt import MqttPublisher

from mosquitto import Mosquitto, mosquitto_available

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


def publisher(state_dir: Path, broker: Mosquitto, **overrides: object) -> MqttPublisher:
    settings = MqttSettings(
        host=broker.host,
        port=broker.port,
        device_id="sec",
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        **overrides,  # type: ignore[arg-type]
    )
    return MqttPublisher(settings, state_dir)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def test_wrong_password_is_logged_and_events_wait_until_credentials_work(tmp_path, caplog):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "monitor", "s3cret"], check=True)
    passwd.chmod(0o644)
    broker = Mosquitto(tmp_path / "broker", extra_conf=(f"password_file {passwd}",))
    broker.start()
    try:
        bad = publisher(tmp_path / "state", broker, username="monitor", password="wrong")
        with caplog.at_level(logging.ERROR, logger="pi_monitor.mqtt"):
            bad.start()
            bad.publish_event({"type": "escalation", "t": 1.0, "reason": "mic_lost"})
            assert not bad.wait_connected(1.0)
        bad.stop()
        assert "refused the connection" in caplog.text
        assert len(bad.outbox) == 1

        good = publisher(tmp_path / "state", broker, username="monitor", password="s3cret")
        good.start()
        assert good.wait_connected(10)
        assert good.wait_drained(10), "the event queued under bad credentials is delivered"
        good.stop()
    finally:
        broker.kill()


def test_tls_with_a_private_ca_connects_and_delivers(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_key, ca, key, csr, cert, ext = (
        certs / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt", "ext.cnf")
    )
    subj_ca, subj = "/CN=test-ca", "/CN=localhost"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subj_ca,
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", str(key),
            "-out", str(csr))  # fmt: skip
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    for f in certs.iterdir():
        f.chmod(0o644)
    broker = Mosquitto(
        tmp_path / "broker", extra_conf=(f"cafile {ca}", f"certfile {cert}", f"keyfile {key}")
    )
    broker.start()
    try:
        plain = publisher(tmp_path / "plain", broker)
        plain.start()
        assert not plain.wait_connected(1.0), "a plain client must not get through"
        plain.stop()

        pub = publisher(tmp_path / "tls", broker, tls=True, ca_file=str(ca))
        pub.start()
        assert pub.wait_connected(10)
        pub.publish_event({"type": "escalation", "t": 5.0, "reason": "mic_silent"})
        assert pub.wait_drained(10)
        pub.stop()
    finally:
        broker.kill()
