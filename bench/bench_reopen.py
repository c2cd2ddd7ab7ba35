"""Memory while a missing microphone is retried: RSS over reopen attempts through the real
PortAudio, with the ALSA plugin modules pinned (as the service does) and, for comparison, without.

    .venv/bin/python bench/bench_reopen.py [--attempts 600]

Each attempt is what the service does every few seconds while the microphone is unplugged:
re-initialise PortAudio, list the inputs, find none that matches. Each mode runs in its own
process, after 50 warm-up attempts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

WARM_UP = 50


def rss_kb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def measure(attempts: int, pin: bool) -> None:
    from pi_monitor import capture
    from pi_monitor.config import AudioSettings

    if not pin:
        capture.pin_alsa_plugins = lambda: []  # the code before issue 14
    mic = capture.MicSource(AudioSettings(device="no such microphone"), 16000)
    start = 0.0
    for i in range(WARM_UP + attempts):
        if i == WARM_UP:
            start = rss_kb()
        with contextlib.suppress(capture.CaptureError):
            mic.open()
    grown = rss_kb() - start
    label = "pinned (now)" if pin else "not pinned (before)"
    print(f"{label:20} {attempts} attempts: RSS +{grown:,.0f} kB, {grown / attempts:.2f} kB each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=600)
    parser.add_argument("--mode", choices=("pinned", "unpinned"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        measure(args.attempts, args.mode == "pinned")
        return
    for mode in ("unpinned", "pinned"):
        cmd = [sys.executable, __file__, "--attempts", str(args.attempts), "--mode", mode]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
