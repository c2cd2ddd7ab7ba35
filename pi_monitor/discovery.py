"""MQTT topics and Home Assistant discovery payloads for one monitor (pure, no I/O).

All entities hang off one HA device and read the retained `<base>/state` JSON through value
templates, so one retained message restores every sensor after a restart. Unique ids depend on
the configured device id only, so they stay the same across restarts and re-installs. HA names
each entity "<device name> <entity name>" (entity ids alike), so entity names never repeat the
device's ("Problem", not "Monitor problem": `binary_sensor.nursery_monitor_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pi_monitor import __version__
from pi_monitor.config import MIN_BOUT_MAX_S, MIN_BOUT_STEP_S, MqttSettings
from pi_monitor.events import EVENT_TYPES
from pi_monitor.methods import METHODS
from pi_monitor.state import Key

ONLINE, OFFLINE = "online", "offline"
HA_STATUS_SUFFIX = "status"


@dataclass(frozen=True)
class Topics:
    """Every topic the publisher uses, derived from the settings once."""

    base: str
    discovery_prefix: str

    @classmethod
    def from_settings(cls, s: MqttSettings) -> Topics:
        return cls(base=f"{s.topic_prefix}/{s.device_id}", discovery_prefix=s.discovery_prefix)

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def crying(self) -> str:
        return f"{self.base}/crying"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def commands(self) -> str:
        """Subscription filter for every command topic."""
        return f"{self.base}/set/+"

    def command(self, name: str) -> str:
        return f"{self.base}/set/{name}"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/{HA_STATUS_SUFFIX}"

    def config(self, component: str, device_id: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{device_id}/{object_id}/config"


def _state_value(key: Key) -> str:
    return "{{ value_json." + key + " }}"


def _state_on_off(key: Key) -> str:
    return "{{ 'ON' if value_json." + key + " else 'OFF' }}"


def _state_attributes(**keys: Key) -> str:
    """An entity's attributes: attribute name -> state key."""
    pairs = ", ".join(f"'{name}': value_json.{key}" for name, key in keys.items())
    return "{{ {" + pairs + "} | tojson }}"


def discovery_configs(settings: MqttSettings) -> dict[str, dict[str, Any]]:
    """Config topic -> retained discovery payload, one per entity."""
    topics = Topics.from_settings(settings)
    dev = settings.device_id
    device = {
        "identifiers": [f"pi_monitor_{dev}"],
        "name": settings.device_name,
        "manufacturer": "pi-monitor",
        "model": "pi-monitor cry detector",
        "sw_version": __version__,
    }
    origin = {"name": "pi-monitor", "sw_version": __version__}
    state = topics.state
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "binary_sensor",
            "crying",
            {
                "name": "Crying",
                "device_class": "sound",
                "icon": "mdi:emoticon-cry-outline",
                "state_topic": topics.crying,
            },
        ),
        (
            "binary_sensor",
            "problem",
            {
                "name": "Problem",
                "device_class": "problem",
                "entity_category": "diagnostic",
                "state_topic": state,
                "value_template": _state_on_off(Key.PROBLEM),
                "json_attributes_topic": state,
                "json_attributes_template": _state_attributes(detail=Key.PROBLEM_DETAIL),
            },
        ),
        ("sensor", "cry_duration", _duration("Current cry duration", state, Key.CRY_S)),
        ("sensor", "last_cry_duration", _duration("Last cry duration", state, Key.LAST_CRY_S)),
        (
            "sensor",
            "cry_score",
            {
                "name": "Cry score",
                "state_topic": state,
                "value_template": _state_value(Key.SCORE),
                "state_class": "measurement",
                "suggested_display_precision": 2,
            },
        ),
        (
            "sensor",
            "sound_level",
            {
                "name": "Sound level",
                "state_topic": state,
                "value_template": _state_value(Key.LEVEL_DBFS),
                "unit_of_measurement": "dBFS",
                "state_class": "measurement",
                "suggested_display_precision": 1,
            },
        ),
        (
            "sensor",
            "tonight_crying",
            {
                **_duration("Crying tonight", state, Key.TONIGHT_CRY_MIN),
                "unit_of_measurement": "min",
            },
        ),
        (
            "sensor",
            "next_checkin",
            {
                "name": "Next check-in",
                "device_class": "timestamp",
                "state_topic": state,
                "value_template": _state_value(Key.NEXT_CHECKIN),
            },
        ),
        (
            "event",
            "events",
            {
                "name": "Event",
                "state_topic": topics.event,
                "event_types": list(EVENT_TYPES),
            },
        ),
        (
            "select",
            "checkin_method",
            {
                "name": "Check-in method",
                "icon": "mdi:human-male-female-child",
                "options": list(METHODS),
                "command_topic": topics.command("method"),
                "state_topic": state,
                "value_template": _state_value(Key.METHOD),
            },
        ),
        (
            "number",
            "cry_confirmation",
            {
                "name": "Cry confirmation",
                "icon": "mdi:timer-sand",
                "entity_category": "config",
                "command_topic": topics.command("min_bout_s"),
                "state_topic": state,
                "value_template": _state_value(Key.MIN_BOUT_S),
                "min": 0.0,
                "max": MIN_BOUT_MAX_S,
                "step": MIN_BOUT_STEP_S,
                "mode": "box",
                "unit_of_measurement": "s",
            },
        ),
        (
            "switch",
            "sleep_session",
            {
                "name": "Sleep session",
                "icon": "mdi:sleep",
                "command_topic": topics.command("session"),
                "payload_on": "ON",
                "payload_off": "OFF",
                "state_topic": state,
                "value_template": _state_on_off(Key.SESSION),
            },
        ),
        (
            "button",
            "checked_in",
            {
                "name": "Checked in",
                "icon": "mdi:account-check",
                "command_topic": topics.command("checked_in"),
                "payload_press": "PRESS",
            },
        ),
    ]
    return {
        topics.config(component, dev, object_id): {
            **body,
            "unique_id": f"pi_monitor_{dev}_{object_id}",
            "availability_topic": topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
            "origin": origin,
        }
        for component, object_id, body in entities
    }


def _duration(name: str, state_topic: str, key: Key) -> dict[str, Any]:
    return {
        "name": name,
        "device_class": "duration",
        "unit_of_measurement": "s",
        "state_class": "measurement",
        "state_topic": state_topic,
        "value_template": _state_value(key),
    }
