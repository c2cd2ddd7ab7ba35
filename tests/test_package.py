"""pi-monitor as a user installs it: the wheel, built from the sdist, in a fresh venv outside the
checkout with its dependencies from the package index, replays and checks a config with the model
and the template it ships, and finds the unit for `setup`, without scipy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("models/cry.onnx", "models/MODEL_CARD.md", "systemd/pi-monitor.service")
TOLERANCE_S = 0.9
TIMEOUT_S = 300


def run(*argv: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A program as a user runs it: away from the checkout, with no path pointing into it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd, env=env
    )
    assert result.returncode == 0, f"{argv}: {result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_wheel_replays_and_checks_config_in_a_fresh_venv_with_what_it_ships(
    tmp_path: Path, test_model: Path, fixtures_dir: Path, expected_fixtures: dict
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=elsewhere)  # sdist, then wheel
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for shipped in SHIPPED:
        assert any(name.endswith(f"/pi_monitor/{shipped}") for name in names), shipped

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=elsewhere)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=elsewhere)
    where = run(
        venv / "bin" / "python",
        "-c",
        "import importlib.util as u, pi_monitor, pi_monitor.config as c, pi_monitor.install as i; "
        "print(pi_monitor.__file__, c.DEFAULT_MODEL, i.TEMPLATES, u.find_spec('scipy'))",
        cwd=elsewhere,
    ).stdout.split()
    package, model, templates = (Path(p) for p in where[:3])
    assert package.is_relative_to(venv) and not package.is_relative_to(ROOT)
    assert model == package.parent / "models" / "cry.onnx" and model.is_file()
    assert where[3] == "None"  # the service needs no scipy

    pi_monitor = venv / "bin" / "pi-monitor"
    cry, quiet = fixtures_dir / "cry_like_16k.wav", fixtures_dir / "quiet_noise_16k.wav"
    scores = run(pi_monitor, "replay", "--scores", cry, cwd=elsewhere).stdout.splitlines()
    assert len(scores) > 40 and all(0 <= json.loads(line)["score"] <= 1 for line in scores)
    main_job = run(pi_monitor, "replay", fixtures_dir / "synthetic_cry_16k.wav", cwd=elsewhere)
    found = [json.loads(line)["type"] for line in main_job.stdout.splitlines()]
    assert found == ["cry_onset", "cry_end"], "the README's main job, with the shipped model"

    lines = run(pi_monitor, "replay", "--model", test_model, cry, quiet, cwd=elsewhere).stdout
    events = [json.loads(line) for line in lines.splitlines()]
    for fixture in (cry, quiet):
        found = [
            (e["onset_t"], e["t"])
            for e in events
            if e["type"] == "cry_end" and e["file"] == str(fixture)
        ]
        expected = expected_fixtures[fixture.name]["cries"]
        assert len(found) == len(expected), (fixture.name, events)
        for (onset, end), (start, stop) in zip(found, expected, strict=True):
            assert abs(onset - start) <= TOLERANCE_S and abs(end - stop) <= TOLERANCE_S

    example = templates / "config.toml.example"
    checked = run(pi_monitor, "check-config", example, cwd=elsewhere).stdout
    assert checked.startswith(f"{example}: OK (model {model}, 16000 Hz")

    plan = run(pi_monitor, "setup", "--dry-run", cwd=elsewhere).stdout
    assert f"/etc/systemd/system/pi-monitor.service, running {pi_monitor.resolve()}\n" in plan
    assert "write /etc/pi-monitor/config.toml from the template" in plan
