"""A private PulseAudio server with a null sink, so the live path runs without a sound card.

PortAudio reaches it through ALSA's `pulse` plugin (Debian `libasound2-plugins`): what `paplay`
sends to the null sink comes back on its monitor, the default input. Used by the live tests and
`bench/bench_service.py`.

ALSA is given a config that knows only the pulse devices: with the system's, PortAudio
enumerates every plugin of `libasound2-plugins`, and the a52/lavrate ones load libavcodec, x265
and librsvg (about 15 MB of RSS) that a Pi capturing from its USB microphone never loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SINK = "pimon_null"
PULSE_ONLY_ALSA = """pcm.!default { type pulse }
ctl.!default { type pulse }
pcm.pulse { type pulse }
ctl.pulse { type pulse }
"""
START_TIMEOUT_S = 10.0


class PulseUnavailable(RuntimeError):
    """PulseAudio cannot run here; the message says why (for a test's skip reason)."""


class PulseServer:
    """`start()` a server in `workdir`; `env` reaches it; `play()` a file; `stop()`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        runtime = workdir / "runtime"
        home = workdir / "home"
        for d in (runtime, home):
            d.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        alsa_config = workdir / "asound.conf"
        alsa_config.write_text(PULSE_ONLY_ALSA)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "PULSE_RUNTIME_PATH": str(runtime),
            "PULSE_SERVER": f"unix:{runtime / 'native'}",
            "ALSA_CONFIG_PATH": str(alsa_config),
        }
        self.log_path = workdir / "pulseaudio.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for tool in ("pulseaudio", "pactl", "paplay"):
            if shutil.which(tool) is None:
                raise PulseUnavailable(f"{tool} not installed (apt-get install pulseaudio-utils)")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    "pulseaudio",
                    "-n",  # no default.pa: only the modules below
                    "--daemonize=no",
                    "--exit-idle-time=-1",
                    "--use-pid-file=no",
                    "--log-target=stderr",
                    "--load=module-native-protocol-unix",
                    f"--load=module-null-sink sink_name={SINK}",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PulseUnavailable(f"pulseaudio exited: {self._log_tail()}")
            if self._pactl("info").returncode == 0:
                self._pactl("set-default-source", f"{SINK}.monitor")
                return
            time.sleep(0.1)
        self.stop()
        raise PulseUnavailable(f"pulseaudio did not answer in {START_TIMEOUT_S:.0f} s")

    def _pactl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, timeout=10)

    def _log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "no output"

    def play(self, path: Path) -> subprocess.Popen[bytes]:
        """Start playing `path` into the null sink (low latency, so it starts at once)."""
        return subprocess.Popen(
            ["paplay", "--latency-msec=20", f"--device={SINK}", str(path)], env=self.env
        )

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
