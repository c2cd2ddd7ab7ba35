"""Events per second through MqttPublisher (outbox on disk, QoS 1, PUBACK) to a local mosquitto.

Two figures: `live` (events put and delivered at the same time: the sustained rate) and
`backlog` (events queued while the broker was down, then flushed after it comes back).
A night produces a few dozen events, so anything above ~10/s is ample headroom; the figure
shows how long a full outbox takes to drain.

    python bench/bench_mqtt.py [--events 5000] [--inflight 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))  # its mosquitto runner

from pi_monitor.config import MqttSettings
from pi_monitor.mqtt import MqttPublisher

from mosquitto import Mosquitto, mosquitto_available


def event(i: int) -> dict:
    return {"type": "cry_onset", "t": float(i), "emitted_t": i + 0.5, "score": 0.91}


def live(settings: MqttSettings, state_dir: Path, n: int) -> float:
    pub = MqttPublisher(settings, state_dir)
    pub.start()
    if not pub.wait_connected(10):
        raise SystemExit("bench: publisher did not connect to the local broker")
    start = time.perf_counter()
    for i in range(n):
        pub.publish_event(event(i))
    if not pub.wait_drained(300):
        raise SystemExit(f"bench: {len(pub.outbox)} events not acknowledged after 300 s")
    rate = n / (time.perf_counter() - start)
    pub.stop()
    return rate


def backlog(broker: Mosquitto, settings: MqttSettings, state_dir: Path, n: int) -> float:
    broker.kill()
    pub = MqttPublisher(replace(settings, reconnect_min_s=0.05, reconnect_max_s=0.05), state_dir)
    pub.start()
    for i in range(n):
        pub.publish_event(event(i))
    broker.start()
    if not pub.wait_connected(10):
        raise SystemExit("bench: publisher did not reconnect")
    start = time.perf_counter()
    if not pub.wait_drained(300):
        raise SystemExit(f"bench: {len(pub.outbox)} events not acknowledged after 300 s")
    rate = n / (time.perf_counter() - start)
    pub.stop()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=MqttSettings().inflight_max)
    args = ap.parse_args()
    if not mosquitto_available():
        raise SystemExit("bench: mosquitto not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker")
        broker.start()
        try:
            settings = MqttSettings(
                host=broker.host, port=broker.port, device_id="bench", inflight_max=args.inflight
            )
            live_rate = live(settings, Path(tmp) / "live", args.events)
            backlog_rate = backlog(broker, settings, Path(tmp) / "backlog", args.events)
        finally:
            broker.kill()
    print(
        f"mqtt events/s (QoS 1 via on-disk outbox, inflight {args.inflight}, "
        f"{args.events} events): live {live_rate:.0f}/s, backlog flush {backlog_rate:.0f}/s"
    )


if __name__ == "__main__":
    main()
