"""Settings: one TOML file, validated once at start-up.

Each section is a frozen dataclass; a field's metadata says what values it allows, so one
validator serves every section and every error names the key (`mqtt.port`) and the allowed values.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import os
import re
import stat
import tomllib
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pi_monitor.methods import MAX_CRYING_CAP_S, METHODS

# The shipped model, unit and config template are package data, so a wheel carries them as an
# editable checkout does; pip unpacks packages as plain files, which onnxruntime and systemd
# need (a path, not a zip member), so they lie beside this file (importlib.resources would say
# the same and bring zipfile into the live service's memory).
PACKAGE_DATA = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE_DATA / "models" / "cry.onnx"
# Where the service reads its settings (systemd's ConfigurationDirectory=pi-monitor).
DEFAULT_CONFIG = Path("/etc/pi-monitor/config.toml")
# Longest confirmation a parent may set: with the first model, at 3 s the held-out test reported
# under a third of its cries at all (71 % at 0.5 s, 45 % at 2 s; the model card's git history).
MIN_BOUT_MAX_S = 2.0
MIN_BOUT_STEP_S = 0.25  # Home Assistant's number entity offers (and accepts) these steps only
# The classifier's score is a calibrated probability. Below 0.5 it says "more likely not a cry",
# so a lower on-threshold reports what the model itself rejects (at 0, silence is crying). Above
# 0.99 the monitor goes deaf: 23 % of cry windows reach 0.99 (0.1 % of non-cry ones), 2 % reach
# 0.999 (bench/bench_thresholds.py on the corpus), and 1.0 needs a saturated score.
ON_THRESHOLD_RANGE = (0.5, 0.99)
# A bout ends once no window reaches the off-threshold for merge_gap_s. Silence and white-noise
# machines reach 0.05 in up to 76 % of windows and 0.1 in 10 %, never 0.2 in the same sample:
# lower, a bout can run on all night in a quiet nursery (at 0 it never ends).
OFF_THRESHOLD_MIN = 0.2
# The level meter reads nothing below -120 dBFS (health.LEVEL_FLOOR_DBFS): a floor at or below
# that would never call a dead microphone silent. Above -40 dBFS a quiet room counts as silent.
SILENCE_FLOOR_RANGE_DBFS = (-110.0, -40.0)
# A config file is a few kB; anything this large is not one (and /dev/zero must not be read).
CONFIG_MAX_BYTES = 1 << 20


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message names the file or key and the fix."""


def setting(
    default: Any,
    doc: str,
    *,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
) -> Any:
    """A field with its documentation and allowed values, read by `_build`."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max}
    if isinstance(default, list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelSettings:
    path: str = setting(str(DEFAULT_MODEL), "ONNX cry classifier; its metadata sets the features")
    threads: int = setting(1, "onnxruntime intra-op threads (1 keeps a Pi core free)", min=1, max=8)


@dataclass(frozen=True)
class DetectorSettings:
    on_threshold: float | None = setting(
        None,
        "score that starts a bout; unset = the model's recommendation",
        min=ON_THRESHOLD_RANGE[0],
        max=ON_THRESHOLD_RANGE[1],
    )
    off_threshold: float | None = setting(
        None,
        "score below which a bout may end; unset = model's or 0.6 x on",
        min=OFF_THRESHOLD_MIN,
        max=ON_THRESHOLD_RANGE[1],
    )
    min_bout_s: float = setting(
        0.75,
        "crying the model is not sure of must last this long before cry_onset",
        min=0.0,
        max=MIN_BOUT_MAX_S,
    )
    sure_threshold: float | None = setting(
        None,
        "a score this sure reports crying at once, without min_bout_s; unset = the model's, "
        "1 = every bout waits",
        min=ON_THRESHOLD_RANGE[0],
        max=1.0,
    )
    merge_gap_s: float = setting(
        3.0, "pauses shorter than this (breaths, sobs) do not end a bout", min=0.0, max=120.0
    )


@dataclass(frozen=True)
class AudioSettings:
    device: str = setting("", "input device name (substring) or index; empty = system default")
    sample_rate: int = setting(
        0,
        "capture rate in Hz; 0 = the model's rate if the device takes it, else the device default",
        min=0,
        max=192000,
    )
    block_s: float = setting(0.1, "seconds per capture block", min=0.01, max=1.0)
    queue_blocks: int = setting(
        100, "blocks buffered between callback and pipeline", min=4, max=10000
    )
    silence_floor_dbfs: float = setting(
        -90.0,
        "input below this level counts as silent",
        min=SILENCE_FLOOR_RANGE_DBFS[0],
        max=SILENCE_FLOOR_RANGE_DBFS[1],
    )
    silence_timeout_s: float = setting(
        60.0, "silent or stuck input for this long raises mic_silent", min=5.0, max=3600.0
    )
    lost_after_s: float = setting(
        10.0, "no audio from the device for this long raises mic_lost", min=1.0, max=25.0
    )
    retry_max_s: float = setting(
        10.0, "longest wait between attempts to reopen a lost device", min=0.5, max=25.0
    )


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = setting(False, "publish events and states to an MQTT broker")
    host: str = setting("localhost", "broker host name or address")
    port: int = setting(1883, "broker TCP port", min=1, max=65535)
    client_id: str = setting(
        "", "MQTT client id (at most 256 bytes); empty = pi-monitor-<device_id>"
    )
    username: str = setting("", "broker user name; empty = anonymous")
    password: str = setting("", "broker password")
    tls: bool = setting(False, "connect with TLS")
    ca_file: str = setting("", "CA certificate file for TLS; empty = system CAs")
    cert_file: str = setting("", "client certificate file for TLS")
    key_file: str = setting("", "client key file for TLS")
    keepalive_s: int = setting(30, "MQTT keepalive in seconds", min=5, max=3600)
    topic_prefix: str = setting(
        "pi_monitor", "topics are <topic_prefix>/<device_id>/... (at most 256 bytes)"
    )
    device_id: str = setting("nursery", "device id in topics and unique ids (1-64 of a-z0-9_-)")
    device_name: str = setting("Nursery monitor", "device name shown in Home Assistant")
    discovery_prefix: str = setting("homeassistant", "Home Assistant discovery prefix")
    queue_max_events: int = setting(
        10000,
        "events kept on disk while the broker is away; oldest dropped beyond",
        min=10,
        max=10_000_000,
    )
    inflight_max: int = setting(
        20, "events sent but not yet acknowledged (PUBACK) at any time", min=1, max=1000
    )
    reconnect_min_s: float = setting(
        1.0, "first reconnection delay; doubles per failed attempt", min=0.05, max=60.0
    )
    reconnect_max_s: float = setting(
        60.0, "longest delay between reconnection attempts", min=0.1, max=3600.0
    )


DEFAULT_GRADUATED_MINUTES = [
    [3, 5, 10],
    [5, 10, 12],
    [10, 12, 15],
    [12, 15, 17],
    [15, 17, 20],
    [17, 20, 25],
    [20, 25, 30],
]


@dataclass(frozen=True)
class CheckinSettings:
    method: str = setting(
        "responsive",
        "sleep-training method",
        choices=METHODS,
    )
    birth_date: str = setting("", "baby's birth date YYYY-MM-DD (required for extinction methods)")
    settle_s: float = setting(300.0, "quiet this long ends a waking", min=10.0, max=3600.0)
    max_crying_s: float = setting(
        1800.0,
        "crying without settling beyond this raises escalation (safety cap, at most 60 min)",
        min=60.0,
        max=MAX_CRYING_CAP_S,
    )
    graduated_minutes: list[list[float]] = setting(
        DEFAULT_GRADUATED_MINUTES, "check-in minutes per night; the last row and value repeat"
    )
    responsive_step_s: float = setting(
        120.0, "responsive: crying this long after a check-in climbs the soothing ladder", min=10.0
    )
    fading_step: str = setting("", "tonight's fading step, e.g. 'chair by the door'")


def check_checkin(c: CheckinSettings) -> None:
    """Rules of the `checkin` section that no field range expresses (NaN passes a range check)."""
    if c.method not in METHODS:
        raise ConfigError(f"'checkin.method' = {c.method!r}: choose one of {', '.join(METHODS)}")
    for key in ("settle_s", "max_crying_s", "responsive_step_s"):
        value = getattr(c, key)
        if not math.isfinite(value):
            raise ConfigError(f"'checkin.{key}' = {value} must be a finite number of seconds")
    if not 0 < c.max_crying_s <= MAX_CRYING_CAP_S:
        raise ConfigError(
            f"'checkin.max_crying_s' = {c.max_crying_s} is not allowed: the crying cap is a safety "
            f"limit of at most {MAX_CRYING_CAP_S:.0f} s (60 min); set it lower"
        )
    rows = c.graduated_minutes
    if not rows or not all(rows):
        raise ConfigError("'checkin.graduated_minutes' needs at least one night of intervals")
    for night, row in enumerate(rows, 1):
        for m in row:
            if not (isinstance(m, int | float) and math.isfinite(m) and 0 < m <= 60):
                raise ConfigError(
                    f"'checkin.graduated_minutes' night {night}: {m!r} must be minutes in (0, 60]"
                )
    if c.birth_date:
        try:
            datetime.date.fromisoformat(c.birth_date)
        except ValueError:
            raise ConfigError(
                f"'checkin.birth_date' = {c.birth_date!r} is not a date; write it as YYYY-MM-DD"
            ) from None


@dataclass(frozen=True)
class ServiceSettings:
    state_dir: str = setting("/var/lib/pi-monitor", "night log and MQTT queue live here")
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    checkin: CheckinSettings = field(default_factory=CheckinSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)


def load_settings(path: str | Path | None) -> Settings:
    """Read and validate a TOML file; None gives the defaults."""
    if path is None:
        return Settings()
    path = Path(path)
    raw = read_small_file(path, str(path), "config file", CONFIG_MAX_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax") from None
    try:
        return settings_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def read_small_file(path: Path, label: str, kind: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; ConfigError naming `label` otherwise."""
    with _open_small_file(path, label, kind, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"{label}: over {max_bytes} bytes: not a {kind}; give the right file")
    return data


def check_small_file(path: Path, label: str, kind: str, max_bytes: int) -> None:
    """`read_small_file`'s checks without reading, for files another library opens by name."""
    _open_small_file(path, label, kind, max_bytes).close()


def _open_small_file(path: Path, label: str, kind: str, max_bytes: int) -> typing.BinaryIO:
    """`path` opened for reading if it is a regular file of at most `max_bytes`.

    Opened without blocking and checked before a byte is read, so a FIFO cannot hang the caller
    and a device such as /dev/zero cannot fill its memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{label}: {kind} not found; check the path") from None
    except OSError as e:
        raise ConfigError(
            f"{label}: cannot read the {kind} ({e.strerror}); check the file and its permissions"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"{label}: not a regular file (a directory, FIFO or device); give the {kind} itself"
            )
        raise ConfigError(
            f"{label}: {info.st_size} bytes, over the {max_bytes} a {kind} may have; "
            "give the right file"
        )
    return os.fdopen(fd, "rb")


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Validate a parsed TOML document into `Settings`."""
    settings = _build(Settings, data, "")
    _check_cross_fields(settings)
    return settings


def choice_value(settings: Settings, key: str) -> Any:
    """The value of the setting `key` ("section.name") in `settings`."""
    section_name, name = key.split(".")
    return getattr(getattr(settings, section_name), name)


def with_choice(settings: Settings, key: str, value: Any) -> Settings:
    """`settings` with the setting `key` set to `value`, checked exactly as the config file's."""
    section_name, name = key.split(".")
    section = getattr(settings, section_name)
    hint = typing.get_type_hints(type(section))[name]
    meta = {f.name: f for f in dataclasses.fields(section)}[name].metadata
    section = dataclasses.replace(section, **{name: _check_value(key, value, hint, meta)})
    changed = dataclasses.replace(settings, **{section_name: section})
    _check_cross_fields(changed)
    return changed


def _build(cls: type, table: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}'; allowed keys in {where}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in table.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key + ".")
        else:
            values[name] = _check_value(key, value, hint, fields[name].metadata)
    return cls(**values)


def _check_value(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    if not _is_instance(value, hint):
        raise ConfigError(f"'{key}' must be {_describe(hint)}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = meta.get("min"), meta.get("max")
        # Written so NaN (which compares false with everything) is out of range too.
        if (lo is not None and not value >= lo) or (hi is not None and not value <= hi):
            raise ConfigError(f"'{key}' = {value} is out of range; allowed {lo} to {hi}")
        if _accepts_float(hint):
            value = float(value)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"'{key}' = {value!r} is not allowed; choose one of {', '.join(choices)}")
    return value


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_is_instance(v, item) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _accepts_float(hint: Any) -> bool:
    return hint is float or float in typing.get_args(hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        hint, str(hint)
    )


def _check_cross_fields(settings: Settings) -> None:
    """Rules that span keys; each names the keys involved."""
    _check_mqtt(settings.mqtt)
    d = settings.detector
    both = d.on_threshold is not None and d.off_threshold is not None
    if both and d.off_threshold > d.on_threshold:
        raise ConfigError(
            f"'detector.off_threshold' ({d.off_threshold}) must not exceed "
            f"'detector.on_threshold' ({d.on_threshold})"
        )
    both = d.on_threshold is not None and d.sure_threshold is not None
    if both and d.sure_threshold < d.on_threshold:
        raise ConfigError(
            f"'detector.sure_threshold' ({d.sure_threshold}) must not be below "
            f"'detector.on_threshold' ({d.on_threshold}); 1 makes every bout wait"
        )
    check_checkin(settings.checkin)


# What MQTT and paho accept, with room to spare: a string field of a packet holds at most
# 65,535 bytes (paho fails on its own thread beyond that), and the client id, device id and
# prefixes are joined into longer topics and ids (the replay adds "-replay" to the client id).
MQTT_STRING_MAX_BYTES = 65535
CLIENT_ID_MAX_BYTES = 256
DEVICE_ID_MAX_CHARS = 64
TOPIC_PREFIX_MAX_BYTES = 256
HOST_MAX_CHARS = 253  # the longest DNS name


def _check_mqtt(m: MqttSettings) -> None:
    """Limits of MQTT and paho, checked here so that nothing fails later on the MQTT thread;
    topic parts must not break topics; TLS files only mean something with TLS on."""
    if not re.fullmatch(rf"[a-z0-9_-]{{1,{DEVICE_ID_MAX_CHARS}}}", m.device_id):
        raise ConfigError(
            f"'mqtt.device_id' = {_shorten(m.device_id)}: use 1 to {DEVICE_ID_MAX_CHARS} of "
            "a-z, 0-9, '_' and '-' (e.g. 'nursery')"
        )
    if not m.host or len(m.host) > HOST_MAX_CHARS or any(c.isspace() for c in m.host):
        raise ConfigError(
            f"'mqtt.host' = {_shorten(m.host)}: give a host name or address of 1 to "
            f"{HOST_MAX_CHARS} characters without spaces"
        )
    _check_mqtt_string("client_id", m.client_id, CLIENT_ID_MAX_BYTES)
    _check_mqtt_string("username", m.username, MQTT_STRING_MAX_BYTES)
    _check_mqtt_string("password", m.password, MQTT_STRING_MAX_BYTES, text=False)
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(m, key)
        _check_mqtt_string(key, value, TOPIC_PREFIX_MAX_BYTES)
        if not value or any(c in value for c in "+#") or "" in value.split("/"):
            raise ConfigError(
                f"'mqtt.{key}' = {_shorten(value)}: must be a non-empty topic without '+', '#', "
                "empty levels ('//') or leading/trailing '/'"
            )
    files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(m, k)]
    if files and not m.tls:
        raise ConfigError(f"'mqtt.{files[0]}' is set but 'mqtt.tls' is false; set mqtt.tls = true")
    if m.key_file and not m.cert_file:
        raise ConfigError("'mqtt.key_file' needs 'mqtt.cert_file' (the client certificate)")
    if m.reconnect_min_s > m.reconnect_max_s:
        raise ConfigError(
            f"'mqtt.reconnect_min_s' ({m.reconnect_min_s}) must not exceed "
            f"'mqtt.reconnect_max_s' ({m.reconnect_max_s})"
        )


def _check_mqtt_string(key: str, value: str, max_bytes: int, *, text: bool = True) -> None:
    """An MQTT string: at most `max_bytes` of UTF-8 and, where it is `text`, no control characters
    (brokers drop the connection for U+0000). The value is not echoed: it may be a password."""
    size = len(value.encode())
    if size > max_bytes:
        raise ConfigError(
            f"'mqtt.{key}' is {size} bytes long; allowed at most {max_bytes} bytes (UTF-8)"
        )
    bad = [(i, c) for i, c in enumerate(value) if unicodedata.category(c) == "Cc"]
    if text and bad:
        raise ConfigError(
            f"'mqtt.{key}' has control character {bad[0][1]!r} at position {bad[0][0]}; "
            "allowed: printable characters only"
        )


def _shorten(value: str, keep: int = 40) -> str:
    """A value for an error line: a 70,000-character client id must not fill the journal."""
    return repr(value) if len(value) <= keep else f"{value[:keep]!r}... ({len(value)} characters)"
