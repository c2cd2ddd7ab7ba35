"""CPU (% of one core) and peak RSS of `pi-monitor run` on live input.

A private PulseAudio null sink plays a generated night (room noise, hum, cry-like bursts) while
the service listens to its monitor through sounddevice/PortAudio, exactly as it would a USB
microphone; MQTT goes to a local mosquitto when one is installed. Only the service process is
measured (/proc/<pid>/stat and VmHWM, and each of its threads: where the CPU goes), from when
it starts listening. It runs with the unit's environment (Python at -OO, its compiled files in a
cache directory) after `pi-monitor setup`'s step has filled that cache, as a Pi's service runs
after setup (`--cold-cache`: the service compiles them itself, as without that step).
Targets on this machine: <= 2 % of one core, <= 80 MB.

    python bench/bench_service.py [--seconds 600] [--model pi_monitor/models/cry.onnx] [--no-mqtt]
                                  [--plain-python | --cold-cache]
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # its PulseAudio and mosquitto runners
sys.path.insert(2, str(ROOT / "bench"))

from signals import night_blocks

from pi_monitor.config import DEFAULT_MODEL
from pi_monitor.install import as_the_unit, warm_argv

from mosquitto import Mosquitto, mosquitto_available
from pulse import PulseServer

RATE = 16000
TICKS = os.sysconf("SC_CLK_TCK")


def write_night(path: Path, seconds: float) -> None:
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        for block in night_blocks(RATE, seconds):
            f.write(np.clip(block, -1.0, 1.0))


def cpu_seconds(stat: Path) -> float:
    """utime + stime of a process's or thread's `/proc/.../stat`."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread by its kernel name: Python's threads all read "python" (the
    main one has the process's id), PulseAudio's client thread in the service "threaded-ml"."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended between listing and reading
            name = (task / "comm").read_text().strip()
            threads[int(task.name)] = (name, cpu_seconds(task / "stat"))
    return threads


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def largest_mappings(pid: int, most: int = 8) -> list[tuple[int, str]]:
    """Resident kB per mapped file (anonymous memory as one entry): where the memory goes."""
    rss: dict[str, int] = {}
    name = "[anonymous]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            name = fields[5] if len(fields) > 5 and fields[5].startswith("/") else "[anonymous]"
        elif fields[0] == "Rss:":
            rss[name] = rss.get(name, 0) + int(fields[1])
    return sorted(((kb, n) for n, kb in rss.items()), reverse=True)[:most]


SCAN_PROBE = r"""
import re
from pathlib import Path
import numpy, onnxruntime, paho.mqtt.client, cffi  # what the service has loaded before it
def state():
    rss = re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())[1]
    maps = Path("/proc/self/maps").read_text()
    return int(rss), set(re.findall(r"\s(/\S+\.so[\w.]*)$", maps, re.M))
rss, libs = state()
import sounddevice
rss_after, libs_after = state()
print(rss_after - rss, len(libs_after - libs))
"""


def portaudio_scan(env: dict[str, str]) -> tuple[float, int]:
    """MB and libraries that `import sounddevice` adds (PortAudio opens every ALSA device the
    machine's configuration defines, loading each plugin and what it links): this part of the
    service's memory depends on the machine's audio packages, not on pi-monitor."""
    out = subprocess.run(
        [sys.executable, "-c", SCAN_PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]) / 1024, int(out[1])


def wait_for_status(
    sock: socket.socket, prefix: str, timeout: float, service: subprocess.Popen
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit(f"bench: the service exited ({service.returncode}) before {prefix!r}")
        sock.settimeout(min(1.0, max(0.01, deadline - time.monotonic())))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        if any(line.startswith(prefix) for line in message.splitlines()):
            return
    raise SystemExit(f"bench: the service never reported {prefix!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measured duration")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--no-mqtt", action="store_true", help="measure without a broker")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--plain-python",
        action="store_true",
        help="without the unit's environment (Python's defaults): what the unit's settings save",
    )
    how.add_argument(
        "--cold-cache",
        action="store_true",
        help="the unit's environment, but the service compiles its files itself (no setup step)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp_name:
        tmp = Path(tmp_name)
        wav = tmp / "night.wav"
        write_night(wav, args.seconds + 5)
        pulse = PulseServer(tmp / "pulse")
        pulse.start()
        broker = None
        mqtt = "[mqtt]\nenabled = false\n"
        if not args.no_mqtt and mosquitto_available():
            broker = Mosquitto(tmp / "broker")
            broker.start()
            mqtt = f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n'
        config = tmp / "config.toml"
        config.write_text(
            f'[model]\npath = "{args.model.resolve()}"\n[audio]\ndevice = "pulse"\n{mqtt}'
            f'[service]\nstate_dir = "{tmp / "state"}"\n'
        )
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify"))
        env = {**pulse.env, "NOTIFY_SOCKET": str(tmp / "notify"), "PYTHONPATH": str(ROOT)}
        if not args.plain_python:
            env = as_the_unit(env, tmp / "cache")
        if not (args.plain_python or args.cold_cache):  # setup's step, in this checkout
            subprocess.run(warm_argv(sys.executable, tmp / "cache"), env=env, check=True)
        compiled_before = set((tmp / "cache").rglob("*.pyc"))
        log = (tmp / "service.log").open("w")
        command = [sys.executable, "-m", "pi_monitor", "run", "--config", str(config)]
        service: subprocess.Popen | None = None
        try:
            started = time.monotonic()
            service = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            wait_for_status(notify, "STATUS=listening", 120, service)
            listening_s = time.monotonic() - started
            player = pulse.play(wav)
            service_stat = Path(f"/proc/{service.pid}/stat")
            cpu0, t0 = cpu_seconds(service_stat), time.monotonic()
            threads0 = thread_cpu(service.pid)
            rss_max = 0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(min(5.0, args.seconds - (time.monotonic() - t0)))
                if service.poll() is not None:
                    raise SystemExit("bench: the service exited early; see its log")
                rss_max = max(rss_max, status_kb(service.pid, "VmRSS"))
            cpu1, t1 = cpu_seconds(service_stat), time.monotonic()
            threads1 = thread_cpu(service.pid)
            peak_kb = status_kb(service.pid, "VmHWM")
            anon_kb, file_kb = (status_kb(service.pid, k) for k in ("RssAnon", "RssFile"))
            largest = largest_mappings(service.pid)
            compiled_by_service = sorted(set((tmp / "cache").rglob("*.pyc")) - compiled_before)
            scan_mb, scan_libs = portaudio_scan(env)
            service.send_signal(signal.SIGTERM)
            service.wait(30)
            player.kill()
        except SystemExit as e:  # say why the service did not run, not only that it did not
            log.flush()
            tail = (tmp / "service.log").read_text().splitlines()[-15:]
            raise SystemExit("\n".join([str(e.code), "service log, last lines:", *tail])) from None
        finally:
            if service is not None and service.poll() is None:
                service.kill()
            log.close()
            pulse.stop()
            if broker is not None:
                broker.kill()
        text = (tmp / "service.log").read_text()
        events = text.count(" event {")
        lost = [line for line in text.splitlines() if "audio lost in capture" in line]

    cpu = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    print(f"live input {t1 - t0:.0f} s, model {args.model.name}, mqtt {'on' if broker else 'off'}")
    if args.plain_python:
        python = "plain (--plain-python)"
    elif args.cold_cache:
        python = "as the unit runs it (-OO), compiling into its empty cache (--cold-cache)"
    else:
        python = "as the unit runs it (-OO), reading the files setup compiled into its cache"
    print(f"python   {python}; listening {listening_s:.2f} s after its start")
    if not args.plain_python:
        names = ", ".join(p.name for p in compiled_by_service[:12])
        print(f"compiled by the service itself: {len(compiled_by_service)} files {names}".rstrip())
    print(f"cpu      {cpu:.2f} % of one core (target <= 2 %)")
    used = {
        tid: 100.0 * (seconds - threads0.get(tid, (name, 0.0))[1]) / (t1 - t0)
        for tid, (name, seconds) in threads1.items()
    }
    for tid in sorted(used, key=used.__getitem__, reverse=True):
        name = "main" if tid == service.pid else threads1[tid][0]
        print(f"  {used[tid]:5.2f} %  {name} thread ({tid})")
    print(f"peak rss {peak_kb / 1024:.1f} MB (VmHWM; max sampled VmRSS {rss_max / 1024:.1f} MB)")
    print(
        f"  at end {anon_kb / 1024:.1f} MB private (RssAnon) + {file_kb / 1024:.1f} MB mapped "
        "files (libraries, shared with other processes)"
    )
    print(
        f"  of which {scan_mb:.1f} MB ({scan_libs} libraries) come with PortAudio's device scan "
        "at `import sounddevice` on this machine (measured apart)"
    )
    print("largest at end:")
    for kb, name in largest:
        print(f"  {kb / 1024:6.1f} MB  {name}")
    print(f"events   {events} logged; capture loss warnings: {len(lost)}")
    for line in lost[-2:]:
        print("  " + line)


if __name__ == "__main__":
    main()
