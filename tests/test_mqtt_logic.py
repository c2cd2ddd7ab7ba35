"""Pure MQTT pieces: command parsing, the state and its pacing, discovery, reconnection backoff."""

from __future__ import annotations

import datetime
import logging
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from pi_monitor.backoff import Backoff
from pi_monitor.checkin import CheckinCoach
from pi_monitor.commands import (
    COMMAND_NAMES,
    CheckedIn,
    CommandError,
    SessionEnd,
    SessionStart,
    SetMethod,
    SetMinBout,
    parse_command,
)
from pi_monitor.config import MIN_BOUT_MAX_S, CheckinSettings, MqttSettings
from pi_monitor.discovery import Topics, discovery_configs
from pi_monitor.events import EVENT_TYPES, CryEnd, CryOnset, Escalation, Score
from pi_monitor.methods import METHODS as CHECKIN_METHODS
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.state import MonitorState, StatePacer, coached, heard, with_problem


@pytest.mark.parametrize(
    ("name", "payload", "command"),
    [
        ("method", b"graduated", SetMethod("graduated")),
        ("method", b" fading\n", SetMethod("fading")),
        ("session", b"ON", SessionStart()),
        ("session", b"OFF", SessionEnd()),
        ("checked_in", b"PRESS", CheckedIn()),
        ("min_bout_s", b"1.25", SetMinBout(1.25)),
        ("min_bout_s", b"2", SetMinBout(2.0)),
    ],
)
def test_valid_commands_parse(name, payload, command):
    assert parse_command(name, payload) == command


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("method", b"bogus", "not one of"),
        ("method", b"\xff", "UTF-8"),
        ("method", b"x" * 65, "too long"),
        ("session", b"on", "not ON or OFF"),
        ("checked_in", b"", "not PRESS"),
        ("reboot", b"PRESS", "unknown command"),
        ("min_bout_s", b"soon", "not a number"),
        ("min_bout_s", b"2.25", "out of range"),
        ("min_bout_s", b"-0.5", "out of range"),
        ("min_bout_s", b"nan", "out of range"),
        ("min_bout_s", b"0.3", "not a multiple of 0.25"),
    ],
)
def test_invalid_commands_are_rejected_with_a_reason(name, payload, reason):
    with pytest.raises(CommandError, match=reason):
        parse_command(name, payload)


@given(st.sampled_from((*COMMAND_NAMES, "x", "")), st.binary(max_size=200))
def test_any_payload_either_parses_or_raises_command_error(name, payload):
    try:
        command = parse_command(name, payload)
    except CommandError:
        return
    if isinstance(command, SetMinBout):
        assert 0.0 <= command.seconds <= MIN_BOUT_MAX_S
        return
    assert payload.strip(b" \t\r\n") in (
        b"PRESS",
        b"ON",
        b"OFF",
        *(m.encode() for m in CHECKIN_METHODS),
    )
    assert isinstance(command, SetMethod | SessionStart | SessionEnd | CheckedIn)


def test_all_methods_are_selectable():
    assert set(CHECKIN_METHODS) == {"extinction", "graduated", "responsive", "fading"}
    for method in CHECKIN_METHODS:
        assert parse_command("method", method.encode()) == SetMethod(method)


def test_a_cry_bout_updates_the_durations_and_the_last_cry():
    s = heard(MonitorState(session=True), CryOnset(t=100.0, emitted_t=101.0, score=0.9))
    assert s.crying and s.cry_s == 1.0
    s = heard(s, Score(t=130.0, score=0.8, logit=1.4))
    assert s.cry_s == 30.0 and s.score == 0.8
    end = CryEnd(
        t=160.0, onset_t=100.0, duration_s=60.0, emitted_t=163.0, peak_score=0.95, mean_score=0.8
    )
    s = heard(s, end)
    assert not s.crying and s.cry_s == 0.0 and s.last_cry_s == 60.0
    assert heard(s, Score(t=170.0, score=0.1, logit=-2.0)).cry_s == 0.0
    assert heard(s, Escalation(t=5.0, reason="mic_silent")) == s, "health is not heard"


def test_the_coach_alone_says_session_method_tonights_crying_and_the_next_check_in():
    coach = CheckinCoach(CheckinSettings(method="graduated", birth_date="2020-01-01"), TODAY)
    coach.handle(SessionStart(t=0.0, night=2, date=TODAY))
    coach.handle(CryOnset(t=10.0, emitted_t=10.5, score=0.9))
    coach.tick(70.0)
    status = coach.status()
    s = coached(MonitorState(), status, "2024-05-01T20:05:00+01:00")
    assert (s.session, s.method, s.next_checkin) == (True, "graduated", "2024-05-01T20:05:00+01:00")
    assert s.to_payload()["tonight_cry_min"] == 1.0 == status.night_cry_s / 60.0
    assert with_problem(with_problem(s, True, "mic_lost: gone"), False) == s


TODAY = datetime.date(2024, 6, 1)


def _paced(pacer: StatePacer, state: MonitorState, now: float) -> bool:
    payload = state.to_payload()
    if pacer.due(payload, now):
        pacer.sent(payload, now)
        return True
    return False


def test_sound_level_and_score_are_sent_after_a_deadband_and_a_minimum_interval():
    pacer = StatePacer()
    assert _paced(pacer, MonitorState(), 0.0), "the first state is always news"
    quiet = MonitorState(level_dbfs=-60.0, score=0.02)
    assert _paced(pacer, quiet, 0.0), "a sound level and a score that become known are news"
    assert not _paced(pacer, replace(quiet, level_dbfs=-58.0, score=0.09), 30.0), "in the band"
    louder = replace(quiet, level_dbfs=-50.0)
    assert not _paced(pacer, louder, 5.0), "out of the band, but too soon"
    assert _paced(pacer, louder, 10.0)
    assert _paced(pacer, replace(louder, score=0.5), 12.0), "each value has its own interval"
    assert not _paced(pacer, replace(louder, score=0.9), 15.0)
    assert _paced(pacer, replace(louder, score=0.9), 22.0)


def test_crying_and_the_parents_settings_are_sent_the_moment_they_change():
    pacer = StatePacer()
    state = MonitorState(level_dbfs=-60.0)
    assert _paced(pacer, state, 0.0)
    for change in (
        {"crying": True, "cry_onset_t": 1.0},
        {"method": "fading"},
        {"session": True},
        {"min_bout_s": 1.0},
        {"next_checkin": "2024-05-01T20:05:00+01:00"},
        {"problem": True, "problem_detail": "mic_lost: gone"},
    ):
        state = replace(state, **change)
        assert _paced(pacer, state, 0.5), change
    assert not _paced(pacer, state, 0.6), "nothing new"


def test_every_discovery_config_names_its_device_availability_and_a_unique_id():
    settings = MqttSettings(device_id="cot2", topic_prefix="home/pim", discovery_prefix="ha")
    topics = Topics.from_settings(settings)
    configs = discovery_configs(settings)
    assert all(
        t.startswith("ha/") and t.endswith("/cot2/" + t.split("/")[3] + "/config") for t in configs
    )
    ids = [c["unique_id"] for c in configs.values()]
    assert len(set(ids)) == len(ids) and all(i.startswith("pi_monitor_cot2_") for i in ids)
    assert {c["availability_topic"] for c in configs.values()} == {"home/pim/cot2/availability"}
    by_id = {c["unique_id"].removeprefix("pi_monitor_cot2_"): c for c in configs.values()}
    assert by_id["crying"]["device_class"] == "sound"
    assert by_id["next_checkin"]["device_class"] == "timestamp"
    assert by_id["problem"]["entity_category"] == "diagnostic"
    assert by_id["events"]["event_types"] == list(EVENT_TYPES)
    assert by_id["checkin_method"]["command_topic"] == topics.command("method")
    assert by_id["sleep_session"]["command_topic"] == topics.command("session")
    assert by_id["checked_in"]["command_topic"] == topics.command("checked_in")
    confirmation = by_id["cry_confirmation"]
    assert confirmation["command_topic"] == topics.command("min_bout_s")
    assert (confirmation["min"], confirmation["max"]) == (0.0, MIN_BOUT_MAX_S)


def test_state_payload_keys_cover_every_value_template():
    payload = MonitorState().to_payload()
    for config in discovery_configs(MqttSettings()).values():
        template = config.get("value_template", "")
        if "value_json." in template:
            key = template.split("value_json.")[1].split()[0]
            assert key in payload, f"{config['unique_id']} reads missing key {key}"


def test_backoff_doubles_up_to_the_cap_and_starts_again_after_a_success():
    backoff = Backoff(0.5, 5.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.attempt = 10_000
    assert backoff.next_delay() == 5.0
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_a_refused_subscription_is_logged_and_only_the_command_topic_means_listening(
    tmp_path, caplog
):
    """mosquitto grants any subscription and filters at delivery, so a broker that refuses one
    is played here by handing the publisher the SUBACK such a broker sends."""
    pub = MqttPublisher(MqttSettings(device_id="acl"), tmp_path)
    granted, refused = (ReasonCode(PacketTypes.SUBACK, identifier=i) for i in (1, 0x87))
    with caplog.at_level(logging.ERROR, logger="pi_monitor.mqtt"):
        pub._on_subscribe(None, None, 1, [refused, granted], None)  # type: ignore[arg-type]
    assert not pub.wait_listening(0)
    assert "refused the subscription to pi_monitor/acl/set/+ (Not authorized)" in caplog.text
    assert "controls cannot reach the monitor" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="pi_monitor.mqtt"):
        pub._on_subscribe(None, None, 2, [granted, refused], None)  # type: ignore[arg-type]
    assert pub.wait_listening(0), "commands arrive though Home Assistant's status does not"
    assert "refused the subscription to homeassistant/status" in caplog.text
