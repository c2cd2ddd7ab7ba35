"""The shipped unit and config template: the unit is hardened, check-config takes the template.

(systemd-analyze verify checks the unit as `pi-monitor setup` writes it: tests/test_setup.py.)
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

from pi_monitor.config import Settings, load_settings
from pi_monitor.install import TEMPLATES

UNIT = TEMPLATES / "pi-monitor.service"
TEMPLATE = TEMPLATES / "config.toml.example"


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_is_a_hardened_notify_service_with_a_watchdog() -> None:
    s = unit_settings()
    for key, value in {
        "Type": "notify",
        "Restart": "on-failure",
        "User": "pi-monitor",
        "SupplementaryGroups": "audio",
        "StateDirectory": "pi-monitor",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "DeviceAllow": "char-alsa rw",
    }.items():
        assert s.get(key) == [value], key
    assert int(s["WatchdogSec"][0]) <= 60
    families = set(s["RestrictAddressFamilies"][0].split())
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


def test_unit_keeps_onnxruntime_telemetry_off() -> None:
    env = " ".join(unit_settings()["Environment"]).split()
    assert {"ORT_DISABLE_TELEMETRY=1", "ORT_TELEMETRY_DISABLED=1"} <= set(env)


def test_config_template_passes_check_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pi_monitor", "check-config", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_config_template_documents_every_key() -> None:
    text = TEMPLATE.read_text()
    load_settings(TEMPLATE)
    for section in dataclasses.fields(Settings):
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(getattr(Settings(), section.name)):
            assert re.search(rf"^#? ?{key.name} = ", text, re.M), f"{section.name}.{key.name}"
