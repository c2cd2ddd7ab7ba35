"""What Home Assistant shows, read from a real mosquitto broker as HA reads it (issue 15, part 2).

Each test drives the service (or a replay) and checks the retained state, the events and the
discovery configs that arrive at a subscriber standing in for Home Assistant.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pi_monitor import cli
from pi_monitor.checkin import SAFETY_REMINDER
from pi_monitor.config import CheckinSettings, MqttSettings
from pi_monitor.discovery import Topics

from mosquitto import Mosquitto, Subscriber, publish_raw
from service_rig import (
    LOUD,
    QUIET,
    FakeTime,
    audio,
    make_settings,
    on_broker,
    run_until,
    shown,
    stepped_until,
    with_mqtt,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
BORN_8_MONTHS_AGO = "2024-01-01"  # old enough for graduated (the gate uses today's date)


def settings_for(tmp_path: Path, model: Path, broker: Mosquitto, **checkin: object):
    settings = with_mqtt(make_settings(tmp_path, model, queue_blocks=10000), broker)
    if checkin:
        settings = replace(settings, checkin=CheckinSettings(**checkin))  # type: ignore[arg-type]
    return settings


def command(broker: Mosquitto, topics: Topics, name: str, payload: str) -> None:
    publish_raw(broker, topics.command(name), payload.encode())


def sent_since_start(watcher: Subscriber, topics: Topics) -> list[dict]:
    """States the service published while `watcher` listened (not the broker's retained copy)."""
    return [json.loads(m.payload) for m in watcher.on(topics.state) if not m.retain]


def expected_next_checkin(service) -> str | None:
    """The coach's next check-in as the wall time HA should show (to the second)."""
    due = service.flow.coach.status().next_checkin_t
    if due is None:
        return None
    moment = datetime.datetime.fromtimestamp(service.flow.clock.wall(due)).astimezone()
    return moment.isoformat(timespec="seconds")


def test_a_method_chosen_while_no_session_runs_wins_over_the_nights_log_after_a_restart(
    tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    """Item 1: session on → fading → session off → graduated → restart shows graduated."""
    settings = settings_for(tmp_path, test_model, broker, birth_date=BORN_8_MONTHS_AGO)
    topics = Topics.from_settings(settings.mqtt)
    clock = FakeTime()
    service = on_broker(settings, test_model, audio((30.0, QUIET)), clock)
    status = service.flow.coach.status
    for name, payload, done in [
        ("session", "ON", lambda: status().session),
        ("method", "fading", lambda: status().method == "fading"),
        ("session", "OFF", lambda: not status().session),
        ("method", "graduated", lambda: status().method == "graduated"),
    ]:
        command(broker, topics, name, payload)
        assert stepped_until(service, done), f"set/{name} {payload} never applied"
    service.shutdown()

    watcher = Subscriber(broker, [topics.state])
    restarted = on_broker(settings, test_model, audio((5.0, QUIET)), clock)
    try:
        assert restarted.flow.coach.status().method == "graduated"
        restarted.step()
        assert watcher.wait_for(lambda: bool(sent_since_start(watcher, topics)))
        assert {s["method"] for s in sent_since_start(watcher, topics)} == {"graduated"}
    finally:
        watcher.close()
        restarted.shutdown()


def test_next_check_in_always_shows_the_coachs_time_from_the_first_wait_to_the_session_end(
    tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    """Item 2: the first wait of a waking, the wait after "Checked in", the session's end."""
    settings = settings_for(tmp_path, test_model, broker, method="graduated")
    settings = replace(settings, checkin=replace(settings.checkin, birth_date=BORN_8_MONTHS_AGO))
    topics = Topics.from_settings(settings.mqtt)
    service = on_broker(settings, test_model, audio((1.0, QUIET), (60.0, LOUD)), FakeTime())
    watcher = Subscriber(broker, [topics.state])

    def ha_shows_the_coachs_time() -> bool:
        return shown(watcher, topics, "next_checkin") == expected_next_checkin(service)

    try:
        command(broker, topics, "session", "ON")
        assert stepped_until(service, lambda: service.flow.coach.status().session)
        run_until(service, lambda: service.flow.coach.status().crying)
        service.step()
        first_wait = expected_next_checkin(service)
        assert first_wait is not None, "the coach knows when the first check-in falls due"
        assert watcher.wait_for(ha_shows_the_coachs_time), "HA shows no time in the first wait"

        command(broker, topics, "checked_in", "PRESS")
        assert stepped_until(service, lambda: expected_next_checkin(service) != first_wait)
        assert watcher.wait_for(ha_shows_the_coachs_time), "HA keeps the time before the visit"

        command(broker, topics, "session", "OFF")
        assert stepped_until(service, lambda: not service.flow.coach.status().session)
        assert watcher.wait_for(lambda: shown(watcher, topics, "next_checkin") is None)
    finally:
        watcher.close()
        service.shutdown()


def test_next_check_in_is_empty_once_its_wait_ran_out_while_the_baby_is_quiet(
    tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    """Item 2: a check-in whose wait ran out in a pause falls due only if crying resumes."""
    settings = settings_for(tmp_path, test_model, broker, responsive_step_s=10.0)
    topics = Topics.from_settings(settings.mqtt)
    blocks = audio((1.0, QUIET), (5.0, LOUD), (40.0, QUIET))
    service = on_broker(settings, test_model, blocks, FakeTime())
    watcher = Subscriber(broker, [topics.state])
    try:
        command(broker, topics, "session", "ON")
        assert stepped_until(service, lambda: service.flow.coach.status().session)
        run_until(service, lambda: service.flow.coach.status().checkins == 1)
        service.step()
        due = service.flow.coach.status().next_checkin_t
        assert due is not None
        assert watcher.wait_for(lambda: shown(watcher, topics, "next_checkin") is not None)
        run_until(service, lambda: service.flow.now > due + 1.0)
        assert not service.flow.coach.status().crying
        service.step()
        assert watcher.wait_for(lambda: shown(watcher, topics, "next_checkin") is None), (
            "HA shows a check-in time in the past"
        )
    finally:
        watcher.close()
        service.shutdown()


def test_last_cry_and_tonights_crying_mean_the_same_before_and_after_a_restart(
    tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    """Item 3: switching the session off and on keeps tonight's total, a restart keeps both."""
    settings = settings_for(tmp_path, test_model, broker)
    topics = Topics.from_settings(settings.mqtt)
    clock = FakeTime()
    blocks = audio((1.0, QUIET), (12.0, LOUD), (10.0, QUIET))
    service = on_broker(settings, test_model, blocks, clock)
    watcher = Subscriber(broker, [topics.state])
    try:
        command(broker, topics, "session", "ON")
        assert stepped_until(service, lambda: service.flow.coach.status().session)
        run_until(service, lambda: service.flow.state.last_cry_s is not None)
        for payload in ("OFF", "ON"):
            command(broker, topics, "session", payload)
            on = payload == "ON"
            assert stepped_until(service, lambda on=on: service.flow.coach.status().session is on)
        service.step()
        keys = ("session", "last_cry_s", "tonight_cry_min")
        payload = service.flow.state.to_payload()
        before = {key: payload[key] for key in keys}
        assert before["session"] and before["last_cry_s"] and before["tonight_cry_min"], before
        assert watcher.wait_for(
            lambda: {key: shown(watcher, topics, key) for key in keys} == before
        )
        service.shutdown()
        watcher.close()

        watcher = Subscriber(broker, [topics.state])
        restarted = on_broker(settings, test_model, audio((2.0, QUIET)), clock)
        restarted.step()
        assert watcher.wait_for(lambda: bool(sent_since_start(watcher, topics)))
        after = sent_since_start(watcher, topics)[-1]
        assert {key: after[key] for key in keys} == before
        restarted.shutdown()
    finally:
        watcher.close()


def test_an_idle_nursery_sends_no_state_until_something_changes_and_crying_at_once(
    tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    """Item 4: sound level and score wait for a real change (deadband, minimum interval);
    the crying flag goes out the moment crying starts."""
    settings = settings_for(tmp_path, test_model, broker)
    topics = Topics.from_settings(settings.mqtt)
    blocks = audio((60.0, QUIET), (10.0, LOUD))
    service = on_broker(settings, test_model, blocks, FakeTime())
    watcher = Subscriber(broker, [topics.state, topics.crying])
    try:
        run_until(service, lambda: service.flow.now > 5.0)
        assert watcher.wait_for(lambda: bool(watcher.on(topics.state)))
        time.sleep(0.5)  # what start-up sent has arrived
        idle_from = len(watcher.messages)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # several of the old once-a-second sends
            service.step()
            time.sleep(0.02)
        idle = watcher.messages[idle_from:]
        assert idle == [], [(m.topic, m.payload) for m in idle]

        run_until(service, lambda: service.flow.state.crying)
        service.step()
        assert watcher.wait_for(lambda: watcher.on(topics.crying)[-1].payload == b"ON", 2.0)
    finally:
        watcher.close()
        service.shutdown()


class FakeHomeAssistant:
    """Subscribes to a device's topics only after its discovery config has arrived, and a
    moment later, as Home Assistant does when it creates the entities."""

    def __init__(self, broker: Mosquitto, delay_s: float = 0.5) -> None:
        self.broker, self.delay_s = broker, delay_s
        self.discovery = Subscriber(broker, ["homeassistant/#"])
        self.device: Subscriber | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        def event_config() -> dict | None:
            for m in self.discovery.messages:
                if m.topic.startswith("homeassistant/event/") and m.payload:
                    return json.loads(m.payload)
            return None

        if not self.discovery.wait_for(lambda: event_config() is not None, 30):
            return
        config = event_config()
        assert config is not None
        time.sleep(self.delay_s)
        base = config["state_topic"].rsplit("/", 1)[0]
        self.device = Subscriber(self.broker, [f"{base}/#"])

    def close(self) -> None:
        self._thread.join(30)
        self.discovery.close()
        if self.device is not None:
            self.device.close()


def replay_config(tmp_path: Path, broker: Mosquitto) -> Path:
    path = tmp_path / "replay.toml"
    path.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ndevice_id = "nursery"\n'
        'device_name = "Nursery monitor"\nreconnect_min_s = 0.05\nreconnect_max_s = 0.2\n'
    )
    return path


def test_a_first_replay_reaches_home_assistant_and_its_device_can_be_removed(
    tmp_path: Path, test_model: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 5: HA subscribes only after discovery; the first event, crying ON and the sound
    level must still reach it, and the replay device can be removed afterwards."""
    config = replay_config(tmp_path, broker)
    ha = FakeHomeAssistant(broker)
    wav = str(FIXTURES / "cry_like_16k.wav")
    args = ["replay", "--config", str(config), "--model", str(test_model), "--mqtt"]
    try:
        assert cli.main([*args, "--speed", "4", wav]) == 0
    finally:
        ha.close()
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["type"] for e in printed] == ["cry_onset", "cry_end"]
    assert ha.device is not None, "HA never saw the replay device's discovery"
    topics = Topics.from_settings(MqttSettings(device_id="nursery_replay"))
    events = [json.loads(m.payload)["type"] for m in ha.device.on(topics.event)]
    assert events == ["cry_onset", "cry_end"], "HA missed events"
    assert b"ON" in [m.payload for m in ha.device.on(topics.crying)], "Crying never showed ON"
    levels = [json.loads(m.payload)["level_dbfs"] for m in ha.device.on(topics.state)]
    assert any(level is not None for level in levels), "the sound level stayed unknown"
    names = {json.loads(m.payload)["device"]["name"] for m in ha.discovery.messages if m.payload}
    assert names == {"Nursery monitor (replay)"}, "a replay never shows as the nursery itself"

    assert cli.main(["replay", "--config", str(config), "--remove-device"]) == 0
    late = Subscriber(broker, ["homeassistant/#", f"{topics.base}/#"])
    time.sleep(0.5)
    left = [m.topic for m in late.messages if m.payload]
    late.close()
    assert left == [], f"retained after removal: {left}"


def test_a_refused_choice_and_the_session_reminder_reach_home_assistant(
    tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    """Item 6: both arrive on the event entity (`command_refused`, `session_started`)."""
    settings = settings_for(tmp_path, test_model, broker)  # no birth date: no graduated
    topics = Topics.from_settings(settings.mqtt)
    service = on_broker(settings, test_model, audio((30.0, QUIET)), FakeTime())
    watcher = Subscriber(broker, [topics.event, topics.state])

    def events(kind: str) -> list[dict]:
        found = [json.loads(m.payload) for m in watcher.on(topics.event)]
        return [e for e in found if e["event_type"] == kind]

    try:
        command(broker, topics, "method", "graduated")
        assert stepped_until(service, lambda: bool(events("command_refused")))
        (refused,) = events("command_refused")
        assert refused["command"] == "set_method" and "birth_date" in refused["detail"]
        assert service.flow.coach.status().method == "responsive"

        command(broker, topics, "session", "ON")
        assert stepped_until(service, lambda: bool(events("session_started")))
        (started,) = events("session_started")
        assert started["detail"] == SAFETY_REMINDER and started["night"] == 1
    finally:
        watcher.close()
        service.shutdown()


def test_home_assistant_names_icons_and_the_confirmation_step_and_a_quiet_restart(
    tmp_path: Path, test_model: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 7: entity names that do not repeat the device's, a crying icon, a confirmation time
    that fits the card and keeps to its steps, and no session reminder on a restart without a
    session."""
    settings = settings_for(tmp_path, test_model, broker)
    topics = Topics.from_settings(settings.mqtt)
    clock = FakeTime()
    discovery = Subscriber(broker, ["homeassistant/#"])
    service = on_broker(settings, test_model, audio((30.0, QUIET)), clock)
    watcher = Subscriber(broker, [topics.state])
    try:
        assert discovery.wait_for(lambda: len(discovery.messages) >= 13)
        configs = {
            json.loads(m.payload)["unique_id"].removeprefix("pi_monitor_nursery_"): json.loads(
                m.payload
            )
            for m in discovery.messages
        }
        device_words = set(settings.mqtt.device_name.lower().split())
        for object_id, config in configs.items():
            assert not device_words & set(config["name"].lower().split()), (object_id, config)
        assert configs["crying"]["icon"] == "mdi:emoticon-cry-outline"
        confirmation = configs["cry_confirmation"]
        assert confirmation["mode"] == "box" and len(confirmation["name"]) <= 16
        assert confirmation["step"] == 0.25

        default = service.flow.state.min_bout_s
        command(broker, topics, "min_bout_s", "0.3")
        command(broker, topics, "min_bout_s", "1.25")
        assert stepped_until(service, lambda: service.flow.state.min_bout_s != default)
        assert service.flow.state.min_bout_s == 1.25, "0.3 is off the 0.25 s step"
        assert watcher.wait_for(lambda: shown(watcher, topics, "min_bout_s") == 1.25)

        for payload in ("ON", "OFF"):
            command(broker, topics, "session", payload)
            on = payload == "ON"
            assert stepped_until(service, lambda on=on: service.flow.coach.status().session is on)
        service.shutdown()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            restarted = on_broker(settings, test_model, audio((2.0, QUIET)), clock)
            restarted.step()
            restarted.shutdown()
        logged = caplog.text
        assert "feeding" not in logged and "session night" not in logged, logged
    finally:
        discovery.close()
        watcher.close()
