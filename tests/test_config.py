"""Config files are validated once, and every error names the file, the key and what is allowed."""

from __future__ import annotations

import pytest

from pi_monitor.config import ConfigError, Settings, load_settings, settings_from_dict


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
        ({"detector": {"on_threshold": 0.3, "off_threshold": 0.5}}, r"detector\.off_threshold"),
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
