"""The service loop with failures injected at the PortAudio boundary; time is injected too."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fake_portaudio import USB_MIC, FakeBackend, noise_blocks

from pi_monitor import commands
from pi_monitor.classifier import CryClassifier
from pi_monitor.clock import WallClock
from pi_monitor.config import MqttSettings, Settings
from pi_monitor.discovery import Topics
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.notify import Notifier
from pi_monitor.service import Service

from mosquitto import Subscriber, publish_raw, wait_until
from recorder import Recorder
from service_rig import BLOCK, LOUD, QUIET, RATE, FakeTime, make_settings, run_until, shown


def test_unplugged_microphone_raises_mic_lost_sets_problem_and_recovers(
    tmp_path: Path, test_model: Path, broker
) -> None:
    clock = FakeTime()
    lost_at = 1000.0 + 20.0  # fake monotonic time the device comes back
    first = [*noise_blocks(3.0, RATE, BLOCK, QUIET), *noise_blocks(2.0, RATE, BLOCK, LOUD, 1)]
    backend = FakeBackend(
        streams=[(first, True), (list(noise_blocks(3.0, RATE, BLOCK, QUIET, 2)), False)],
        plugged=lambda: clock.mono >= lost_at or backend.tries <= 1,
    )
    settings = make_settings(tmp_path, test_model)
    mqtt = MqttSettings(host=broker.host, port=broker.port, device_id="nursery", enabled=True)
    settings = replace(settings, mqtt=mqtt)
    recorder = Recorder()
    events = recorder.lines
    service = Service(
        settings,
        CryClassifier(test_model, 1),
        backend=backend,
        publisher=MqttPublisher(mqtt, tmp_path / "state"),
        sinks=[recorder],
        edges=clock.edges(),
    )
    assert service.publisher is not None
    topics = Topics.from_settings(mqtt)
    watcher = Subscriber(broker, [topics.state, topics.event])
    service.publisher.start()
    try:
        lost = lambda: any(e.get("reason") == "mic_lost" for e in events)  # noqa: E731
        run_until(service, lost)
        assert service.flow.state.problem and "mic_lost" in service.flow.state.problem_detail
        assert watcher.wait_for(lambda: shown(watcher, topics, "problem") is True), (
            "HA problem not on"
        )

        run_until(service, lambda: not service.flow.state.problem)
        assert watcher.wait_for(lambda: shown(watcher, topics, "problem") is False), (
            "problem not cleared"
        )
        assert watcher.wait_for(lambda: _mqtt_reasons(watcher, topics) == ["mic_lost"])
    finally:
        watcher.close()
        service.publisher.stop()

    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["cry_onset", "cry_end"], "a bout under way ends when the mic is lost"
    cry_end = events[1]
    assert 4.0 <= cry_end["t"] <= 5.0 and cry_end["emitted_t"] == pytest.approx(5.0, abs=0.05)
    mic_lost = next(e for e in events if e.get("reason") == "mic_lost")
    assert settings.audio.lost_after_s <= mic_lost["t"] - cry_end["emitted_t"] <= 30.0
    assert "USB" in mic_lost["detail"] or "no audio" in mic_lost["detail"]
    assert kinds.count("escalation") == 1
    assert service.mic.stats.opens == 2 and backend.tries > 3
    assert service.flow.pipeline is not None and service.mic.device == USB_MIC
    assert service.flow.now > 20.0  # service time ran on through the outage


def _mqtt_reasons(watcher: Subscriber, topics: Topics) -> list[str]:
    events = [json.loads(m.payload) for m in watcher.on(topics.event)]
    return [e["reason"] for e in events if e["type"] == "escalation"]


def test_retries_back_off_up_to_the_configured_maximum(tmp_path: Path, test_model: Path) -> None:
    clock = FakeTime()
    backend = FakeBackend(streams=[], plugged=lambda: False)
    service = Service(
        make_settings(tmp_path, test_model, retry_max_s=4.0),
        CryClassifier(test_model, 1),
        backend=backend,
        edges=clock.edges(),
    )
    tried_at: list[float] = []
    for _ in range(400):
        n = backend.tries
        service.step()
        if backend.tries > n:
            tried_at.append(clock.mono)
    gaps = np.diff(tried_at)
    assert list(gaps[:4]) == pytest.approx([0.5, 1.0, 2.0, 4.0])
    assert max(gaps) == pytest.approx(4.0)
    assert service.flow.state.problem and "mic_lost" in service.flow.state.problem_detail


def test_silent_input_raises_mic_silent_once_and_clears_when_sound_returns(
    tmp_path: Path, test_model: Path
) -> None:
    zeros = [np.zeros(BLOCK, np.float32)] * 70
    backend = FakeBackend(streams=[([*zeros, *noise_blocks(1.0, RATE, BLOCK, QUIET)], False)])
    recorder = Recorder()
    events = recorder.lines
    service = Service(
        make_settings(tmp_path, test_model, silence_timeout_s=5.0),
        CryClassifier(test_model, 1),
        backend=backend,
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    run_until(service, lambda: service.flow.now >= 6.0)
    assert [e.get("reason") for e in events] == ["mic_silent"]
    assert events[0]["t"] == pytest.approx(5.0, abs=0.15)
    assert service.flow.state.problem
    run_until(service, lambda: service.flow.now >= 7.5)
    assert not service.flow.state.problem and len(events) == 1
    in_band = -60.0 + 10 * np.log10(8000 / RATE)  # 0.001 RMS white noise, resampled to 8 kHz
    assert service.flow.state.level_dbfs == pytest.approx(in_band, abs=1.0)


class StallingClassifier(CryClassifier):
    """A classifier that hangs (like a wedged inference) while `stall` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, 1)
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.release = threading.Event()

    def predict(self, windows):
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait(10)
        return super().predict(windows)


def test_a_stalled_loop_stops_the_watchdog_pings(tmp_path: Path, test_model: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
    backend = FakeBackend(
        streams=[(noise_blocks(30.0, RATE, BLOCK // 10, QUIET), False)], interval=0.01
    )
    classifier = StallingClassifier(test_model)
    made: list[Service] = []

    def run() -> None:  # the night log belongs to the thread that opens it, as in `run`
        made.append(
            Service(
                make_settings(tmp_path, test_model), classifier, backend=backend, notifier=notifier
            )
        )
        made[0].run()

    loop = threading.Thread(target=run, daemon=True)
    loop.start()

    def pings(seconds: float) -> int:
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                n += sock.recv(256) == b"WATCHDOG=1"
        return n

    try:
        assert pings(0.6) >= 4  # every 50 ms while audio flows
        classifier.stall.set()
        assert classifier.stalled.wait(5)
        pings(0.05)  # one may have been in flight
        assert pings(0.5) == 0
        classifier.stall.clear()
        classifier.release.set()
        assert pings(0.5) >= 3
    finally:
        classifier.release.set()
        made[0].stop()
        loop.join(10)
        sock.close()
    assert not loop.is_alive()


def test_wall_clock_takes_the_earliest_arrival_and_follows_clock_steps() -> None:
    now = [100.0]
    clock = WallClock(lambda: now[0])

    def arrives(t: float, wall: float, restart: bool = False) -> None:
        now[0] = wall
        clock.observe(t, restart)

    arrives(1.0, 101.3, restart=True)  # a stream's first block, 0.3 s late
    arrives(2.0, 102.05)  # 0.05 s late: the better estimate
    arrives(3.0, 103.4)
    assert clock.wall(2.0) == pytest.approx(102.05, abs=0.002)  # may creep 1 ms/s
    arrives(4.0, 3704.05)  # NTP set the clock an hour on
    assert clock.wall(4.0) == pytest.approx(3704.05)
    arrives(0.1, 50.0, restart=True)  # a new stream
    assert clock.wall(0.1) == pytest.approx(50.0)


def test_home_assistant_commands_reach_the_coach_in_order(tmp_path: Path, test_model: Path) -> None:
    quiet = list(noise_blocks(1.0, RATE, BLOCK, QUIET))
    loud = list(noise_blocks(4.0, RATE, BLOCK, LOUD, 3))
    backend = FakeBackend(streams=[([*quiet, *loud], False)])
    recorder = Recorder()
    events = recorder.lines
    service = Service(
        make_settings(tmp_path, test_model),
        CryClassifier(test_model, 1),
        backend=backend,
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    service.on_command(commands.SessionStart())  # from the MQTT thread
    service.step()
    assert service.flow.state.session and service.flow.coach.status().session
    run_until(service, lambda: service.flow.now >= 4.5)
    due = [e for e in events if e["type"] == "checkin_due"]
    assert due and due[0]["method"] == "responsive" and "wall" in due[0]
    service.on_command(commands.CheckedIn())
    service.on_command(commands.SessionEnd())
    service.step()
    answer = service.flow.coach.coach.last_answer
    assert answer is not None and answer.checkin == 1
    assert not service.flow.state.session and not service.flow.coach.status().session


def test_a_restart_mid_session_shows_the_session_and_tonights_crying_again(
    tmp_path: Path, test_model: Path
) -> None:
    clock = FakeTime()

    def start() -> Service:
        loud = list(noise_blocks(3.0, RATE, BLOCK, LOUD))
        return Service(
            make_settings(tmp_path, test_model),
            CryClassifier(test_model, 1),
            backend=FakeBackend(streams=[(loud, False)]),
            edges=clock.edges(),
        )

    before = start()
    before.on_command(commands.SessionStart())
    run_until(before, lambda: before.flow.state.tonight_cry_s > 0 and before.flow.now >= 3.0)
    cried = before.flow.coach.status().night_cry_s
    before.shutdown()

    after = start()  # systemd restarted the service in the night
    assert after.flow.state.session, "HA's session switch must stay on after a restart"
    assert after.flow.state.tonight_cry_s == pytest.approx(cried)
    assert after.flow.state.method == "responsive"
    assert after.flow.state.next_checkin is not None


def _idle(settings: Settings, model: Path) -> Service:
    """A service whose microphone never opens: for start-up and commands."""
    backend = FakeBackend(streams=[])
    return Service(settings, CryClassifier(model, 1), backend=backend, edges=FakeTime().edges())


def _choose_in_ha(settings: Settings, model: Path, command: commands.Command) -> None:
    """A parent's choice in Home Assistant, then the service stops."""
    service = _idle(settings, model)
    service.on_command(command)
    service.step()
    service.shutdown()


def _onsets_with_confirmation(state_dir: Path, test_model: Path, min_bout_s: float | None) -> list:
    """Cry onsets for a 1.6 s loud burst, then a 4 s one, after HA set the confirmation time."""
    audio = [
        *noise_blocks(1.0, RATE, BLOCK, QUIET),
        *noise_blocks(1.6, RATE, BLOCK, LOUD, 1),
        *noise_blocks(5.0, RATE, BLOCK, QUIET, 2),
        *noise_blocks(4.0, RATE, BLOCK, LOUD, 3),
    ]
    recorder = Recorder()
    events = recorder.lines
    service = Service(
        make_settings(state_dir, test_model),
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[(audio, False)]),
        sinks=[recorder],
        edges=FakeTime().edges(),
    )
    if min_bout_s is not None:
        service.on_command(commands.SetMinBout(min_bout_s))
    run_until(service, lambda: service.flow.now >= 11.0)
    service.shutdown()
    return [e for e in events if e["type"] == "cry_onset"]


def test_cry_confirmation_time_set_in_home_assistant_applies_at_once_and_outlasts_a_restart(
    tmp_path: Path, test_model: Path
) -> None:
    default = _onsets_with_confirmation(tmp_path / "a", test_model, None)
    assert len(default) == 2, "with the default 0.5 s both bursts are cries"

    longer = _onsets_with_confirmation(tmp_path / "b", test_model, 2.0)
    assert len(longer) == 1 and longer[0]["t"] > 7.0, "2 s confirmation skips the short burst"

    restarted = _onsets_with_confirmation(tmp_path / "b", test_model, None)
    assert len(restarted) == 1, "the choice outlasts a restart"
    service = _idle(make_settings(tmp_path / "b", test_model), test_model)
    assert service.flow.settings.detector.min_bout_s == 2.0 and service.flow.state.min_bout_s == 2.0
    assert service.flow.state.to_payload()["min_bout_s"] == 2.0


def test_editing_the_config_file_after_a_choice_in_home_assistant_hands_the_key_back(
    tmp_path: Path, test_model: Path
) -> None:
    settings = make_settings(tmp_path, test_model)

    _choose_in_ha(settings, test_model, commands.SetMinBout(2.0))
    edited = replace(settings, detector=replace(settings.detector, min_bout_s=1.0))
    assert _idle(edited, test_model).flow.settings.detector.min_bout_s == 1.0
    assert _idle(edited, test_model).flow.settings.detector.min_bout_s == 1.0, "choice forgotten"


def test_a_method_chosen_in_home_assistant_outlasts_a_restart_unless_the_age_gate_refuses_it(
    tmp_path: Path, test_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, test_model)
    settings = replace(settings, checkin=replace(settings.checkin, birth_date="2026-01-01"))

    _choose_in_ha(settings, test_model, commands.SetMethod("graduated"))
    again = _idle(settings, test_model)
    assert (
        again.flow.coach.status().method == "graduated" and again.flow.state.method == "graduated"
    )
    again.shutdown()

    no_birth_date = replace(settings, checkin=replace(settings.checkin, birth_date=""))
    refused = _idle(no_birth_date, test_model)
    assert refused.flow.coach.status().method == "responsive"
    assert "birth_date" in caplog.text and "no longer applies" in caplog.text


def test_home_assistant_sets_the_cry_confirmation_time_over_mqtt(
    tmp_path: Path, test_model: Path, broker
) -> None:
    mqtt = MqttSettings(host=broker.host, port=broker.port, device_id="nursery", enabled=True)
    settings = replace(make_settings(tmp_path, test_model), mqtt=mqtt)
    quiet = list(noise_blocks(30.0, RATE, BLOCK, QUIET))
    service = Service(
        settings,
        CryClassifier(test_model, 1),
        backend=FakeBackend(streams=[(quiet, False)]),
        publisher=MqttPublisher(mqtt, tmp_path / "state"),
        edges=FakeTime().edges(),
    )
    assert service.publisher is not None
    topics = Topics.from_settings(mqtt)
    watcher = Subscriber(broker, [topics.state])
    service.publisher.start()
    try:
        assert service.publisher.wait_listening(10)
        publish_raw(broker, topics.command("min_bout_s"), b"1.75")

        def stepped_until_applied() -> bool:
            service.step()
            return service.flow.state.min_bout_s == 1.75

        assert wait_until(stepped_until_applied), "the command never reached the service"
        assert service.flow.pipeline is not None
        assert service.flow.pipeline.detector.params.min_bout_s == 1.75
        assert watcher.wait_for(lambda: shown(watcher, topics, "min_bout_s") == 1.75), (
            "HA's number shows the new value"
        )
    finally:
        watcher.close()
        service.publisher.stop()
