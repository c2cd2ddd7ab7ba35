"""docs/HOME_ASSISTANT.md (issue 16, part 4) against what the monitor announces: every entity id,
attribute, event field and blueprint input the guide names exists, so the guide cannot drift."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml
from ha_entities import (
    BLUEPRINTS,
    EXAMPLE_CONFIG,
    ROOT,
    discovered_entities,
    entity_ids_in,
    example_mqtt,
    load_blueprint,
)

from pi_monitor import cli
from pi_monitor.config import load_settings
from pi_monitor.events import CONTRACT_EVENTS, Reason
from pi_monitor.state import PACES

GUIDE = ROOT / "docs" / "HOME_ASSISTANT.md"
TEXT = GUIDE.read_text(encoding="utf-8")
YAML_BLOCKS = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", TEXT, re.S)]
CARD, AUTOMATIONS, RECORDER, PURGE = YAML_BLOCKS
ENTITIES = discovered_entities(example_mqtt())
DOMAINS = {e.domain for e in ENTITIES.values()}


def ids_in(node: Any) -> set[str]:
    return entity_ids_in(yaml.safe_dump(node, width=1000), DOMAINS)


def test_the_readme_links_the_guide() -> None:
    assert "(docs/HOME_ASSISTANT.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_entity_id_the_guide_names_is_one_home_assistant_derives_from_discovery() -> None:
    """The example device, the replay's own device and the guide's other device name."""
    settings = load_settings(EXAMPLE_CONFIG)
    replay = cli._replay_device(settings)
    other = dataclasses.replace(settings.mqtt, device_name="Baby room")
    known = set(ENTITIES) | set(discovered_entities(replay)) | set(discovered_entities(other))
    named = entity_ids_in(TEXT, DOMAINS)
    assert named - known == set()
    assert "event.nursery_monitor_replay_event" in named
    assert f"id `{replay.device_id}`" in TEXT and f'**"{replay.device_name}"**' in TEXT


def test_the_entity_table_explains_every_entity_by_its_id_and_name() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+\.[a-z0-9_]+)` \(\*\*([^*]+)\*\*", TEXT, re.M))
    assert rows == {entity_id: e.name for entity_id, e in ENTITIES.items()}


def test_the_event_table_lists_every_event_with_its_fields() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (`.*`) \|$", TEXT, re.M)
    listed = {kind: re.findall(r"`(\w+)`", fields) for kind, fields in rows}
    assert listed == {
        cls.type: [f.name for f in dataclasses.fields(cls)] for cls in CONTRACT_EVENTS
    }
    for reason in Reason:
        assert f"`{reason.value}`" in TEXT


def test_the_dashboard_card_shows_crying_tonight_next_check_in_and_the_controls() -> None:
    shown = ids_in(CARD)
    assert shown <= set(ENTITIES)
    wanted = {"Crying", "Crying tonight", "Next check-in", "Problem"}
    wanted |= {"Sleep session", "Check-in method", "Checked in", "Cry confirmation"}
    assert {ENTITIES[i].name for i in shown} >= wanted
    for entity_id, attribute in re.findall(r"state_attr\('([\w.]+)', '(\w+)'\)", str(CARD)):
        template = ENTITIES[entity_id].config["json_attributes_template"]
        assert f"'{attribute}':" in template


def test_the_automations_example_gives_each_blueprint_the_inputs_it_needs() -> None:
    used = {}
    for automation in AUTOMATIONS:
        path = automation["use_blueprint"]["path"]
        assert path.startswith("pi_monitor/")
        declared = load_blueprint(BLUEPRINTS / path.removeprefix("pi_monitor/"))["blueprint"]
        given = automation["use_blueprint"]["input"]
        required = {k for k, v in declared["input"].items() if "default" not in v}
        assert required <= set(given) <= set(declared["input"]), path
        assert ids_in(given) <= set(ENTITIES)
        used[path] = given
    assert set(used) == {f"pi_monitor/{p.name}" for p in BLUEPRINTS.glob("*.yaml")}


def test_the_recorder_advice_names_the_sensors_paced_by_how_much_they_move() -> None:
    """Those with a deadband: every other value is sent only when it changes or on a clock."""
    noisy = {
        entity_id
        for entity_id, e in ENTITIES.items()
        for key, pace in PACES.items()
        if pace.deadband > 0 and f"value_json.{key.value} " in e.config.get("value_template", "")
    }
    assert len(noisy) == 2
    assert set(RECORDER["recorder"]["exclude"]["entities"]) == noisy
    (purge,) = PURGE
    assert set(purge["action"][0]["target"]["entity_id"]) == noisy
