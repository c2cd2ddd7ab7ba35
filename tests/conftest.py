"""Shared fixtures: a test model with known behaviour, the generated audio fixtures, the corpus."""

from __future__ import annotations

import json
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
