"""Config files are validated once, and every error names the file, the key and what is allowed."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from cli_run import run_cli

from pi_monitor.cli import main
from pi_monitor.config import (
    AudioSettings,
    ConfigError,
    Settings,
    load_settings,
    settings_from_dict,
)
from pi_monitor.health import MicHealth, level_dbfs


def test_empty_file_gives_the_defaults(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    assert load_settings(path) == Settings()


def test_values_are_read_and_ints_accepted_for_floats(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[detector]\nmin_bout_s = 1\n[mqtt]\nhost = "broker"\nport = 8883\n')
    settings = load_settings(path)
    assert settings.detector.min_bout_s == 1.0 and isinstance(settings.detector.min_bout_s, float)
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker", 8883)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mqtt": {"port": "1883"}}, r"'mqtt\.port' must be an integer"),
        ({"mqtt": {"port": 70000}}, r"'mqtt\.port' = 70000 is out of range; allowed 1 to 65535"),
        ({"mqtt": {"prot": 1}}, r"unknown key 'mqtt\.prot'; allowed keys in mqtt: enabled, host"),
        ({"nope": {}}, r"unknown key 'nope'"),
        ({"detector": 3}, r"detector: expected a table"),
        ({"detector": {"min_bout_s": True}}, r"'detector\.min_bout_s' must be a number"),
        ({"detector": {"merge_gap_s": float("nan")}}, r"'detector\.merge_gap_s' = nan is out"),
        ({"audio": {"block_s": float("inf")}}, r"'audio\.block_s' = inf is out of range"),
        ({"service": {"log_level": "LOUD"}}, r"'service\.log_level' = 'LOUD' is not allowed"),
        ({"detector": {"on_threshold": 0.6, "off_threshold": 0.7}}, r"detector\.off_threshold"),
        ({"detector": {"on_threshold": 0.9, "sure_threshold": 0.8}}, r"detector\.sure_threshold"),
        ({"detector": {"sure_threshold": 0.4}}, r"'detector\.sure_threshold' = 0\.4 is out"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(data)


def test_unreadable_files_name_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_settings(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[mqtt]\nport = 0\n")
    with pytest.raises(ConfigError, match=r"wrong\.toml: 'mqtt\.port'"):
        load_settings(wrong)


@pytest.mark.parametrize(
    ("key", "refused", "allowed", "message"),
    [
        (
            "on_threshold",
            1.0,
            0.99,
            r"'detector\.on_threshold' = 1\.0 is out of range; allowed 0\.5",
        ),
        ("on_threshold", 0, 0.5, r"'detector\.on_threshold' = 0 is out of range; allowed 0\.5 to"),
        ("on_threshold", 0.3, 0.5, r"'detector\.on_threshold' = 0\.3 is out of range"),
        ("off_threshold", 0, 0.2, r"'detector\.off_threshold' = 0 is out of range; allowed 0\.2"),
        ("off_threshold", 0.05, 0.2, r"'detector\.off_threshold' = 0\.05 is out of range"),
    ],
)
def test_thresholds_that_deafen_the_detector_or_make_silence_crying_are_refused(
    key: str, refused: float, allowed: float, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_dict({"detector": {key: refused}})
    assert getattr(settings_from_dict({"detector": {key: allowed}}).detector, key) == allowed


def test_every_allowed_silence_floor_still_calls_a_dead_microphone_silent() -> None:
    """At or below the level meter's floor nothing is ever silent: mic_silent could never fire."""
    floor = {f.name: f for f in dataclasses.fields(AudioSettings)}["silence_floor_dbfs"]
    lowest = floor.metadata["min"]
    health = MicHealth(silence_floor_dbfs=lowest, silence_timeout_s=5.0, lost_after_s=10.0)
    dead = level_dbfs(np.zeros(1600, np.float32))
    raised = [e for i in range(60) for e in health.on_block(i * 0.1, (i + 1) * 0.1, dead)]
    assert [e.reason for e in raised] == ["mic_silent"], lowest
    with pytest.raises(ConfigError, match=r"'audio\.silence_floor_dbfs' = 0 is out of range"):
        settings_from_dict({"audio": {"silence_floor_dbfs": 0}})


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        (
            {"client_id": "x" * 70_000},
            r"'mqtt\.client_id' is 70000 bytes long; allowed at most 256",
        ),
        ({"client_id": "a\0b"}, r"'mqtt\.client_id' has control character '\\x00' at position 1"),
        (
            {"username": "u" * 70_000},
            r"'mqtt\.username' is 70000 bytes long; allowed at most 65535",
        ),
        ({"password": "p" * 70_000}, r"'mqtt\.password' is 70000 bytes long"),
        ({"device_id": "n" * 65}, r"'mqtt\.device_id' = 'n+'\.\.\. \(65 characters\): use 1 to 64"),
        ({"topic_prefix": "home//baby"}, r"'mqtt\.topic_prefix' = 'home//baby': must be .* empty"),
        (
            {"topic_prefix": "p" * 300},
            r"'mqtt\.topic_prefix' is 300 bytes long; allowed at most 256",
        ),
        ({"discovery_prefix": "ha\nx"}, r"'mqtt\.discovery_prefix' has control character"),
        ({"host": ""}, r"'mqtt\.host' = '': give a host name or address of 1 to 253 characters"),
        ({"host": "broker .lan"}, r"'mqtt\.host' = 'broker \.lan': .* without spaces"),
    ],
)
def test_mqtt_values_that_paho_or_the_broker_would_choke_on_name_the_key_and_limit(
    mqtt: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_dict({"mqtt": mqtt})


def test_a_password_is_never_echoed_in_an_error() -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_dict({"mqtt": {"username": "mum\x07secret"}})
    assert "secret" not in str(error.value)


def test_a_config_that_is_not_utf8_names_the_file_and_the_byte(tmp_path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[mqtt]\ndevice_name = "Chambre de Léa"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text \(byte 0xe9 at offset"):
        load_settings(path)


def test_check_config_refuses_a_device_without_reading_it() -> None:
    """/dev/zero never ends: reading it as a config took all the memory there was."""
    result = run_cli("check-config", "/dev/zero", memory_limit=2 << 30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "pi-monitor: error: /dev/zero: not a regular file (a directory, FIFO or device); "
        "give the config file itself"
    )


def test_check_config_refuses_a_fifo_without_waiting_for_a_writer(tmp_path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    result = run_cli("check-config", str(fifo))
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_a_huge_config_file_is_refused_by_its_size(tmp_path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * (2 << 20) + "\n")  # a config is a few kB
    with pytest.raises(ConfigError, match=r"big\.toml: \d+ bytes, over the 1048576 a config file"):
        load_settings(path)


def test_check_config_refuses_a_capture_rate_too_odd_to_resample(tmp_path, test_model, capsys):
    path = tmp_path / "odd.toml"
    path.write_text(f'[model]\npath = "{test_model}"\n[audio]\nsample_rate = 60001\n')
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.startswith(
        f"pi-monitor: error: {path}: 'audio.sample_rate' = 60001: resampling 60001 Hz to 8000 Hz"
    )
