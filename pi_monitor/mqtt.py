"""Publish events and state to an MQTT broker for Home Assistant, losing nothing while it is away.

One thread owns the paho client: it connects (with exponential backoff), runs the network loop,
moves events from the on-disk `Outbox` to the broker and handles commands. Doing all of that on
one thread keeps event order simple: on every (re)connection paho's own unacknowledged copies are
dropped and every event still in the outbox is sent again, oldest first, so delivery is at least
once, in order, and a repeat is recognisable by its `seq`.

The thread never dies before `stop()`: TLS files that cannot be used, a broker that refuses the
credentials and any exception at all are logged (through `logging`: PortAudio's re-scans point
fd 2 at /dev/null now and then), reported as an `mqtt_failed` fault (the problem sensor and an
escalation, delivered once the link works) and retried with backoff on a new client, while the
flow goes on detecting. Home Assistant's `online` is answered at most every few seconds, after
the events waiting, however many arrive.

Wire form on `<base>/event`: the event's JSON (docs/DESIGN.md) plus `seq` (outbox sequence
number) and `event_type` (= `type`, the key Home Assistant's `event` entity reads).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from pi_monitor import without_openssl
from pi_monitor.backoff import Backoff
from pi_monitor.commands import Command, CommandError, parse_command
from pi_monitor.config import ConfigError, MqttSettings
from pi_monitor.discovery import OFFLINE, ONLINE, Topics, discovery_configs
from pi_monitor.events import EVENT_TYPES, Reason
from pi_monitor.faults import Faults
from pi_monitor.outbox import Outbox
from pi_monitor.repeated import RepeatedWarning
from pi_monitor.state import MonitorState, StatePacer

log = logging.getLogger(__name__)
if paho.ssl is None:  # OpenSSL kept out (`without_openssl.keep_out`): no TLS socket can exist
    paho.ssl = without_openssl.PAHO_SSL_STAND_IN  # type: ignore[assignment]

OUTBOX_FILE = "mqtt-outbox.sqlite3"
LOOP_TIMEOUT_S = 0.2  # how often queued events are picked up: 5 wake-ups a second on a Pi
# Home Assistant says `online` when it starts; a flood of them (a broken automation, a replayed
# retained message) must not bury the events under discovery messages: answered at most this often.
ANNOUNCE_MIN_INTERVAL_S = 5.0
MQTT_FAULT = "mqtt"  # the publisher's part in `Faults`


class MqttError(RuntimeError):
    """The broker could not be reached or did not take a message; the message says which."""


def client_id(settings: MqttSettings) -> str:
    """The configured MQTT client id, or one derived from the device id."""
    return settings.client_id or f"pi-monitor-{settings.device_id}"


def new_client(s: MqttSettings) -> paho.Client:
    """A paho client with the configured id, credentials and TLS, not yet connected; TLS files
    that cannot be used are a ConfigError naming the key, the file and the fix."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id(s))
    if s.username:
        client.username_pw_set(s.username, s.password or None)
    if s.tls:  # only then: without TLS the service may run with OpenSSL kept out
        from pi_monitor.tls import mqtt_tls_context

        client.tls_set_context(mqtt_tls_context(s))
    return client


def _qualified(e: BaseException) -> str:
    """`struct.error` rather than a bare `error`; builtins by their name."""
    kind = type(e)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def forget_device(settings: MqttSettings, timeout: float) -> None:
    """Remove the device from Home Assistant: an empty retained message on each of its discovery
    topics deletes that entity (and the device with its last one); its retained availability,
    state and crying are cleared the same way, so nothing of it is left on the broker."""
    topics = Topics.from_settings(settings)
    cleared = [*discovery_configs(settings), topics.availability, topics.state, topics.crying]
    client = new_client(settings)
    try:
        client.connect(settings.host, settings.port, settings.keepalive_s)
    except (OSError, ValueError) as e:
        raise MqttError(f"cannot connect to {settings.host}:{settings.port} ({e})") from None
    client.loop_start()
    try:
        sent = [client.publish(topic, b"", qos=1, retain=True) for topic in cleared]
        deadline = time.monotonic() + timeout
        for info in sent:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not all(info.is_published() for info in sent):
            raise MqttError(
                f"the broker at {settings.host}:{settings.port} did not confirm the removal "
                f"within {timeout:.0f} s; check the broker and the [mqtt] section"
            )
    finally:
        client.disconnect()
        client.loop_stop()


class MqttPublisher:
    """`start()`, then `publish_event` / `publish_state` from any thread; as a sink of the flow
    (`sinks.py`) it takes events and states through `event` and `state`.

    `on_command` is called on the MQTT thread with each valid command; keep it short. Invalid
    commands are logged (a flood as one line and a counted summary) and dropped before it.
    `faults` is where the link and the outbox say what is wrong (the flow shows it).
    """

    def __init__(
        self,
        settings: MqttSettings,
        state_dir: Path,
        on_command: Callable[[Command], None] | None = None,
        faults: Faults | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.faults = faults or Faults()
        path = Path(state_dir) / OUTBOX_FILE
        self.outbox = Outbox(path, settings.queue_max_events, self.faults, monotonic)
        self.on_command = on_command
        self.monotonic = monotonic
        self._client: paho.Client | None = None  # made on the MQTT thread, anew after a failure
        self._lock = threading.Lock()
        self._state: MonitorState | None = None
        self._pacer = StatePacer()
        self._offered_crying: bool | None = None
        self._crying_changes: list[bool] = []  # each start and stop, even between two sends
        self._inflight: dict[int, int] = {}
        self._sent_upto = 0
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._connected = threading.Event()
        self._listening = threading.Event()  # the broker has granted the command subscription
        self._subscriptions = {  # each topic the monitor reads, and what is lost without it
            self.topics.commands: "Home Assistant's controls cannot reach the monitor",
            self.topics.ha_status: "the monitor cannot re-announce itself when Home Assistant "
            "restarts",
        }
        self._stopping = threading.Event()
        self._drained = threading.Condition()
        self._thread: threading.Thread | None = None
        self._announce_wanted = False
        self._announced_at = -math.inf
        self._ignored = RepeatedWarning(log, monotonic=monotonic)
        self.connections = 0
        self.failures = 0  # times the thread failed and started over

    def _make_client(self) -> paho.Client:
        client = new_client(self.settings)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # ---- API for the service (any thread) ----

    def start(self) -> None:
        """Connect in the background; events are queued on disk until the broker answers."""
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def publish_event(self, event: dict[str, Any]) -> int:
        """Queue one contract event for delivery (QoS 1); returns its `seq`."""
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise ValueError(f"not an MQTT event type: {kind!r}; expected one of {EVENT_TYPES}")
        return self.outbox.put({**event, "event_type": kind})

    def publish_state(self, state: MonitorState) -> None:
        """Make `state` the retained state; sent when it is news (see `state.StatePacer`)."""
        with self._lock:
            self._state = state
            if state.crying != self._offered_crying:
                self._offered_crying = state.crying
                self._crying_changes.append(state.crying)

    # ---- as one of the flow's sinks ----

    def event(self, line: dict[str, Any]) -> None:
        """The contract's events go to `<base>/event`; window scores only move the state."""
        if line["type"] in EVENT_TYPES:
            self.publish_event(line)

    def state(self, state: MonitorState) -> None:
        self.publish_state(state)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_listening(self, timeout: float) -> bool:
        """Block until the broker has granted the command subscription: a command sent
        between connecting and that grant reaches the monitor only as a retained copy."""
        return self._listening.wait(timeout)

    def wait_drained(self, timeout: float) -> bool:
        """Block until every queued event is acknowledged by the broker (or timeout)."""
        with self._drained:
            return self._drained.wait_for(lambda: len(self.outbox) == 0, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Say `offline`, disconnect and close the outbox; unsent events stay on disk."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("MQTT thread did not stop within %.0f s", timeout)
                return
        self.outbox.close()

    # ---- MQTT thread ----

    def _run(self) -> None:
        """Turn after turn until `stop()`; a failure of any kind starts over on a new client."""
        socket_open = False
        while not self._stopping.is_set():
            try:
                socket_open = self._turn(socket_open)
            except Exception as e:
                self.failures += 1
                self._disconnected()
                socket_open = False
                self._drop_client()
                log.exception("MQTT thread failed")
                self._fail(f"the MQTT thread failed ({_qualified(e)}: {e}) and starts over")
        try:
            self._say_goodbye(socket_open)
        except Exception:
            log.exception("MQTT goodbye failed")

    def _turn(self, socket_open: bool) -> bool:
        """Connect when not connected, else run the network loop once and send what waits;
        returns whether the socket is open."""
        s = self.settings
        self.outbox.recover()
        self._ignored.flush()
        if not socket_open:
            try:
                client = self._client = self._client or self._make_client()
            except ConfigError as e:
                self._fail(f"{e}; Home Assistant cannot be reached until it is fixed")
                return False
            try:
                client.connect(s.host, s.port, s.keepalive_s)
            except (OSError, ValueError) as e:
                self._wait_to_retry(f"cannot connect to the MQTT broker {s.host}:{s.port} ({e})")
                return False
        assert self._client is not None
        rc = self._client.loop(timeout=LOOP_TIMEOUT_S)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._disconnected()
            why = paho.error_string(rc)
            self._wait_to_retry(f"connection to the MQTT broker {s.host}:{s.port} lost ({why})")
            return False
        self._pump()
        return True

    def _drop_client(self) -> None:
        """Forget a client in an unknown state; closing its socket lets the broker publish our
        last will (`offline`) until the new one connects."""
        client, self._client = self._client, None
        sock = client.socket() if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _fail(self, why: str) -> None:
        """A failure a parent must know of (not a broker that is simply away): a fault, then the
        usual wait before the next try."""
        self.faults.report(
            MQTT_FAULT, Reason.MQTT_FAILED, f"{why}; events wait in the outbox meanwhile"
        )
        self._wait_to_retry(why)

    def _wait_to_retry(self, why: str) -> None:
        delay = self._backoff.next_delay()
        log.warning("%s; %d events waiting; retrying in %.1f s", why, len(self.outbox), delay)
        self._stopping.wait(delay)

    def _say_goodbye(self, socket_open: bool) -> None:
        if socket_open and self._client is not None and self._connected.is_set():
            self._maybe_send_state(force=True)
            info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                if self._client.loop(timeout=LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            self._client.disconnect()
        self._disconnected()

    def _pump(self) -> None:
        """Events first, then the state, then a re-announcement Home Assistant asked for."""
        if not self._connected.is_set():
            return
        self._send_events()
        self._maybe_send_state()
        now = self.monotonic()
        if self._announce_wanted and now >= self._announced_at + ANNOUNCE_MIN_INTERVAL_S:
            log.info("Home Assistant is online: re-sending discovery and state")
            self._announce_wanted, self._announced_at = False, now
            self._announce()

    def _send_events(self) -> None:
        assert self._client is not None
        room = self.settings.inflight_max - len(self._inflight)
        if room <= 0 or self.outbox.last_seq <= self._sent_upto:
            return
        for seq, payload in self.outbox.peek(self._sent_upto, room):
            info = self._client.publish(self.topics.event, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._inflight[info.mid] = seq
            self._sent_upto = seq

    def _maybe_send_state(self, force: bool = False) -> None:
        """`<base>/crying` for every start and stop of crying, in order, the moment it happens
        (`force`: just what it is now, after a reconnection); the state when it is news
        (`state.StatePacer`) or `force`d."""
        with self._lock:
            state, crying = self._state, self._crying_changes
            self._crying_changes = []
        if state is None:
            return
        assert self._client is not None
        if force:
            crying = [state.crying]
        for on in crying:
            self._client.publish(self.topics.crying, "ON" if on else "OFF", qos=1, retain=True)
        payload = state.to_payload()
        now = self.monotonic()
        if force or self._pacer.due(payload, now):
            self._client.publish(self.topics.state, json.dumps(payload), qos=1, retain=True)
            self._pacer.sent(payload, now)

    def _announce(self) -> None:
        """Availability, discovery and state: everything HA needs after either side restarts."""
        assert self._client is not None
        self._client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        for topic, config in discovery_configs(self.settings).items():
            self._client.publish(topic, json.dumps(config), qos=1, retain=True)
        self._maybe_send_state(force=True)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            why = (
                f"the MQTT broker {self.settings.host}:{self.settings.port} refused the "
                f"connection: {reason} (check mqtt.username/password/tls)"
            )
            log.error("%s", why)
            self.faults.report(
                MQTT_FAULT, Reason.MQTT_FAILED, f"{why}; events wait in the outbox meanwhile"
            )
            return
        client.drop_out_messages()
        self._inflight.clear()
        self._sent_upto = 0
        self._backoff.reset()
        self.faults.clear(MQTT_FAULT)
        self.connections += 1
        client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._announce()
        self._connected.set()
        log.info(
            "MQTT connected to %s:%d; %d events to send",
            self.settings.host,
            self.settings.port,
            len(self.outbox),
        )

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._disconnected()

    def _disconnected(self) -> None:
        self._connected.clear()
        self._listening.clear()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[Any], props: Any
    ) -> None:
        for (topic, without), reason in zip(self._subscriptions.items(), reasons, strict=False):
            if reason.is_failure:
                log.error(
                    "the MQTT broker refused the subscription to %s (%s): %s (check the "
                    "broker's ACL for mqtt.username)",
                    topic,
                    reason,
                    without,
                )
            elif topic == self.topics.commands:
                self._listening.set()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        self.outbox.ack(seq)
        with self._drained:
            self._drained.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.topics.ha_status:
            if msg.payload == ONLINE.encode():
                self._announce_wanted = True  # sent by `_pump`, after the events
            return
        name = msg.topic.rsplit("/", 1)[-1]
        if msg.retain:
            self._ignored.warn(
                "ignored MQTT command kept by the broker on %s (commands must not be retained)",
                msg.topic,
            )
            return
        try:
            command = parse_command(name, msg.payload)
        except CommandError as e:
            self._ignored.warn("ignored MQTT command: %s", e)
            return
        log.info("MQTT command: %s", command)
        if self.on_command is None:
            return
        try:
            self.on_command(command)
        except Exception:
            log.exception("command handler failed for %s", command)
