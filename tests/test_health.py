"""Microphone health: pure logic, times in."""

from __future__ import annotations

import numpy as np
import pytest

from pi_monitor.health import LEVEL_FLOOR_DBFS, MicHealth, level_dbfs


def health() -> MicHealth:
    return MicHealth(silence_floor_dbfs=-90.0, silence_timeout_s=60.0, lost_after_s=10.0)


def feed(h: MicHealth, level: float, start: float, seconds: float, block_s: float = 0.1) -> list:
    out = []
    for i in range(round(seconds / block_s)):
        t = start + i * block_s
        out += h.on_block(t, t + block_s, level)
    return out


def test_level_is_rms_dbfs_and_ignores_dc() -> None:
    t = np.arange(16000) / 16000
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert level_dbfs(sine) == pytest.approx(-3.01, abs=0.01)
    assert level_dbfs(0.5 + 0.01 * sine) == pytest.approx(-43.01, abs=0.01)


@pytest.mark.parametrize("block", [np.zeros(800), np.full(800, 0.25), np.full(800, -1.0)])
def test_zeros_and_stuck_values_read_as_the_floor(block: np.ndarray) -> None:
    assert level_dbfs(block.astype(np.float32)) == LEVEL_FLOOR_DBFS


def test_silence_raises_mic_silent_once_after_the_timeout_and_clears() -> None:
    h = health()
    assert feed(h, -40.0, 0.0, 5.0) == []
    assert feed(h, -100.0, 5.0, 59.9) == []
    [alarm] = feed(h, -100.0, 64.9, 10.0)
    assert alarm.reason == "mic_silent" and alarm.t == pytest.approx(65.0)
    assert "check the microphone" in alarm.detail and h.problems.keys() == {"mic_silent"}
    assert feed(h, -100.0, 75.0, 120.0) == []  # not repeated while it lasts
    feed(h, -50.0, 195.0, 0.1)
    assert h.problems == {} and h.problem_detail() == ""


def test_a_sound_resets_the_silence_timer() -> None:
    h = health()
    feed(h, -100.0, 0.0, 50.0)
    feed(h, -60.0, 50.0, 0.1)
    assert feed(h, -100.0, 50.1, 59.0) == []


def test_mic_lost_after_the_configured_outage_and_cleared_by_audio() -> None:
    h = health()
    feed(h, -50.0, 0.0, 1.0)
    h.on_mic_down(1.0, "stream stopped")
    h.on_mic_down(3.0, "Device unavailable")  # retries keep the first moment
    assert h.tick(10.9) == []
    [alarm] = h.tick(11.0)
    assert alarm.reason == "mic_lost" and alarm.t == 11.0 and "Device unavailable" in alarm.detail
    assert h.tick(60.0) == [] and h.mic_down
    assert h.problem_detail().startswith("mic_lost:")
    feed(h, -50.0, 61.0, 0.1)
    assert not h.mic_down and h.problems == {}


def test_a_short_dropout_raises_nothing() -> None:
    h = health()
    h.on_mic_down(5.0, "xrun")
    feed(h, -50.0, 8.0, 0.1)
    assert h.tick(100.0) == [] and h.problems == {}
