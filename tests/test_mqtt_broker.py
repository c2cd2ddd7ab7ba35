"""MqttPublisher against a real mosquitto: discovery, no loss across a broker crash, last will,
command validation, outbox overflow."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pi_monitor.commands import CheckedIn, Command
from pi_monitor.config import MqttSettings
from pi_monitor.discovery import Topics, discovery_configs
from pi_monitor.mqtt import MqttPublisher
from pi_monitor.state import MonitorState

from mosquitto import Mosquitto, Subscriber, publish_raw, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "testdev"


def settings_for(broker: Mosquitto, **overrides: object) -> MqttSettings:
    values = dict(
        host=broker.host,
        port=broker.port,
        device_id=DEVICE,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        keepalive_s=5,
    )
    values.update(overrides)
    return MqttSettings(**values)  # type: ignore[arg-type]


def cry_onset(i: int) -> dict:
    return {"type": "cry_onset", "t": float(i), "emitted_t": i + 0.5, "score": 0.9}


@pytest.fixture
def publisher_factory(tmp_path: Path):
    made: list[MqttPublisher] = []

    def make(broker: Mosquitto, on_command=None, **overrides: object) -> MqttPublisher:
        p = MqttPublisher(settings_for(broker, **overrides), tmp_path / "state", on_command)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def seqs_of(messages) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages]


def test_discovery_is_retained_complete_and_unique_ids_survive_restarts(broker, publisher_factory):
    topics = Topics.from_settings(settings_for(broker))
    expected = set(discovery_configs(settings_for(broker)))
    runs = []
    for _ in range(2):
        pub = publisher_factory(broker)
        pub.start()
        assert pub.wait_connected(10)
        sub = Subscriber(broker, ["homeassistant/#", f"{topics.base}/availability"])
        assert sub.wait_for(lambda s=sub: {m.topic for m in s.messages} >= expected)
        configs = {t: json.loads(sub.on(t)[-1].payload) for t in expected}
        assert sub.latest(topics.availability) == b"online"
        runs.append(configs)
        sub.close()
        pub.stop()

    assert runs[0] == runs[1]
    unique_ids = [c["unique_id"] for c in runs[0].values()]
    assert len(set(unique_ids)) == len(unique_ids) == 13
    components = sorted(t.split("/")[1] for t in expected)
    assert components == sorted(
        ["binary_sensor"] * 2 + ["sensor"] * 6 + ["event", "select", "number", "switch", "button"]
    )
    for config in runs[0].values():
        assert config["availability_topic"] == topics.availability
        assert config["device"]["identifiers"] == [f"pi_monitor_{DEVICE}"]
        assert config["origin"]["name"] == "pi-monitor"
        for key in ("state_topic", "command_topic"):
            if key in config:
                assert config[key].startswith(topics.base + "/")
    after_stop = Subscriber(broker, [topics.availability])
    assert after_stop.latest(topics.availability) == b"offline"
    after_stop.close()


def test_home_assistant_birth_makes_discovery_and_state_publish_again(broker, publisher_factory):
    pub = publisher_factory(broker)
    pub.publish_state(MonitorState(method="graduated"))
    pub.start()
    assert pub.wait_connected(10)
    topics = pub.topics
    expected = set(discovery_configs(pub.settings))
    sub = Subscriber(broker, ["homeassistant/+/+/+/config", topics.state])
    assert sub.wait_for(lambda: {m.topic for m in sub.messages} >= expected | {topics.state})
    first = len(sub.messages)
    publish_raw(broker, topics.ha_status, b"online")
    assert sub.wait_for(lambda: len(sub.messages) >= 2 * first)
    republished = sub.messages[first:]
    assert {m.topic for m in republished} == expected | {topics.state}
    assert not any(m.retain for m in republished), "live re-publish, not the broker's copy"
    assert json.loads(sub.on(topics.state)[-1].payload)["method"] == "graduated"
    sub.close()


def test_events_arrive_in_order_after_broker_is_killed_mid_stream(broker, publisher_factory):
    pub = publisher_factory(broker)
    topics = pub.topics
    sub = Subscriber(broker, [topics.event, topics.availability], durable=True)
    pub.start()
    assert pub.wait_connected(10)

    total = 1500
    produced: list[int] = []

    def produce() -> None:
        for i in range(total):
            produced.append(pub.publish_event(cry_onset(i)))
            time.sleep(0.001)

    producer = threading.Thread(target=produce)
    producer.start()
    assert sub.wait_for(lambda: len(sub.on(topics.event)) >= 200)
    broker.kill()
    killed_at = len(produced)
    # Acknowledgements the broker sent before dying may still sit in the socket; the publisher
    # reads them before it sees the connection close, so only then is the outbox final.
    assert wait_until(lambda: not pub.connected), "publisher never noticed the broker was gone"
    unacked = pub.outbox.peek(0, total)
    # From here on every event is the publisher's to deliver. Events the broker had already
    # acknowledged when SIGKILLed may die with it (mosquitto acks before it persists).
    ours_from = unacked[0][0] if unacked else killed_at + 1
    time.sleep(0.3)
    broker.start()
    producer.join(60)
    assert pub.wait_drained(60), f"{len(pub.outbox)} events never acknowledged"
    ours = list(range(ours_from, total + 1))
    arrived = sub.wait_for(lambda: set(seqs_of(sub.on(topics.event))) >= set(ours), 30)
    missing = sorted(set(ours) - set(seqs_of(sub.on(topics.event))))
    assert arrived, f"{len(missing)} events the publisher was responsible for never arrived: " + (
        f"seq {missing[0]}..{missing[-1]}" if missing else ""
    )

    received = seqs_of(sub.on(topics.event))
    first_seen = list(dict.fromkeys(received))
    duplicates = len(received) - len(first_seen)
    lost_by_broker = sorted(set(produced) - set(first_seen))
    print(
        f"\nreconnection: sent {total}, broker killed after {killed_at} produced, "
        f"{len(unacked)} unacknowledged at the kill, received {len(received)}, "
        f"unique {len(first_seen)}, duplicates {duplicates}, acknowledged by the broker but "
        f"lost in its crash {len(lost_by_broker)}, connections {pub.connections}"
    )
    assert produced == list(range(1, total + 1))
    assert first_seen == sorted(first_seen), "events arrive in order"
    assert [s for s in first_seen if s >= ours_from] == ours
    assert all(s < ours_from for s in lost_by_broker) and len(lost_by_broker) <= 50
    assert pub.connections >= 2
    assert pub.outbox.dropped == 0
    onlines = [m for m in sub.on(topics.availability) if m.payload == b"online"]
    assert len(onlines) >= 2, "availability 'online' is re-published after reconnecting"
    sub.close()


def test_killing_the_publishing_process_sets_availability_offline(broker, tmp_path):
    topics = Topics.from_settings(settings_for(broker))
    code = (
        "import sys, time, pathlib\n"
        "from pi_monitor.config import MqttSettings\n"
        "from pi_monitor.mqtt import MqttPublisher\n"
        f"s = MqttSettings(host={broker.host!r}, port={broker.port}, device_id={DEVICE!r})\n"
        f"p = MqttPublisher(s, pathlib.Path({str(tmp_path / 'child')!r}))\n"
        "p.start()\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        sub = Subscriber(broker, [topics.availability])
        assert sub.wait_for(lambda: any(m.payload == b"online" for m in sub.messages), 20)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert sub.wait_for(lambda: sub.messages[-1].payload == b"offline", 20)
        sub.close()
    finally:
        child.kill()
        child.wait(10)
    late = Subscriber(broker, [topics.availability])
    assert late.latest(topics.availability) == b"offline", "the will is retained"
    late.close()


WITHOUT_OPENSSL = """
import json, pathlib, sys, time
from pi_monitor import without_openssl
assert without_openssl.keep_out()
from pi_monitor.config import MqttSettings
from pi_monitor.mqtt import MqttPublisher
s = MqttSettings(host=sys.argv[1], port=int(sys.argv[2]), device_id=sys.argv[3])
p = MqttPublisher(s, pathlib.Path(sys.argv[4]))
p.start()
connected = p.wait_connected(10)
for i in range(1, 301):
    p.publish_event({"type": "cry_onset", "t": float(i), "emitted_t": i + 0.5, "score": 0.9})
    if i % 100 == 0:
        time.sleep(1.0)  # idle: the socket's reads now find nothing and would block
drained = p.wait_drained(30)
maps = pathlib.Path("/proc/self/maps").read_text()
print(json.dumps({
    "connected": connected, "drained": drained, "connections": p.connections,
    "openssl_mapped": "libssl" in maps or "libcrypto" in maps,
}))
p.stop()
"""


def test_without_openssl_the_publisher_delivers_every_event_over_one_connection(broker, tmp_path):
    """The live service keeps OpenSSL out when MQTT has no TLS (`without_openssl`); paho must
    still read and write its socket (its `except ssl.…` clauses) without reconnecting."""
    topics = Topics.from_settings(settings_for(broker))
    sub = Subscriber(broker, [topics.event])
    args = [broker.host, str(broker.port), DEVICE, str(tmp_path / "child")]
    child = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENSSL, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.splitlines()[-1])
    assert report == {
        "connected": True,
        "drained": True,
        "connections": 1,
        "openssl_mapped": False,
    }, child.stderr[-2000:]
    assert sub.wait_for(lambda: len(sub.on(topics.event)) >= 300)
    assert seqs_of(sub.on(topics.event)) == list(range(1, 301))
    sub.close()


def test_keeping_openssl_out_changes_nothing_once_it_is_loaded() -> None:
    import ssl

    from pi_monitor import without_openssl

    assert without_openssl.keep_out() is False
    assert sys.modules["ssl"] is ssl and sys.modules["_hashlib"] is not None
    assert paho.ssl is ssl, "with OpenSSL loaded paho keeps the real module"


MALFORMED: list[tuple[str, bytes]] = [
    ("method", b"bogus"),
    ("method", b"Graduated"),
    ("method", b"\xff\xfe\xfd"),
    ("method", b"graduated" * 200_000),
    ("method", b'{"method": "graduated"}'),
    ("method", b""),
    ("session", b"on"),
    ("session", b"1"),
    ("session", b"\xc3\x28"),
    ("checked_in", b"press"),
    ("checked_in", b"PRESS" * 100),
    ("reboot", b"PRESS"),
    ("min_bout_s", b"3"),
    ("min_bout_s", b"nan"),
    ("min_bout_s", b"-1"),
    ("min_bout_s", b"quick"),
]


def test_malformed_commands_are_ignored_and_leave_state_as_it_was(broker, publisher_factory):
    topics = Topics.from_settings(settings_for(broker))
    publish_raw(broker, topics.command("method"), b"extinction", retain=True)
    received: list[Command] = []
    state = MonitorState(method="responsive", session=True)

    def on_command(command: Command) -> None:
        received.append(command)

    pub = publisher_factory(broker, on_command=on_command)
    pub.publish_state(state)
    pub.start()
    assert pub.wait_listening(10)
    watcher = Subscriber(broker, [topics.state])
    before = watcher.latest(topics.state)
    assert before is not None and json.loads(before)["method"] == "responsive"

    for name, payload in MALFORMED:
        publish_raw(broker, topics.command(name), payload)
    publish_raw(broker, topics.command("checked_in"), b"PRESS")
    wait_until(lambda: bool(received))

    assert received == [CheckedIn()], "only the valid command gets through"
    assert pub.connected
    assert watcher.on(topics.state)[-1].payload == before
    watcher.close()
    publish_raw(broker, topics.command("method"), b"", retain=True)


def test_a_retained_command_is_ignored_when_kept_from_before_and_applied_when_sent_live(
    broker, publisher_factory
):
    """What the README says of retained commands: the broker's kept copy is ignored at
    subscription; one published with retain while the monitor listens arrives live."""
    topics = Topics.from_settings(settings_for(broker))
    publish_raw(broker, topics.command("method"), b"extinction", retain=True)
    received: list[Command] = []
    pub = publisher_factory(broker, on_command=received.append)
    pub.start()
    try:
        assert pub.wait_listening(10)
        publish_raw(broker, topics.command("checked_in"), b"PRESS", retain=True)
        assert wait_until(lambda: bool(received))
        assert received == [CheckedIn()], "the kept method ignored, the live press applied"
    finally:
        for name in ("method", "checked_in"):
            publish_raw(broker, topics.command(name), b"", retain=True)


def test_full_outbox_drops_oldest_and_delivers_the_rest_in_order(broker, publisher_factory):
    topics = Topics.from_settings(settings_for(broker))
    sub = Subscriber(broker, [topics.event], durable=True)
    # A clean stop saves the subscriber's session for certain; a SIGKILL right after its SUBACK
    # can beat the autosave, and then the drained events reach the broker before the subscriber
    # has subscribed again (seen once in CI). The outbox, not the broker's crash, is tested here.
    broker.stop()
    pub = publisher_factory(broker, queue_max_events=10)
    pub.start()
    seqs = [pub.publish_event(cry_onset(i)) for i in range(25)]
    assert seqs == list(range(1, 26))
    assert len(pub.outbox) == 10
    assert pub.outbox.dropped == 15
    broker.start()
    assert pub.wait_drained(30)
    assert sub.wait_for(lambda: len(set(seqs_of(sub.on(topics.event)))) >= 10, 20)
    assert list(dict.fromkeys(seqs_of(sub.on(topics.event)))) == list(range(16, 26))
    sub.close()


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class FrozenClock:
    """The publisher's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flood(broker: Mosquitto, topic: str, payload: bytes, count: int, then: str) -> None:
    """`count` messages as fast as one client can send them, then `then` (a command) to know
    when the publisher has read them all (one connection keeps its order)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="flood")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for _ in range(count):
            client.publish(topic, payload, qos=0)
        client.publish(then, b"PRESS", qos=1).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def flooded_publisher(
    broker: Mosquitto, tmp_path: Path
) -> tuple[MqttPublisher, FrozenClock, threading.Event, Subscriber]:
    """A connected publisher on a clock the test moves; `pressed` is set by each command. The
    subscriber (availability and events) listens before the publisher connects, so the
    announcement on connecting is its first live message, not one racing the test's flood."""
    clock = FrozenClock()
    pressed = threading.Event()
    pub = MqttPublisher(
        settings_for(broker), tmp_path / "state", lambda _: pressed.set(), monotonic=clock
    )
    sub = Subscriber(broker, [pub.topics.availability, pub.topics.event])
    pub.start()
    assert pub.wait_connected(10)
    assert sub.wait_for(lambda: any(not m.retain for m in sub.on(pub.topics.availability)))
    return pub, clock, pressed, sub


def test_a_flood_of_home_assistant_online_is_answered_at_most_every_few_seconds_after_the_events(
    broker, tmp_path
):
    pub, clock, pressed, sub = flooded_publisher(broker, tmp_path)
    try:
        topics = pub.topics
        start = len(sub.messages)  # after the announcement on connecting
        live = lambda: [m for m in sub.messages[start:] if not m.retain]  # noqa: E731
        online = lambda: [m for m in live() if m.topic == topics.availability]  # noqa: E731
        args = (broker, topics.ha_status, b"online", 5000, topics.command("checked_in"))
        sender = threading.Thread(target=flood, args=args)
        before = rss_bytes()
        sender.start()
        seq = pub.publish_event(cry_onset(1))  # a cry while the flood comes in
        sender.join()
        assert pressed.wait(30), "the publisher read the whole flood"
        assert rss_bytes() - before < 10 * 2**20, "nothing piles up (before: 80,000 messages)"
        assert sub.wait_for(lambda: seq in seqs_of(sub.on(topics.event)))
        first_event = next(i for i, m in enumerate(live()) if m.topic == topics.event)
        ahead = [m for m in live()[:first_event] if m.topic == topics.availability]
        assert len(ahead) <= 1, "the cry did not wait behind the re-announcements"
        time.sleep(0.5)
        assert len(online()) == 1, "5000 requests, one re-announcement"

        pressed.clear()
        flood(broker, topics.ha_status, b"online", 100, then=topics.command("checked_in"))
        assert pressed.wait(30)
        clock.now += 5.0  # a few seconds later the requests since are answered, once
        assert sub.wait_for(lambda: len(online()) == 2)
        time.sleep(0.5)
        assert len(online()) == 2
    finally:
        sub.close()
        pub.stop()


def test_a_flood_of_bad_commands_is_logged_as_one_line_and_a_counted_summary(
    broker, tmp_path, caplog
):
    pub, clock, pressed, sub = flooded_publisher(broker, tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="pi_monitor.mqtt"):
            flood(broker, pub.topics.command("method"), b"cry-it-out", 2000,
                  then=pub.topics.command("checked_in"))  # fmt: skip
            assert pressed.wait(30)
            ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
            assert ignored == ["ignored MQTT command: set/method: 'cry-it-out' is not one of "
                               "extinction, graduated, responsive, fading"]  # fmt: skip
            clock.now += 61.0
            assert wait_until(lambda: "1999 more like this" in caplog.text)
        summary = caplog.records[-1].getMessage()
        assert summary.startswith("1999 more like this in the last 61 s, the last: ignored MQTT")
    finally:
        sub.close()
        pub.stop()
