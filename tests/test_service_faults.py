"""The alarm path never depends on bookkeeping (issue 14): whatever happens to the state files,
the clock, the microphone or the MQTT link, the service keeps hearing and telling, says what is
wrong (problem sensor, escalation, log) and recovers by itself.

The service runs on the stand-in microphone (tests/fake_portaudio.py) with a real mosquitto
where MQTT matters; a full or read-only disk is a real tmpfs (the `small_disk` fixture).
"""

from __future__ import annotations

import datetime
import json
import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from checkin_script import bout
from fake_portaudio import FakeBackend, noise_blocks

from pi_monitor import commands
from pi_monitor.choices import SCHEMA as CHOICES_SCHEMA
from pi_monitor.classifier import CryClassifier
from pi_monitor.config import CheckinSettings, MqttSettings, ServiceSettings, Settings
from pi_monitor.discovery import Topics
from pi_monitor.flow import Edges
from pi_monitor.journal import JournaledCoach
from pi_monitor.mqtt import OUTBOX_FILE, MqttPublisher
from pi_monitor.nightlog import NightLog
from pi_monitor.service import Service
from pi_monitor.store import FILENAME, Store

from mosquitto import Mosquitto, Subscriber, wait_until
from recorder import Recorder
from service_rig import (
    BLOCK,
    LOUD,
    QUIET,
    RATE,
    FakeTime,
    audio,
    make_settings,
    run_until,
    shown,
    stepped_until,
    with_mqtt,
)

BORN = "2026-06-01"  # 7 months old by the fake clock's 2027-01-15: graduated is allowed


def broker_events(watcher: Subscriber, topics: Topics, kind: str) -> list[dict]:
    events = [json.loads(m.payload) for m in watcher.on(topics.event)]
    return [e for e in events if e["type"] == kind]


def reasons(events: list[dict]) -> list[str]:
    return [e["reason"] for e in events if e["type"] == "escalation"]


def on_disk(settings: Settings, path: Path) -> Settings:
    return replace(settings, service=ServiceSettings(state_dir=str(path)))


# ---- item 1: a full disk ----


def test_on_a_full_disk_cries_reach_home_assistant_and_the_problem_says_how_to_fix_it_until_space_returns(  # noqa: E501
    small_disk, tmp_path: Path, test_model: Path, broker: Mosquitto
) -> None:
    settings = on_disk(with_mqtt(make_settings(tmp_path, test_model), broker), small_disk.path)
    topics = Topics.from_settings(settings.mqtt)
    spans = ((2.0, QUIET), (3.0, LOUD), (10.0, QUIET), (3.0, LOUD), (10.0, QUIET))
    blocks = [*audio(*spans), *audio((3.0, LOUD), (200.0, QUIET))]
    # in real time, 5 times faster: the state file's retries run on the real clock
    backend = FakeBackend(streams=[(blocks, False)], interval=0.02)
    publisher = MqttPublisher(settings.mqtt, small_disk.path)
    service = Service(
        settings,
        CryClassifier(test_model, 1),
        backend=backend,
        publisher=publisher,
        edges=FakeTime().edges(),
    )
    watcher = Subscriber(broker, [topics.event, topics.state])
    publisher.start()
    try:
        service.on_command(commands.SessionStart())
        onsets = lambda: len(broker_events(watcher, topics, "cry_onset"))  # noqa: E731
        assert stepped_until(service, lambda: onsets() == 1, timeout=30)
        small_disk.fill()
        assert stepped_until(service, lambda: onsets() == 2, timeout=30), "a cry on a full disk"
        assert stepped_until(service, lambda: service.flow.state.problem)
        failed = [
            e
            for e in broker_events(watcher, topics, "escalation")
            if e["reason"] == "storage_failed"
        ]
        assert failed and "free some space" in failed[0]["detail"]
        assert watcher.wait_for(lambda: shown(watcher, topics, "problem") is True)
        assert "storage_failed" in str(shown(watcher, topics, "problem_detail"))

        small_disk.free()
        assert stepped_until(service, lambda: not service.flow.state.problem, timeout=60)
        assert watcher.wait_for(lambda: shown(watcher, topics, "problem") is False)
        assert stepped_until(service, lambda: onsets() == 3, timeout=30)
    finally:
        watcher.close()
        service.shutdown()
    (night,) = NightLog(Store(small_disk.path / FILENAME, repair=False)).nights()
    counted = service.flow.coach.status().night_cry_s
    assert night.cry_s == pytest.approx(counted) and counted > 6.0, (
        "the coach counted the cries on in memory, and the night was written back"
    )


# ---- item 2: damaged state files, bad rows, a read-only disk ----

FAKE_START = datetime.datetime.fromtimestamp(1.8e9 + 1000.0).astimezone()  # FakeTime's wall


def seed_a_night(state: Path) -> None:
    """Tonight's session with one cry, as a service running earlier tonight logged it."""
    log = NightLog.in_state_dir(state)
    log.store.create(CHOICES_SCHEMA)
    coach = JournaledCoach.open(CheckinSettings(), log, FAKE_START - datetime.timedelta(hours=1))
    coach.handle(commands.SessionStart(t=0.0))
    for item in bout(10.0, 20.0):
        coach.handle(item)
    coach.tick(60.0)
    log.close()


def add_rows(state: Path, sql: str, rows: list[tuple]) -> None:
    db = sqlite3.connect(state / FILENAME)
    with db:
        db.executemany(sql, rows)
    db.close()


def damage_night_log(state: Path) -> str:
    state.mkdir(parents=True)
    (state / FILENAME).write_bytes(b"\x00garbage from a power cut" * 500)
    return "damaged"


def truncate_night_log(state: Path) -> str:
    seed_a_night(state)
    add_rows(state, "INSERT INTO inputs (night_id, payload) VALUES (?, ?)", [(1, "x" * 500)] * 50)
    path = state / FILENAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "damaged"


def damage_outbox(state: Path) -> str:
    state.mkdir(parents=True, exist_ok=True)
    (state / OUTBOX_FILE).write_bytes(b"not SQLite at all" * 300)
    return "damaged"


def bad_input_rows(state: Path) -> str:
    seed_a_night(state)
    add_rows(
        state,
        "INSERT INTO inputs (night_id, payload) VALUES (?, ?)",
        [
            (1, '{"type": "nap_started", "t": 1.0}'),
            (1, "{not json"),
            (1, '{"type": "cry_onset", "t": "soon", "emitted_t": 1.0, "score": 0.9}'),
            (1, '{"type": "checked_in", "t": 1e999}'),
        ],
    )
    return "inputs rows"


def bad_evening(state: Path) -> str:
    seed_a_night(state)
    add_rows(
        state,
        "INSERT INTO nights (evening, night, method, started, last_seen) VALUES (?, ?, ?, ?, ?)",
        [("the 32nd of June", 1, "responsive", 0.0, 0.0), ("2027-02-30", "two", "fading", 0, 0)],
    )
    return "nights rows"


def bad_choices(state: Path) -> str:
    seed_a_night(state)
    add_rows(
        state,
        "INSERT INTO choices (key, value, config_value) VALUES (?, ?, ?)",
        [
            ("checkin.method", "{oops", '"responsive"'),
            ("detector.min_bout_s", '"long"', "0.5"),
            ("detector.on_threshold", "0.1", "0.5"),
        ],
    )
    return "choice"


@pytest.mark.parametrize(
    "spoil",
    [
        damage_night_log,
        truncate_night_log,
        damage_outbox,
        bad_input_rows,
        bad_evening,
        bad_choices,
    ],
)
def test_a_damaged_state_dir_starts_detects_and_says_what_it_did(
    spoil, tmp_path: Path, test_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, test_model)
    settings = replace(settings, mqtt=MqttSettings(host="127.0.0.1", port=1, enabled=True))
    state = tmp_path / "state"
    said = spoil(state)
    recorder = Recorder()
    service = Service(
        settings,
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[(audio((1.0, QUIET), (3.0, LOUD), (1.0, QUIET)), False)]),
        publisher=MqttPublisher(settings.mqtt, state),  # not started: its outbox is enough
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    try:
        run_until(service, lambda: any(e["type"] == "cry_onset" for e in recorder.lines))
    finally:
        service.shutdown()
    if said == "damaged":
        (aside,) = state.glob("*.corrupt-*")
        notices = [e for e in recorder.lines if e.get("reason") == "storage_failed"]
        assert len(notices) == 1 and aside.name in notices[0]["detail"], recorder.lines
        assert Store(aside.with_name(aside.name.split(".corrupt-")[0]), repair=False)
    else:
        assert said in caplog.text, caplog.text
        assert not list(state.glob("*.corrupt-*")), "a bad row is skipped, not the file"
        assert not service.flow.state.problem


def test_bad_input_rows_are_named_and_the_good_ones_still_resume_the_night(
    tmp_path: Path, test_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    bad_input_rows(state)
    service = Service(
        make_settings(tmp_path, test_model),
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[]),
        edges=FakeTime().edges(),
    )
    service.shutdown()
    warning = next(r.getMessage() for r in caplog.records if "unreadable inputs" in r.getMessage())
    assert "skipped 4 unreadable inputs rows" in warning
    for row, why in ((4, "nap_started"), (5, "not JSON"), (6, "'soon'"), (7, "inf")):
        assert f"{row} (" in warning and why in warning, warning
    assert service.flow.state.session, "tonight's session resumed from the good rows"
    assert service.flow.state.last_cry_s == 10.0


def test_a_read_only_state_dir_runs_on_memory_from_what_it_held_and_says_so(
    small_disk, tmp_path: Path, test_model: Path
) -> None:
    seed_a_night(small_disk.path)
    small_disk.read_only()
    recorder = Recorder()
    service = Service(
        on_disk(make_settings(tmp_path, test_model), small_disk.path),
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[(audio((1.0, QUIET), (3.0, LOUD), (1.0, QUIET)), False)]),
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    try:
        assert service.flow.state.session, "tonight's session, read from the read-only file"
        service.on_command(commands.CheckedIn())
        run_until(service, lambda: any(e["type"] == "cry_onset" for e in recorder.lines))
        assert service.flow.state.problem
        assert "writable" in service.flow.state.problem_detail
        assert "storage_failed" in reasons(recorder.lines)
    finally:
        service.shutdown()
        small_disk.writable()


# ---- item 3: a clock that cannot be trusted at boot ----


class BootClock(FakeTime):
    """A Pi without RTC: 1970 and not synchronised until `ntp()` sets it."""

    def __init__(self) -> None:
        super().__init__()
        self.offset, self.synced = 0.0, False

    def ntp(self) -> None:
        self.offset, self.synced = 1.8e9, True

    def edges(self) -> Edges:
        return Edges(
            monotonic=lambda: self.mono,
            wall=lambda: self.offset + self.mono,
            sleep=self.sleep,
            synced=lambda: self.synced,
        )


def clock_test_service(tmp_path: Path, model: Path, clock: BootClock, born: str) -> tuple:
    settings = make_settings(tmp_path, model, queue_blocks=2000)
    settings = replace(settings, checkin=CheckinSettings(method="graduated", birth_date=born))
    quiet_then_cry = audio((30.0, QUIET), (3.0, LOUD), (30.0, QUIET))
    recorder = Recorder()
    service = Service(
        settings,
        CryClassifier(model, 1),
        backend=FakeBackend(streams=[(quiet_then_cry, False)]),
        sinks=[recorder],
        edges=clock.edges(),
    )
    return service, recorder


def test_with_a_clock_it_cannot_trust_the_service_detects_and_holds_graduated_back_until_ntp(
    tmp_path: Path, test_model: Path
) -> None:
    clock = BootClock()
    service, recorder = clock_test_service(tmp_path, test_model, clock, BORN)
    try:
        service.on_command(commands.SessionStart())
        run_until(service, lambda: service.flow.now >= 5.0)
        assert service.flow.state.method == "responsive" and service.flow.state.session
        assert "clock_untrusted" in service.flow.state.problem_detail
        assert "graduated is held back" in service.flow.state.problem_detail
        assert reasons(recorder.lines) == ["clock_untrusted"]
        run_until(service, lambda: any(e["type"] == "cry_onset" for e in recorder.lines))
        assert [e["method"] for e in recorder.lines if e["type"] == "checkin_due"][:1] == [
            "responsive"
        ], "the stand-in coaches meanwhile"

        clock.ntp()
        run_until(service, lambda: service.flow.state.method == "graduated")
        assert not service.flow.state.problem
    finally:
        service.shutdown()


def test_a_baby_the_gate_refuses_stays_on_the_stand_in_once_the_clock_is_set(
    tmp_path: Path, test_model: Path
) -> None:
    clock = BootClock()
    young = "2026-12-01"  # 6 weeks old on 2027-01-15
    service, recorder = clock_test_service(tmp_path, test_model, clock, young)
    try:
        run_until(service, lambda: service.flow.now >= 20.0)
        assert service.flow.state.method == "responsive"
        clock.ntp()
        run_until(service, lambda: not service.flow.state.problem)
        refused = [e for e in recorder.lines if e["type"] == "command_refused"]
        assert len(refused) == 1 and "under 4 months" in refused[0]["detail"]
        run_until(service, lambda: service.flow.now >= 60.0)
        assert service.flow.state.method == "responsive"
        assert service.flow.coach.status().method == "responsive"
    finally:
        service.shutdown()


# ---- item 5 (run time): TLS files that cannot be used ----


def test_tls_files_that_cannot_be_used_are_reported_while_the_service_keeps_detecting(
    tmp_path: Path, test_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    mqtt = MqttSettings(
        host="127.0.0.1", port=1, tls=True, ca_file=str(ca), reconnect_min_s=0.05, enabled=True
    )
    settings = replace(make_settings(tmp_path, test_model), mqtt=mqtt)
    recorder = Recorder()
    publisher = MqttPublisher(mqtt, tmp_path / "state")
    service = Service(
        settings,
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[(audio((1.0, QUIET), (3.0, LOUD), (1.0, QUIET)), False)]),
        publisher=publisher,
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    publisher.start()
    try:
        assert stepped_until(service, lambda: "mqtt.ca_file" in service.flow.state.problem_detail)
        run_until(service, lambda: any(e["type"] == "cry_onset" for e in recorder.lines))
        assert "mqtt_failed" in reasons(recorder.lines)
        assert wait_until(lambda: caplog.text.count("no CA certificate in it") >= 2), "retried"
    finally:
        service.shutdown()


# ---- item 6: no settling while the microphone is dead ----


def outage_service(tmp_path: Path, model: Path, outage_s: float) -> tuple:
    """A cry, then the microphone unplugged for `outage_s`, then 40 s of quiet; settle 30 s."""
    clock = FakeTime()
    unplugged_at: list[float] = []
    cry = audio((2.0, QUIET), (3.0, LOUD), (2.0, QUIET))
    after = list(noise_blocks(40.0, RATE, BLOCK, QUIET, 5))

    def plugged() -> bool:
        if backend.tries <= 1:
            return True
        unplugged_at[:1] = unplugged_at[:1] or [clock.mono]
        return clock.mono >= unplugged_at[0] + outage_s

    backend = FakeBackend(streams=[(cry, True), (after, False)], plugged=plugged)
    settings = make_settings(tmp_path, model, queue_blocks=2000)
    settings = replace(settings, checkin=CheckinSettings(settle_s=30.0))
    recorder = Recorder()
    service = Service(
        settings, CryClassifier(model, 1), backend=backend, sinks=[recorder], edges=clock.edges()
    )
    return service, recorder


def settled_in(recorder: Recorder) -> list[dict]:
    return [e for e in recorder.lines if e["type"] == "settled"]


def outage(service: Service) -> tuple[float, float]:
    """Flow times when the microphone was lost and when its audio came back."""
    run_until(service, lambda: service.flow.pipeline is not None)
    run_until(service, lambda: service.flow.pipeline is None)
    lost_at = service.flow.now
    run_until(service, lambda: service.flow.pipeline is not None)
    return lost_at, service.flow.now


def test_a_waking_cut_off_by_a_dead_microphone_ends_as_interrupted_when_audio_returns(
    tmp_path: Path, test_model: Path
) -> None:
    service, recorder = outage_service(tmp_path, test_model, outage_s=90.0)
    try:
        run_until(service, lambda: service.flow.pipeline is None and service.flow.now > 60.0)
        assert settled_in(recorder) == [], "nothing heard"
        run_until(service, lambda: bool(settled_in(recorder)))
        (settled,) = settled_in(recorder)
        assert settled["interrupted"] is True and "not known" in settled["detail"]
        assert service.flow.pipeline is not None, "said when audio returned"
    finally:
        service.shutdown()


def test_a_waking_goes_on_after_a_short_outage_and_settles_on_quiet_heard_since(
    tmp_path: Path, test_model: Path
) -> None:
    service, recorder = outage_service(tmp_path, test_model, outage_s=10.0)
    try:
        lost_at, back_at = outage(service)
        run_until(service, lambda: bool(settled_in(recorder)), max_steps=20000)
        (settled,) = settled_in(recorder)
        assert "interrupted" not in settled and settled["episode"] == 1
        assert back_at - lost_at >= 10.0
        assert settled["t"] >= back_at + 30.0 - 0.2, "30 s of quiet heard after the outage"
    finally:
        service.shutdown()


# ---- item 7: the MQTT thread never dies ----


def test_the_mqtt_thread_survives_any_exception_logs_it_and_starts_over_with_backoff(
    tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    good = MqttSettings(
        host=broker.host, port=broker.port, device_id="nursery", reconnect_min_s=0.05
    )
    too_long = replace(good, client_id="x" * 70_000)  # paho: struct.error, not OSError
    publisher = MqttPublisher(too_long, tmp_path / "state")
    publisher.start()
    try:
        publisher.publish_event({"type": "cry_onset", "t": 1.0, "emitted_t": 1.5, "score": 0.9})
        # the failure is counted before its "retrying in" line is logged: wait for both
        backed_off = lambda: any("retrying in 0.2 s" in r.getMessage() for r in caplog.records)  # noqa: E731
        assert wait_until(lambda: publisher.failures >= 3 and backed_off()), (
            "it starts over, again and again, with backoff"
        )
        (fault,) = publisher.faults.active().values()
        assert fault.reason == "mqtt_failed" and "struct.error" in fault.detail
        crashes = [r for r in caplog.records if r.getMessage() == "MQTT thread failed"]
        assert crashes and crashes[0].exc_info is not None, "the traceback goes to the log"

        publisher.settings = good  # the cause goes away: it connects and delivers
        assert publisher.wait_connected(10) and publisher.wait_drained(10)
        assert not publisher.faults.active()
    finally:
        publisher.stop()


# ---- item 11: a flood of one refused command ----


def test_a_flood_of_one_refused_command_is_one_event_and_one_warning_a_minute(
    tmp_path: Path, test_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, test_model)  # no birth date: graduated is refused
    recorder = Recorder()
    service = Service(
        settings,
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[(audio((90.0, QUIET)), False)]),
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    refused = lambda: [e for e in recorder.lines if e["type"] == "command_refused"]  # noqa: E731
    try:
        run_until(service, lambda: service.flow.now >= 1.0)
        with caplog.at_level(logging.INFO):
            for _ in range(1000):  # an automation gone wrong
                service.on_command(commands.SetMethod(method="graduated"))
            run_until(service, lambda: service.flow.now >= 2.0)
        assert len(refused()) == 1, "one event, not a thousand queued ahead of a cry"
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 2, "the warning and the event's line, not 2000 lines"

        run_until(service, lambda: service.flow.now >= 63.0)
        service.on_command(commands.SetMethod(method="graduated"))
        run_until(service, lambda: service.flow.now >= 64.0)
        assert len(refused()) == 2, "a minute later it is said again"
    finally:
        service.shutdown()
