"""`pi-monitor replay` and `check-config`: JSON Lines out, every fixture's expected outcome."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from pi_monitor.classifier import CryClassifier
from pi_monitor.cli import main
from pi_monitor.config import DetectorSettings
from pi_monitor.replay import replay_paths

ONSET_TOLERANCE_S = 0.6
END_TOLERANCE_S = 0.9


def replay(capsys, *args: str) -> tuple[int, list[dict], str]:
    code = main(["replay", *args])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_every_fixture_gives_its_expected_outcome(
    capsys, test_model, fixtures_dir, expected_fixtures
) -> None:
    for name, expected in expected_fixtures.items():
        code, events, err = replay(capsys, "--model", str(test_model), str(fixtures_dir / name))
        assert code == expected["exit"], (name, err)
        if "error" in expected:
            assert f"{name}: {expected['error']}" in err
            assert err.startswith("pi-monitor: error: ") and "Traceback" not in err
        onsets = [e for e in events if e["type"] == "cry_onset"]
        ends = [e for e in events if e["type"] == "cry_end"]
        cries = expected.get("cries", [])
        assert len(onsets) == len(ends) == len(cries), (name, events)
        for onset, end, (start, stop) in zip(onsets, ends, cries, strict=True):
            assert abs(onset["t"] - start) <= ONSET_TOLERANCE_S, (name, onset)
            assert abs(end["t"] - stop) <= END_TOLERANCE_S, (name, end)
            assert onset["emitted_t"] >= onset["t"] and end["onset_t"] == onset["t"]


def test_a_bad_file_among_good_ones_is_reported_after_the_others(
    capsys, test_model, fixtures_dir
) -> None:
    files = ["cry_like_16k.wav", "truncated_header.wav", "pcm8_8k.wav", "nowhere.wav"]
    code, events, err = replay(
        capsys, "--model", str(test_model), *(str(fixtures_dir / f) for f in files)
    )
    assert code == 2
    assert {e["file"] for e in events} == {
        str(fixtures_dir / "cry_like_16k.wav"),
        str(fixtures_dir / "pcm8_8k.wav"),
    }
    assert "truncated_header.wav: truncated WAV header" in err
    assert "nowhere.wav: no such file" in err
    assert len(err.strip().splitlines()) == 2


def test_a_directory_replays_every_audio_file_under_it_each_from_time_zero(
    capsys, test_model, fixtures_dir, tmp_path
) -> None:
    for name in ("cry_like_16k.wav", "pcm8_8k.wav"):
        (tmp_path / name).write_bytes((fixtures_dir / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not audio")
    code, events, _ = replay(capsys, "--model", str(test_model), str(tmp_path))
    assert code == 0
    onsets = {e["file"]: e["t"] for e in events if e["type"] == "cry_onset"}
    assert onsets[str(tmp_path / "pcm8_8k.wav")] < 1.5  # the second file restarts at 0
    assert onsets[str(tmp_path / "cry_like_16k.wav")] == pytest.approx(3.0, abs=0.6)


def test_scores_option_adds_a_line_per_window_with_score_and_logit(
    capsys, test_model, fixtures_dir
) -> None:
    path = str(fixtures_dir / "cry_like_16k.wav")
    _, events, _ = replay(capsys, "--model", str(test_model), "--scores", path)
    scores = [e for e in events if e["type"] == "score"]
    assert len(scores) == pytest.approx((12 - 1) / 0.25 + 1, abs=1)
    assert all(set(e) == {"type", "t", "score", "logit", "file"} for e in scores)


def test_out_option_writes_the_same_lines_to_a_file(
    capsys, test_model, fixtures_dir, tmp_path
) -> None:
    path = str(fixtures_dir / "cry_like_16k.wav")
    _, stdout_events, _ = replay(capsys, "--model", str(test_model), path)
    out = tmp_path / "events.jsonl"
    code, printed, _ = replay(capsys, "--model", str(test_model), "--out", str(out), path)
    assert code == 0 and printed == []
    assert [json.loads(x) for x in out.read_text().splitlines()] == stdout_events


def test_events_do_not_depend_on_the_read_block_size(capsys, test_model, fixtures_dir) -> None:
    path = str(fixtures_dir / "stereo_44k1.wav")
    runs = [
        replay(capsys, "--model", str(test_model), "--block-frames", n, path)[1]
        for n in ("1", "441", "48000")
    ]
    assert runs[0] == runs[1] == runs[2] and runs[0]


def test_config_errors_exit_2_with_one_line_naming_the_key(capsys, tmp_path, fixtures_dir) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[detector]\nmerge_gap_s = -1\n")
    code, _, err = replay(capsys, "--config", str(config), str(fixtures_dir / "pcm8_8k.wav"))
    assert code == 2
    assert err.strip() == (
        f"pi-monitor: error: {config}: 'detector.merge_gap_s' = -1 is out of "
        "range; allowed 0.0 to 120.0"
    )


def test_check_config_accepts_a_good_file_and_names_a_missing_model(
    capsys, tmp_path, test_model
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(f'[model]\npath = "{test_model}"\n')
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[model]\npath = "{tmp_path / "gone.onnx"}"\n')
    assert main(["check-config", str(bad)]) == 2
    assert "gone.onnx: model file not found" in capsys.readouterr().err


def test_the_readme_replay_command_runs_the_bundled_fixture_with_the_shipped_model(
    fixtures_dir,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pi_monitor", "replay", str(fixtures_dir / "cry_like_16k.wav")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert all(
        json.loads(line)["type"] in ("cry_onset", "cry_end") for line in result.stdout.splitlines()
    )


def test_the_service_path_imports_no_librosa_numba_or_torch() -> None:
    code = (
        "import sys, pi_monitor.cli, pi_monitor.replay, pi_monitor.pipeline; "
        "bad = {'librosa', 'numba', 'torch'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_only_for_long_inputs_on_a_terminal(test_model, tmp_path) -> None:
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, np.zeros(8000 * 90, np.int16), 8000, subtype="PCM_16")
    classifier = CryClassifier(test_model)
    terminal, pipe = _Terminal(), io.StringIO()
    replay_paths([str(long_file)], classifier, DetectorSettings(), [], progress=terminal)
    replay_paths([str(long_file)], classifier, DetectorSettings(), [], progress=pipe)
    assert "100% 0:01:30/0:01:30" in terminal.getvalue()
    assert pipe.getvalue() == ""
    short_file = tmp_path / "short.wav"
    soundfile.write(short_file, np.zeros(8000 * 5, np.int16), 8000, subtype="PCM_16")
    short = _Terminal()
    replay_paths([str(short_file)], classifier, DetectorSettings(), [], progress=short)
    assert "%" not in short.getvalue()


def test_a_reader_that_stops_early_gets_no_traceback(fixtures_dir) -> None:
    """`pi-monitor replay --scores night.wav | head` must end quietly."""
    many = [str(fixtures_dir / "cry_like_16k.wav")] * 20  # ~190 kB: more than a pipe holds
    replay = subprocess.Popen(
        [sys.executable, "-m", "pi_monitor", "replay", "--scores", *many],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert replay.stdout is not None and replay.stderr is not None
    replay.stdout.readline()
    replay.stdout.close()
    err = replay.stderr.read().decode()
    assert replay.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err
