"""MQTT messages per idle minute: what a quiet nursery costs Home Assistant (and its recorder).

`pi-monitor run` listens, as in bench_service.py, to a private PulseAudio null sink playing room
noise and fan hum with no crying, and publishes to a local mosquitto; a subscriber on every topic
counts what arrives during the measured minutes, after start-up's announcement has settled.
`--root` measures another checkout's code (e.g. an older commit unpacked with `git archive`).

    python bench/bench_ha_idle.py [--minutes 1] [--root DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # its PulseAudio and mosquitto runners
sys.path.insert(1, str(ROOT / "bench"))

from bench_service import wait_for_status
from signals import night_blocks

from mosquitto import Mosquitto, Subscriber
from pulse import PulseServer

RATE = 16000
SETTLE_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="measured minutes")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs")
    args = parser.parse_args()
    seconds = args.minutes * 60.0

    with tempfile.TemporaryDirectory(prefix="bench-ha-idle-") as tmp_name:
        tmp = Path(tmp_name)
        wav = tmp / "idle.wav"
        with sf.SoundFile(wav, "w", RATE, 1, subtype="PCM_16") as f:
            for block in night_blocks(RATE, seconds + 60.0, cries=False):
                f.write(block)
        pulse = PulseServer(tmp / "pulse")
        pulse.start()
        broker = Mosquitto(tmp / "broker")
        broker.start()
        config = tmp / "config.toml"
        config.write_text(
            '[audio]\ndevice = "pulse"\n'
            f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'[service]\nstate_dir = "{tmp / "state"}"\n'
        )
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify"))
        env = {**pulse.env, "NOTIFY_SOCKET": str(tmp / "notify"), "PYTHONPATH": str(args.root)}
        log = (tmp / "service.log").open("w")
        service = subprocess.Popen(
            [sys.executable, "-m", "pi_monitor", "run", "--config", str(config)],
            env=env,
            cwd=args.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        watcher = Subscriber(broker, ["#"])
        try:
            wait_for_status(notify, "STATUS=listening", 120, service)
            player = pulse.play(wav)
            time.sleep(SETTLE_S)
            first = len(watcher.messages)
            time.sleep(seconds)
            counted = watcher.messages[first:]
            service.send_signal(signal.SIGTERM)
            service.wait(30)
            player.kill()
        finally:
            watcher.close()
            if service.poll() is None:
                service.kill()
            log.close()
            pulse.stop()
            broker.kill()

    per_topic = collections.Counter(m.topic for m in counted)
    print(f"code {args.root}, idle input {seconds:.0f} s (after {SETTLE_S:.0f} s settling)")
    print(f"messages per idle minute: {len(counted) / args.minutes:.1f}")
    for topic, n in per_topic.most_common():
        print(f"  {n / args.minutes:7.1f}  {topic}")
    levels = [m for m in counted if m.topic.endswith("/state")]
    if levels:
        values = [json.loads(m.payload)["level_dbfs"] for m in levels]
        print(f"sound level sent: {np.min(values):.1f} .. {np.max(values):.1f} dBFS")


if __name__ == "__main__":
    main()
