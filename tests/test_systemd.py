"""The shipped unit and config template: systemd accepts the unit, check-config the template."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pi_monitor.config import DEFAULT_MODEL, Settings, load_settings

SHIPPED = DEFAULT_MODEL.parent.parent / "systemd"  # package data, beside the model
UNIT = SHIPPED / "pi-monitor.service"
EXEC = "/opt/pi-monitor/venv/bin/pi-monitor"
TEMPLATE = SHIPPED / "config.toml.example"


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at this machine's interpreter.
    text = UNIT.read_text()
    assert f"ExecStart={EXEC} run --config /etc/pi-monitor/config.toml" in text
    unit = tmp_path / "pi-monitor.service"
    unit.write_text(text.replace(f"ExecStart={EXEC}", f"ExecStart={sys.executable} -m pi_monitor"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


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
