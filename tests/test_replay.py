"""`pi-monitor replay` and `check-config`: JSON Lines out, every fixture's expected outcome."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from cli_run import run_cli
from odd_wav import wav_with_header

from pi_monitor.classifier import CryClassifier
from pi_monitor.cli import main
from pi_monitor.config import DEFAULT_MODEL, Settings
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


def test_check_config_shows_the_sure_threshold_in_force_and_refuses_one_below_on(
    capsys, tmp_path
) -> None:
    """The shipped model's sure-threshold reports at once; a parent can see and override it."""
    path = tmp_path / "c.toml"
    path.write_text("[detector]\nmin_bout_s = 1.0\n")
    assert main(["check-config", str(path)]) == 0
    sure = CryClassifier(DEFAULT_MODEL).info.sure_threshold
    assert f"/ sure {sure:.2f}, confirmation 1 s)" in capsys.readouterr().out
    path.write_text("[detector]\nsure_threshold = 1\n")
    assert main(["check-config", str(path)]) == 0
    assert "/ sure none," in capsys.readouterr().out
    path.write_text("[detector]\nsure_threshold = 0.9\n")
    assert main(["check-config", str(path)]) == 2
    assert "'detector.sure_threshold' (0.9) must not be below" in capsys.readouterr().err


def test_the_readme_replay_command_runs_the_bundled_fixture_with_the_shipped_model(
    fixtures_dir,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pi_monitor", "replay", str(fixtures_dir / "synthetic_cry_16k.wav")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["cry_onset", "cry_end"]
    assert 2.0 <= events[0]["t"] < events[1]["t"] <= 10.5  # within the synthetic crying


def test_a_replay_leaves_no_onnxruntime_telemetry_id_or_event_cache(fixtures_dir, tmp_path) -> None:
    # onnxruntime >= 1.29 keeps a device id and queued usage events in ~/.cache/Microsoft and
    # uploads them unless told not to; nothing may leave a nursery, whoever starts the process.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")} | {
        "HOME": str(tmp_path)
    }
    result = subprocess.run(
        [sys.executable, "-m", "pi_monitor", "replay", str(fixtures_dir / "cry_like_16k.wav")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".cache" / "Microsoft").exists()


def test_the_service_path_imports_no_librosa_numba_torch_or_scipy() -> None:
    # scipy is a test and training dependency only: a Pi installs without it.
    code = (
        "import sys, pi_monitor.cli, pi_monitor.replay, pi_monitor.pipeline, pi_monitor.service; "
        "bad = {'librosa', 'numba', 'torch', 'scipy'} & set(sys.modules); "
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
    replay_paths([str(long_file)], classifier, Settings(), [], progress=terminal)
    replay_paths([str(long_file)], classifier, Settings(), [], progress=pipe)
    assert "100% 0:01:30/0:01:30" in terminal.getvalue()
    assert pipe.getvalue() == ""
    short_file = tmp_path / "short.wav"
    soundfile.write(short_file, np.zeros(8000 * 5, np.int16), 8000, subtype="PCM_16")
    short = _Terminal()
    replay_paths([str(short_file)], classifier, Settings(), [], progress=short)
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


def copy_fixture(fixtures_dir, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((fixtures_dir / "cry_like_16k.wav").read_bytes())
    return path


def event_files(stdout: str) -> list[str]:
    return [json.loads(line)["file"] for line in stdout.splitlines()]


def test_out_naming_an_input_is_refused_before_anything_is_written(
    capsys, test_model, fixtures_dir, tmp_path
) -> None:
    night = copy_fixture(fixtures_dir, tmp_path / "nights" / "night.wav")
    recording = night.read_bytes()
    for given, out in (
        (night, night),
        (night.parent, night),
        (night, tmp_path / "." / "nights" / "night.wav"),
    ):
        code, _, err = replay(capsys, "--model", str(test_model), "--out", str(out), str(given))
        assert code == 2 and "writing events there would destroy the recording" in err
        assert night.read_bytes() == recording


def test_an_unreadable_file_is_one_line_and_the_others_are_replayed(
    test_model, fixtures_dir, tmp_path
) -> None:
    first, locked, last = (
        copy_fixture(fixtures_dir, tmp_path / n) for n in ("a.wav", "b.wav", "c.wav")
    )
    locked.chmod(0)
    result = run_cli(
        "replay", "--model", str(test_model), str(first), str(locked), str(last), unprivileged=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pi-monitor: error: {locked}: cannot read (Permission denied); check the file and its "
        "permissions"
    ]
    assert sorted(set(event_files(result.stdout))) == [str(first), str(last)]


def test_an_unreadable_directory_and_a_directory_named_like_audio_are_reported(
    test_model, fixtures_dir, tmp_path
) -> None:
    locked = tmp_path / "locked"
    copy_fixture(fixtures_dir, locked / "night.wav")
    locked.chmod(0o300)  # may enter, may not list
    named = tmp_path / "tuesday.wav"
    named.mkdir()
    tree = tmp_path / "tree"
    kept = copy_fixture(fixtures_dir, tree / "monday.wav")
    (tree / "private").mkdir(mode=0)
    args = [str(locked), str(named), str(tree)]
    result = run_cli("replay", "--model", str(test_model), *args, unprivileged=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pi-monitor: error: {locked}: cannot list this directory (Permission denied); check "
        "its permissions",
        f"pi-monitor: error: {named}: a directory without audio files (.wav, .wave, .flac, .ogg) "
        "under it; give audio files or a directory of them",
        f"pi-monitor: error: {tree / 'private'}: cannot list this directory (Permission denied); "
        "check its permissions",
    ]
    assert set(event_files(result.stdout)) == {str(kept)}


def test_absurd_headers_exit_2_with_one_line_each_and_bounded_memory(tmp_path) -> None:
    """Each of these once raised MemoryError or took GBs (a 20-million-tap filter, a 4 GB read)."""
    files = [
        wav_with_header(tmp_path / "rate_max.wav", 4294967295),
        wav_with_header(tmp_path / "rate_prime.wav", 1000003),
        wav_with_header(tmp_path / "channels.wav", 16000, channels=65535, frames=4),
        wav_with_header(tmp_path / "fmt_4gb.wav", 16000, fmt_size=0xFFFFFFF0),
    ]
    result = run_cli("replay", *map(str, files), memory_limit=1 << 30)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[2].strip() for line in lines] == [str(f) for f in files]
    assert all(line.startswith("pi-monitor: error: ") for line in lines), lines


def test_a_huge_read_block_is_read_in_bounded_pieces(test_model, fixtures_dir) -> None:
    path = str(fixtures_dir / "cry_like_16k.wav")
    usual = run_cli("replay", "--model", str(test_model), path)
    huge = run_cli("replay", "--model", str(test_model), "--block-frames", "1000000000", path,
                   memory_limit=1 << 30)  # fmt: skip
    assert huge.returncode == 0, huge.stderr
    assert huge.stdout == usual.stdout and usual.stdout


def test_scores_are_always_json_numbers(test_model, tmp_path) -> None:
    """NaN is not JSON: hot float audio is clipped, a NaN sample is an error for its file."""
    x = 0.2 * np.sin(2 * np.pi * 450 * np.arange(16000 * 4) / 16000)
    hot, corrupt = tmp_path / "hot.wav", tmp_path / "corrupt.wav"
    soundfile.write(hot, x * 1e30, 16000, subtype="FLOAT")
    x[16000 * 3] = np.nan
    soundfile.write(corrupt, x, 16000, subtype="FLOAT")
    result = run_cli("replay", "--model", str(test_model), "--scores", str(hot), str(corrupt))

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in the output")

    lines = [json.loads(line, parse_constant=no_constants) for line in result.stdout.splitlines()]
    scored = {e["file"] for e in lines if e["type"] == "score"}
    assert scored == {str(hot), str(corrupt)}
    assert result.returncode == 2
    assert f"{corrupt}: a sample that is not a number (NaN or infinity) at 3.00 s" in result.stderr


@pytest.mark.parametrize("to_stdout", [False, True])
def test_a_full_output_is_one_line_not_a_traceback(fixtures_dir, to_stdout: bool) -> None:
    path = str(fixtures_dir / "cry_like_16k.wav")
    if to_stdout:
        with open("/dev/full", "w") as full:
            result = run_cli("replay", "--scores", path, stdout=full.fileno())
        where = "standard output"
    else:
        result = run_cli("replay", "--scores", "--out", "/dev/full", path)
        where = "/dev/full"
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pi-monitor: error: {where}: cannot write the events (No space left on device); free "
        "some space or give another --out"
    ]


def test_a_start_time_with_no_room_for_the_audio_is_refused(fixtures_dir) -> None:
    path = str(fixtures_dir / "cry_like_16k.wav")
    result = run_cli("replay", "--start", "9999-12-31T23:59:59", path)
    assert result.returncode == 2
    assert "'9999-12-31T23:59:59' is out of range; give a time between the years 2 and 9998" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
