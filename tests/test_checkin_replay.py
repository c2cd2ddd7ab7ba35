"""`pi-monitor replay --method/--night/--start`: a generated-audio night through the whole chain.

The audio is synthetic (fixtures/generate.py's cry-like bursts, loudness test model), so the
detector's onsets sit within a fraction of a second of the scripted ones and the coach's
check-ins must land at onset + the table's minutes exactly.
"""

from __future__ import annotations

import datetime
import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import soundfile as sf

from pi_monitor.cli import main
from pi_monitor.config import DEFAULT_GRADUATED_MINUTES

ROOT = Path(__file__).resolve().parent.parent
RATE = 8000
START = "2024-06-03T19:30:00+01:00"
# night 1: a 21 min bout, 2 min pause (same waking), 9.5 min more (the cap), settle, a 5 min waking
NIGHT_1 = [
    (60, False),
    (1260, True),
    (120, False),
    (570, True),
    (390, False),
    (300, True),
    (360, False),
]
LONG_CRY = [(60, False), (6600, True), (30, False)]


def write_night(path: Path, segments: list[tuple[int, bool]]) -> Path:
    """Quiet and crying segments, written a minute at a time to keep memory small."""
    spec = importlib.util.spec_from_file_location("generate", ROOT / "fixtures" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    with sf.SoundFile(path, "w", RATE, 1, "PCM_16") as f:
        for seconds, crying in segments:
            for left in range(seconds, 0, -60):
                n = min(60, left)
                start, end = (0.0, n) if crying else (n + 1.0, n + 1.0)
                f.write(generate.cry_like(RATE, n, start, end))
    return path


def cry_starts(segments: list[tuple[int, bool]]) -> list[float]:
    bounds = list(itertools.accumulate(s for s, _ in segments))
    return [float(b - s) for (s, crying), b in zip(segments, bounds, strict=True) if crying]


def rehearse(capsys, model: Path, wav: Path, config: Path, *flags: str) -> list[dict]:
    code = main(["replay", "--model", str(model), "--config", str(config), str(wav), *flags])
    out = capsys.readouterr().out
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text('[checkin]\nbirth_date = "2023-10-01"\n')
    return path


def test_a_generated_night_replays_with_every_check_in_on_time(
    capsys, test_model, config, tmp_path
):
    wav = write_night(tmp_path / "night1.wav", NIGHT_1)
    events = rehearse(
        capsys, test_model, wav, config, "--method", "graduated", "--night", "1", "--start", START
    )
    onsets = [e for e in events if e["type"] == "cry_onset"]
    ends = [e for e in events if e["type"] == "cry_end"]
    truth = cry_starts(NIGHT_1)
    assert [round(o["t"]) for o in onsets] == truth
    first, resumed, second = (o["t"] for o in onsets)
    dues = [e for e in events if e["type"] == "checkin_due"]
    assert [(d["episode"], d["checkin"]) for d in dues] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)]
    table = [180.0, 480.0, 1080.0, 1680.0]
    assert [d["t"] for d in dues] == pytest.approx(
        [first + s for s in table] + [second + 180.0], abs=1e-6
    )
    assert [round(d["t"]) for d in dues] == [truth[0] + s for s in table] + [truth[2] + 180]
    (escalation,) = [e for e in events if e["type"] == "escalation"]
    cried = ends[0]["t"] - first
    assert escalation["t"] == pytest.approx(resumed + 1800.0 - cried, abs=1e-6)
    assert abs(escalation["t"] - (truth[1] + 1800 - 1260)) < 1.0
    settled = [e for e in events if e["type"] == "settled"]
    assert [s["episode"] for s in settled] == [1, 2]
    assert settled[0]["t"] == pytest.approx(ends[1]["t"] + 300.0)
    start = datetime.datetime.fromisoformat(START)
    for e in events:
        assert datetime.datetime.fromisoformat(e["wall"]) - start == pytest.approx(
            datetime.timedelta(seconds=e["t"]), abs=datetime.timedelta(milliseconds=1)
        )


def test_replay_without_coach_flags_prints_detector_events_only(
    capsys, test_model, config, fixtures_dir
):
    events = rehearse(capsys, test_model, fixtures_dir / "cry_like_16k.wav", config)
    assert {e["type"] for e in events} == {"cry_onset", "cry_end"}
    assert all("wall" not in e for e in events)


def test_replay_refuses_an_extinction_method_for_a_young_baby(capsys, test_model, tmp_path):
    config = tmp_path / "young.toml"
    born = datetime.date.today() - datetime.timedelta(days=60)
    config.write_text(f'[checkin]\nbirth_date = "{born}"\n')
    code = main(["replay", "--model", str(test_model), "--config", str(config), "x.wav",
                 "--method", "extinction"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "under 4 months" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("night", range(2, 8))
def test_generated_audio_check_ins_follow_the_table_for_nights_2_to_7(
    capsys, test_model, config, tmp_path_factory, night
):
    wav = tmp_path_factory.getbasetemp() / "long_cry.wav"
    if not wav.exists():
        write_night(wav, LONG_CRY)
    events = rehearse(
        capsys, test_model, wav, config, "--method", "graduated", "--night", str(night)
    )
    (onset,) = [e["t"] for e in events if e["type"] == "cry_onset"]
    row = DEFAULT_GRADUATED_MINUTES[night - 1]
    waits = [m * 60.0 for m in [*row, row[-1]]]
    expected = [onset + s for s in itertools.accumulate(waits)]
    dues = [e["t"] for e in events if e["type"] == "checkin_due"]
    assert dues[: len(expected)] == pytest.approx(expected, abs=1e-6)
    assert [round(t) for t in expected] == [60 + round(s) for s in itertools.accumulate(waits)]
