"""`pi-monitor replay --mqtt`: a replay's events reach the broker as its own device, same as the
JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path

from pi_monitor import cli
from pi_monitor.config import MqttSettings
from pi_monitor.discovery import Topics

from mosquitto import Mosquitto, Subscriber, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"


def write_config(tmp_path: Path, host: str, port: int) -> Path:
    path = tmp_path / "replay.toml"
    path.write_text(
        f'[mqtt]\nhost = "{host}"\nport = {port}\ndevice_id = "replaytest"\n'
        "reconnect_min_s = 0.05\nreconnect_max_s = 0.2\n"
    )
    return path


def test_replay_with_mqtt_publishes_every_event_and_the_final_state(
    broker: Mosquitto, tmp_path, test_model, capsys
):
    topics = Topics.from_settings(MqttSettings(device_id="replaytest_replay"))
    sub = Subscriber(broker, [topics.event, topics.state, topics.availability])
    config = write_config(tmp_path, broker.host, broker.port)
    wav = str(FIXTURES / "cry_like_16k.wav")

    args = ["replay", "--config", str(config), "--model", str(test_model), "--mqtt", "--speed", "0"]
    code = cli.main([*args, wav])

    assert code == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["type"] for e in printed] == ["cry_onset", "cry_end"]
    assert sub.wait_for(lambda: len(sub.on(topics.event)) >= len(printed))
    sent = [json.loads(m.payload) for m in sub.on(topics.event)]
    assert [e["seq"] for e in sent] == [1, 2]
    assert [e["event_type"] for e in sent] == ["cry_onset", "cry_end"]
    assert [{k: v for k, v in e.items() if k not in ("seq", "event_type")} for e in sent] == printed
    assert sub.wait_for(lambda: any(m.payload == b"offline" for m in sub.on(topics.availability)))
    state = json.loads(sub.on(topics.state)[-1].payload)
    assert state["crying"] is False
    assert state["last_cry_s"] == round(printed[1]["duration_s"], 1)
    sub.close()


def test_replay_with_mqtt_and_no_broker_fails_with_one_line(
    tmp_path, test_model, capsys, monkeypatch
):
    monkeypatch.setattr(cli, "MQTT_DRAIN_S", 1.0)
    config = write_config(tmp_path, "127.0.0.1", free_port())
    wav = str(FIXTURES / "cry_like_16k.wav")
    args = ["replay", "--config", str(config), "--model", str(test_model), "--mqtt", "--speed", "0"]

    code = cli.main([*args, wav])

    err = capsys.readouterr().err
    assert code == 2
    assert "mqtt: 2 events not delivered to 127.0.0.1:" in err


def test_the_drain_message_counts_events_dropped_from_a_full_queue(
    tmp_path, test_model, capsys, monkeypatch
):
    monkeypatch.setattr(cli, "MQTT_DRAIN_S", 1.0)
    config = write_config(tmp_path, "127.0.0.1", free_port())
    config.write_text(config.read_text() + "queue_max_events = 10\n")
    wavs = [str(FIXTURES / "cry_like_16k.wav")] * 6  # 12 events for a queue of 10

    args = ["replay", "--config", str(config), "--model", str(test_model), "--mqtt", "--speed", "0"]
    code = cli.main([*args, *wavs])

    err = capsys.readouterr().err
    assert code == 2
    assert "mqtt: 12 events not delivered to 127.0.0.1:" in err
    assert "(10 still queued, 2 dropped from the full queue, mqtt.queue_max_events)" in err


def test_removing_the_replay_device_without_a_broker_or_replaying_nothing_fails_with_one_line(
    tmp_path, capsys
):
    config = write_config(tmp_path, "127.0.0.1", free_port())

    assert cli.main(["replay", "--config", str(config), "--remove-device"]) == 2
    assert cli.main(["replay", "--config", str(config)]) == 2

    removal, nothing = capsys.readouterr().err.strip().splitlines()
    assert removal.startswith("pi-monitor: error: cannot connect to 127.0.0.1:")
    assert "give at least one PATH" in nothing
