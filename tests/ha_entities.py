"""What Home Assistant makes of the monitor's discovery, for the tests of the blueprints and the
Home Assistant guide: entity ids as HA derives them, and YAML read as HA reads it (`!input`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pi_monitor.config import MqttSettings, load_settings
from pi_monitor.discovery import discovery_configs
from pi_monitor.install import TEMPLATES

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINTS = ROOT / "homeassistant" / "blueprints" / "automation" / "pi_monitor"
EXAMPLE_CONFIG = TEMPLATES / "config.toml.example"
ENTITY_ID = re.compile(r"\b([a-z_]+)\.([a-z0-9_]+)\b")


@dataclass(frozen=True)
class Input:
    """A blueprint's `!input name`, which HA replaces with the value the user gave."""

    name: str


class BlueprintLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus HA's `!input` tag."""


BlueprintLoader.add_constructor("!input", lambda loader, node: Input(loader.construct_scalar(node)))


def load_blueprint(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=BlueprintLoader)


def slugify(text: str) -> str:
    """HA's slug of an ASCII name: lower case, each run of other characters one `_`."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@dataclass(frozen=True)
class Entity:
    """One discovered entity as HA shows it."""

    entity_id: str
    domain: str
    name: str
    config: dict[str, Any]

    @property
    def device_class(self) -> str | None:
        return self.config.get("device_class")


def example_mqtt() -> MqttSettings:
    """The [mqtt] section of the config template, whose device name the docs' ids use."""
    return load_settings(EXAMPLE_CONFIG).mqtt


def discovered_entities(settings: MqttSettings) -> dict[str, Entity]:
    """Entity id -> entity: HA names an MQTT entity of a named device "<device> <entity>" and
    derives its id from that name (discovery.py)."""
    entities = {}
    for topic, config in discovery_configs(settings).items():
        domain = topic.split("/")[1]
        slug = slugify(f"{config['device']['name']} {config['name']}")
        entity = Entity(f"{domain}.{slug}", domain, config["name"], config)
        entities[entity.entity_id] = entity
    return entities


def entity_ids_in(text: str, domains: set[str]) -> set[str]:
    """Every `domain.object_id` in `text` whose domain is one of `domains`."""
    return {m.group(0) for m in ENTITY_ID.finditer(text) if m.group(1) in domains}
