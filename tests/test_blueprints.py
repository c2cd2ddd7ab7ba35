"""The Home Assistant blueprints (issue 16, part 3) against HA's blueprint schema and against what
the monitor announces: renaming an entity, an event, one of its fields or an escalation reason
breaks these tests until the blueprints follow."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from ha_entities import (
    BLUEPRINTS,
    Entity,
    Input,
    discovered_entities,
    entity_ids_in,
    example_mqtt,
    load_blueprint,
)

from pi_monitor.config import DetectorSettings
from pi_monitor.events import CONTRACT_EVENTS, EVENT_TYPES, Reason

FILES = sorted(BLUEPRINTS.glob("*.yaml"))
# The automation schema's keys (HA's classic spelling, used throughout), besides `blueprint`.
AUTOMATION_KEYS = {"trigger", "condition", "action", "mode", "max", "max_exceeded", "variables"}
AUTOMATION_KEYS |= {"trigger_variables"}
MODES = {"single", "restart", "queued", "parallel"}
EVENT_ATTRIBUTE = re.compile(r"trigger\.to_state\.attributes\.(?:get\('(\w+)'|(\w+))")
EVENT_TYPE_TEST = re.compile(r"attributes\.event_type == '(\w+)'")
FIELDS = {cls.type: {f.name for f in dataclasses.fields(cls)} for cls in CONTRACT_EVENTS}


def walk(node: Any) -> Iterator[Any]:
    """Every mapping, list and scalar in a loaded YAML document."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def templates(node: Any) -> str:
    return "\n".join(s for s in walk(node) if isinstance(s, str))


def entity_inputs(bp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Input name -> its entity selector's one filter."""
    found = {}
    for name, spec in bp["blueprint"]["input"].items():
        if "entity" in spec["selector"]:
            (only,) = spec["selector"]["entity"]["filter"]
            found[name] = only
    return found


def announced_entity(bp: dict[str, Any], name: str) -> Entity:
    """The monitor's entity an input asks for, by the id its description gives as the example."""
    spec = bp["blueprint"]["input"][name]
    entities = discovered_entities(example_mqtt())
    (example,) = entity_ids_in(spec["description"], {e.domain for e in entities.values()})
    assert example in entities, f"input {name!r} names {example}, which the monitor does not have"
    return entities[example]


@pytest.fixture(params=FILES, ids=[p.stem for p in FILES])
def blueprint(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_blueprint(request.param)


def by_stem(stem: str) -> dict[str, Any]:
    return load_blueprint(BLUEPRINTS / f"{stem}.yaml")


def test_the_blueprints_are_the_four_the_guide_describes() -> None:
    stems = {p.stem for p in FILES}
    assert stems == {"crying", "checkin_due", "monitor_down", "escalation"}
    guide = (BLUEPRINTS.parents[3] / "docs" / "HOME_ASSISTANT.md").read_text(encoding="utf-8")
    for path in FILES:
        assert f"homeassistant/blueprints/automation/pi_monitor/{path.name}" in guide


def test_every_blueprint_has_the_keys_home_assistant_requires(blueprint: dict[str, Any]) -> None:
    meta = blueprint["blueprint"]
    assert isinstance(meta["name"], str) and meta["name"].startswith("pi-monitor: ")
    assert isinstance(meta["description"], str) and meta["description"]
    assert meta["domain"] == "automation"
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", meta["homeassistant"]["min_version"])
    assert set(blueprint) - {"blueprint"} <= AUTOMATION_KEYS
    assert blueprint["trigger"] and blueprint["action"]
    assert blueprint["mode"] in MODES
    for name, spec in meta["input"].items():
        assert re.fullmatch(r"[a-z_]+", name)
        assert spec["name"] and spec["description"], f"input {name} needs a name and description"
        assert "selector" in spec or "default" in spec, f"input {name}: selector or default"
    for trigger in walk(blueprint["trigger"]):
        assert not isinstance(trigger, dict) or "trigger" not in trigger, "classic keys only"


def test_every_input_tag_names_a_declared_input_and_every_input_is_used(
    blueprint: dict[str, Any],
) -> None:
    declared = set(blueprint["blueprint"]["input"])
    body = {k: v for k, v in blueprint.items() if k != "blueprint"}
    used = {node.name for node in walk(body) if isinstance(node, Input)}
    assert used <= declared, f"!input of undeclared inputs: {used - declared}"
    assert declared <= used, f"inputs never used: {declared - used}"


def test_every_entity_input_selects_an_entity_the_monitor_announces(
    blueprint: dict[str, Any],
) -> None:
    """Filtered to MQTT entities of the right domain and device class, and its description's
    example id is the one HA derives from discovery, so renaming the entity fails here."""
    inputs = entity_inputs(blueprint)
    assert inputs
    for name, only in inputs.items():
        entity = announced_entity(blueprint, name)
        assert only["integration"] == "mqtt"
        assert only["domain"] == entity.domain
        assert only.get("device_class") == entity.device_class
        assert f"**{entity.name}**" in blueprint["blueprint"]["input"][name]["description"]


def test_every_phone_input_is_a_companion_app_device(blueprint: dict[str, Any]) -> None:
    selector = blueprint["blueprint"]["input"]["phone"]["selector"]
    assert selector == {"device": {"filter": [{"integration": "mobile_app"}]}}
    (notify,) = [n for n in walk(blueprint["action"]) if isinstance(n, dict) and "type" in n]
    assert notify["domain"] == "mobile_app" and notify["type"] == "notify"
    assert notify["device_id"] == Input("phone")


def test_every_event_type_and_field_the_blueprints_read_is_in_the_event_contract(
    blueprint: dict[str, Any],
) -> None:
    text = templates(blueprint)
    kinds = set(EVENT_TYPE_TEST.findall(text))
    assert kinds <= set(EVENT_TYPES)
    fields = {"event_type"}.union(*(FIELDS[kind] for kind in kinds))
    for name in entity_inputs(blueprint):
        entity = announced_entity(blueprint, name)
        fields |= set(re.findall(r"'(\w+)':", entity.config.get("json_attributes_template", "")))
    read = {a or b for a, b in EVENT_ATTRIBUTE.findall(text)}
    assert read, "reads nothing of what triggered it"
    assert read <= fields, f"reads {read - fields}, which no event or entity carries"


@pytest.mark.parametrize(
    "stem, kind",
    [("crying", "cry_end"), ("checkin_due", "checkin_due"), ("escalation", "escalation")],
)
def test_each_event_blueprint_acts_on_its_own_event_and_not_on_a_restored_one(
    stem: str, kind: str
) -> None:
    """HA shows an event entity's last event again when the monitor comes back (from
    `unavailable`) and when HA starts (no previous state): neither is a new event."""
    bp = by_stem(stem)
    (event_trigger,) = [t for t in bp["trigger"] if t["entity_id"] == Input("events")]
    assert event_trigger["not_from"] == "unavailable"
    condition = templates(bp["condition"])
    assert "trigger.from_state and trigger.to_state" in condition
    assert EVENT_TYPE_TEST.findall(condition) == [kind]


def test_crying_notifies_after_the_chosen_time_counted_from_the_cry_and_when_it_ends() -> None:
    bp = by_stem("crying")
    cry_s = bp["blueprint"]["input"]["cry_s"]
    assert cry_s["default"] == DetectorSettings().min_bout_s
    crying, ended = bp["trigger"]
    assert crying["entity_id"] == Input("crying") and crying["to"] == "on"
    assert ended["entity_id"] == Input("events")
    # Crying turns on once a cry has lasted the confirmation time: the trigger waits the rest.
    assert "cry_s - (states(confirmation)" in crying["for"]["seconds"]
    assert bp["trigger_variables"] == {
        "cry_s": Input("cry_s"),
        "confirmation": Input("confirmation"),
    }
    assert "duration_s >= cry_s" in templates(bp["condition"])
    assert announced_entity(bp, "confirmation").config["unit_of_measurement"] == "s"


def test_the_check_in_notification_carries_its_number_method_and_wait_and_presses_checked_in() -> (
    None
):
    bp = by_stem("checkin_due")
    assert announced_entity(bp, "checked_in").name == "Checked in"
    variables, notify, wait, press = bp["action"]
    said = templates(notify)
    for field in ("checkin", "method"):
        assert f"attributes.{field}" in said
    assert "waited" in said and "attributes.waited_s" in templates(variables)
    action_id = variables["variables"]["checked_in_action"]
    assert "context.id" in action_id, "an action id of its own for every notification"
    (button,) = notify["data"]["actions"]
    assert button == {"action": "{{ checked_in_action }}", "title": "Checked in"}
    (answer,) = wait["wait_for_trigger"]
    assert answer["event_type"] == "mobile_app_notification_action"
    assert answer["event_data"] == {"action": "{{ checked_in_action }}"}
    assert wait["continue_on_timeout"] is False
    assert press == {"service": "button.press", "target": {"entity_id": Input("checked_in")}}
    assert bp["mode"] == "restart", "a newer check-in replaces the older one's wait"


def test_a_dead_monitor_and_a_problem_both_notify() -> None:
    """A dead monitor leaves `offline` (its last will): every entity is unavailable, and the
    problem sensor never turns on. The blueprint must catch both."""
    bp = by_stem("monitor_down")
    unavailable, problem = bp["trigger"]
    assert unavailable["entity_id"] == problem["entity_id"] == Input("problem")
    assert unavailable["to"] == "unavailable"
    assert unavailable["for"] == {"minutes": Input("unavailable_minutes")}
    assert problem["to"] == "on"
    assert "condition" not in bp
    assert announced_entity(bp, "problem").config["availability_topic"].endswith("/availability")


def test_every_escalation_notifies_whatever_its_reason() -> None:
    bp = by_stem("escalation")
    assert set(bp["blueprint"]["input"]) == {"events", "phone"}, "nothing can silence one"
    assert set(bp["variables"]["titles"]) == {r.value for r in Reason}
    assert "reason" not in templates(bp["condition"])
    assert "titles.get(reason, " in templates(bp["action"]), "a new reason still notifies"
    assert bp["mode"] == "queued"


def test_no_blueprint_hard_codes_an_entity(blueprint: dict[str, Any]) -> None:
    """Entities come from inputs; an id written out would fit one device name only."""
    body = templates({k: v for k, v in blueprint.items() if k != "blueprint"})
    for entity_id in discovered_entities(example_mqtt()):
        assert entity_id not in body
