"""Shared fixtures: a test model with known behaviour, the generated audio fixtures, the corpus."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from model_factory import loudness_model

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "audio"
CORPUS = ROOT.parent / "shared" / "cry-data"


@pytest.fixture(scope="session")
def test_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loudness 'classifier': loud windows score high, so replay tests need no trained model."""
    return loudness_model(tmp_path_factory.mktemp("model") / "loudness.onnx")


@pytest.fixture(scope="session")
def expected_fixtures() -> dict[str, dict]:
    return json.loads((FIXTURES / "expected.json").read_text())


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "manifest.csv").is_file():
        pytest.skip(
            f"training corpus not found at {CORPUS} (it sits beside the project as ../shared)"
        )
    return CORPUS


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


# ---- MQTT: a real mosquitto broker per test ----


@pytest.fixture
def broker(tmp_path: Path):
    """A fresh mosquitto on a free loopback port; the test may kill() and start() it again."""
    from mosquitto import Mosquitto, mosquitto_available

    if not mosquitto_available():
        pytest.skip("mosquitto not installed (/usr/sbin/mosquitto): apt-get install mosquitto")
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.kill()


# ---- a disk that fills up: a real tmpfs, so writes fail with ENOSPC as on a full SD card ----


class SmallDisk:
    """A tmpfs of `size_kb` at `path`: `fill()` leaves no room, `free()` gives it back,
    `read_only()` / `writable()` remount it."""

    def __init__(self, path: Path, size_kb: int) -> None:
        self.path = path
        self.size_kb = size_kb
        self._filler = path / "filler"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kb}k,mode=0755", "tmpfs", self.path],
            check=True,
            capture_output=True,
        )

    def fill(self) -> None:
        """Write until the disk says ENOSPC: nothing more fits (a few bytes may, in a page)."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        self._remount("ro")

    def writable(self) -> None:
        self._remount("rw")

    def _remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", self.path], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB disk of its own (a tmpfs: needs root or CAP_SYS_ADMIN, as CI has)."""
    disk = SmallDisk(tmp_path / "disk", 1024)
    try:
        disk.mount()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {e}")
    yield disk
    disk.unmount()
