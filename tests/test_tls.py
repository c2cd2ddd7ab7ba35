"""TLS files are loaded by `check-config` as the connection will load them, and each mistake is
one line naming the key, the file and the fix; the context they make connects to a real broker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cli_run import run_cli
from paho.mqtt.enums import CallbackAPIVersion

from pi_monitor.config import MqttSettings

from mosquitto import Mosquitto, mosquitto_available, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA; a broker certificate for localhost and a client certificate, both signed by it; a
    key of another pair; the client key under a pass phrase; and a file of garbage."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("broker", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(d / "ext.cnf"), "-out", str(d / f"{name}.crt"))  # fmt: skip
    openssl("genrsa", "-out", str(d / "other.key"), "2048")
    openssl("rsa", "-in", str(d / "client.key"), "-aes128", "-passout", "pass:secret",
            "-out", str(d / "locked.key"))  # fmt: skip
    (d / "garbage.pem").write_text("this is not a certificate\n")
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def check_config(tmp_path: Path, **mqtt: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "tls.toml"
    lines = ["[mqtt]", "tls = true", *(f'{key} = "{value}"' for key, value in mqtt.items())]
    config.write_text("\n".join(lines) + "\n")
    return run_cli("check-config", str(config))


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"ca_file": "garbage.pem"}, "'mqtt.ca_file' = '{d}/garbage.pem': no CA certificate in it"),
        (
            {"cert_file": "garbage.pem", "key_file": "client.key"},
            "'mqtt.cert_file' = '{d}/garbage.pem': no certificate in it",
        ),
        (
            {"cert_file": "client.crt", "key_file": "other.key"},
            "'mqtt.key_file' = '{d}/other.key': the private key does not belong to the "
            "certificate in 'mqtt.cert_file' = '{d}/client.crt' (OpenSSL: key values mismatch)",
        ),
        (
            {"cert_file": "client.crt", "key_file": "garbage.pem"},
            "'mqtt.key_file' = '{d}/garbage.pem': no private key in it",
        ),
        (
            {"cert_file": "client.crt", "key_file": "locked.key"},
            "'mqtt.key_file' = '{d}/locked.key': the private key is protected by a pass phrase",
        ),
        ({"cert_file": "client.crt"}, "'mqtt.cert_file' = '{d}/client.crt': no private key in it"),
    ],
)
def test_each_tls_mistake_is_one_line_naming_the_key_and_the_file(
    pki, tmp_path, mqtt: dict[str, str], message: str
) -> None:
    result = check_config(tmp_path, **{key: str(pki / name) for key, name in mqtt.items()})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pi-monitor: error: {tmp_path / 'tls.toml'}: ")
    assert message.format(d=pki) in lines[0]


def test_a_device_as_ca_file_is_refused_without_reading_it(tmp_path) -> None:
    result = check_config(tmp_path, ca_file="/dev/zero")
    assert result.returncode == 2
    assert "'mqtt.ca_file' = '/dev/zero': not a regular file" in result.stderr


def test_replay_mqtt_with_a_garbage_ca_is_one_line_not_a_traceback(pki, tmp_path, fixtures_dir):
    config = tmp_path / "replay.toml"
    config.write_text(f'[mqtt]\ntls = true\nca_file = "{pki / "garbage.pem"}"\n')
    wav = str(fixtures_dir / "cry_like_16k.wav")
    result = run_cli("replay", "--config", str(config), "--mqtt", wav)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'mqtt.ca_file'" in result.stderr and "no CA certificate in it" in result.stderr


@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")
def test_the_checked_context_connects_to_a_broker_that_requires_client_certificates(
    pki, tmp_path
) -> None:
    """The one place the service can take its TLS from: paho connects with it as it is, and
    check-config passes the same files."""
    from pi_monitor.tls import mqtt_tls_context

    files = {"ca_file": "ca.crt", "cert_file": "client.crt", "key_file": "client.key"}
    paths = {key: str(pki / name) for key, name in files.items()}
    settings = MqttSettings(tls=True, **paths)
    checked = check_config(tmp_path, **paths)
    assert checked.returncode == 0, checked.stderr
    broker = Mosquitto(
        tmp_path / "broker",
        extra_conf=(
            f"cafile {pki / 'ca.crt'}",
            f"certfile {pki / 'broker.crt'}",
            f"keyfile {pki / 'broker.key'}",
            "require_certificate true",
        ),
    )
    broker.start()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="tls-check")
    try:
        client.tls_set_context(mqtt_tls_context(settings))
        client.connect(broker.host, broker.port, 30)
        client.loop_start()
        assert wait_until(client.is_connected), broker.log_tail()
    finally:
        client.loop_stop()
        client.disconnect()
        broker.kill()
