"""`pi-monitor setup` in a throwaway system tree (`--root`): what it creates, that a second run
changes nothing, that a config is never overwritten, and that systemd accepts the unit it writes.

The tree starts as a Raspberry Pi OS image's account files (root, group audio); `useradd
--prefix` and `systemctl --root` work on it for real, so the running system is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli

from pi_monitor import capture, mqtt, service
from pi_monitor.config import DEFAULT_CONFIG
from pi_monitor.install import (
    CACHE_ROOT,
    HIDDEN_FROM_SERVICE,
    STATE_DIR,
    TEMPLATES,
    UNIT,
    Target,
    compiled_for_unit,
    compiled_is_current,
    installed_executable,
    problems,
)

TEMPLATE = (TEMPLATES / "config.toml.example").read_text()
NOBODY = 65534


@pytest.fixture
def executable() -> Path:
    """This checkout's pi-monitor, as setup finds it by default: the unit runs it and setup runs
    its check-config, so it must be the real one."""
    return installed_executable()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A system tree with the account files of a fresh Raspberry Pi OS image."""
    etc = tmp_path / "root" / "etc"
    etc.mkdir(parents=True)
    for name, text, mode in (
        ("passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
        ("group", "root:x:0:\naudio:x:29:\n", 0o644),
        ("shadow", "root:*:19000:0:99999:7:::\n", 0o640),
        ("gshadow", "root:*::\naudio:*::\n", 0o640),
    ):
        (etc / name).write_text(text)
        (etc / name).chmod(mode)
    return tmp_path / "root"


def setup(root: Path, executable: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("setup", "--root", str(root), "--executable", str(executable), *args)


def inside(root: Path, path: Path) -> Path:
    return Target(root, Path("/")).path(path)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file, directory and link under `root`: kind, mode, owner, content, mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            content: object = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = None
        found[str(path.relative_to(root))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            content,
        )
    return found


def account(root: Path, table: str, name: str) -> list[str]:
    rows = [line.split(":") for line in (root / "etc" / table).read_text().splitlines()]
    return next(row for row in rows if row[0] == name)


def test_dry_run_lists_every_step_and_changes_nothing(root: Path, executable: Path) -> None:
    before = snapshot(root)
    result = setup(root, executable, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before
    out = result.stdout
    assert "dry run: nothing is changed" in out
    for action in (
        f"$ useradd --prefix={root} --system --user-group",
        "--home-dir /var/lib/pi-monitor --shell /usr/sbin/nologin --groups audio pi-monitor",
        "mkdir /etc/pi-monitor (mode 0755, root:root)",
        "mkdir /var/lib/pi-monitor (mode 0750, pi-monitor:pi-monitor)",
        "mkdir /var/cache/pi-monitor (mode 0755, pi-monitor:pi-monitor)",
        "write /etc/pi-monitor/config.toml from the template (mode 0640, root:pi-monitor)",
        f"$ {executable} check-config {root}/etc/pi-monitor/config.toml",
        f"PYTHONPYCACHEPREFIX={root}/var/cache/pi-monitor/pycache",
        "write /etc/systemd/system/pi-monitor.service from the shipped unit (mode 0644, root:root)",
        f"$ systemctl --root={root} enable pi-monitor.service",
    ):
        assert action in out, action
    assert out.count("\n  to do ") == 9 and "\n  ok " not in out


def test_dry_run_on_the_live_system_also_reloads_and_starts_the_service(executable: Path) -> None:
    result = run_cli("setup", "--dry-run", "--executable", str(executable))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    whats = [line[11:] for line in lines if line[2:10].strip() in ("to do", "ok")]
    assert whats[-3:] == [
        "systemd has read the unit",
        "pi-monitor.service enabled (starts at boot)",
        "pi-monitor.service running",
    ]
    assert len(whats) == 11


def test_setup_creates_the_user_config_state_dir_and_enabled_unit(
    root: Path, executable: Path
) -> None:
    result = setup(root, executable)
    assert result.returncode == 0, result.stderr
    user = account(root, "passwd", "pi-monitor")
    assert user[5:] == ["/var/lib/pi-monitor", "/usr/sbin/nologin"]
    uid, gid = int(user[2]), int(user[3])
    assert int(account(root, "group", "pi-monitor")[2]) == gid
    assert "pi-monitor" in account(root, "group", "audio")[3].split(",")

    config = inside(root, DEFAULT_CONFIG)
    assert config.read_text() == TEMPLATE
    assert (config.stat().st_mode & 0o777, config.stat().st_uid, config.stat().st_gid) == (
        0o640,
        0,
        gid,
    )
    state = inside(root, STATE_DIR).stat()
    assert (state.st_mode & 0o777, state.st_uid, state.st_gid) == (0o750, uid, gid)
    assert f"checked  {config}: OK (model " in result.stdout

    unit = inside(root, UNIT).read_text()
    assert f"\nExecStart={executable} run --config /etc/pi-monitor/config.toml\n" in unit
    assert "{executable}" not in unit
    link = root / "etc/systemd/system/multi-user.target.wants/pi-monitor.service"
    assert os.readlink(link) == "/etc/systemd/system/pi-monitor.service"
    assert "pi-monitor is set up (8 changes)" in result.stdout


def test_setup_compiles_the_service_so_its_first_start_only_reads_the_files(
    root: Path, executable: Path
) -> None:
    """The unit's Python (-OO) keeps its compiled files in its cache directory; setup fills it,
    as the service user, so the service never compiles in its own (long-lived) process."""
    result = setup(root, executable)
    assert result.returncode == 0, result.stderr
    cache = inside(root, CACHE_ROOT)
    for module in (service, mqtt, capture):
        assert compiled_for_unit(cache, Path(module.__file__)).is_file(), module.__name__
    assert "done     the service compiled as the unit runs it" in result.stdout


def test_a_library_compiled_out_of_date_makes_setup_compile_again(
    root: Path, executable: Path
) -> None:
    """An upgrade of Python or of any library the service imports leaves its compiled copy out
    of date: the next setup compiles again, so the service never compiles (and holds the memory)
    itself. Python's own test decides: a header that no longer matches the source counts."""
    assert setup(root, executable).returncode == 0
    cache = inside(root, CACHE_ROOT)
    assert compiled_is_current(cache)
    library = compiled_for_unit(cache, Path(np.__file__))  # numpy's __init__, as upgraded
    header = bytearray(library.read_bytes())
    header[8:12] = bytes(4)  # the source's recorded mtime no longer matches
    library.write_bytes(bytes(header))
    assert not compiled_is_current(cache)
    result = setup(root, executable)
    assert result.returncode == 0, result.stderr
    assert "done     the service compiled as the unit runs it" in result.stdout
    assert compiled_is_current(cache)


def test_a_second_run_changes_nothing_and_says_so(root: Path, executable: Path) -> None:
    assert setup(root, executable).returncode == 0
    before = snapshot(root)
    result = setup(root, executable)
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before
    assert "nothing to change: pi-monitor was already set up" in result.stdout
    assert "  done " not in result.stdout


def test_an_existing_config_is_never_overwritten(root: Path, executable: Path) -> None:
    config = inside(root, DEFAULT_CONFIG)
    config.parent.mkdir(parents=True)
    mine = '[audio]\ndevice = "USB PnP"\n'
    config.write_text(mine)
    config.chmod(0o600)
    result = setup(root, executable)
    assert result.returncode == 0, result.stderr
    assert config.read_text() == mine and config.stat().st_mode & 0o777 == 0o600
    assert "kept as it is: setup never overwrites it" in result.stdout


def test_an_invalid_config_stops_setup_before_the_service_with_the_fix(
    root: Path, executable: Path
) -> None:
    config = inside(root, DEFAULT_CONFIG)
    config.parent.mkdir(parents=True)
    config.write_text("[mqtt]\nport = 0\n")
    result = setup(root, executable)
    assert result.returncode == 2
    assert result.stderr.startswith("pi-monitor: error: ") and result.stderr.count("\n") == 1
    assert "mqtt.port" in result.stderr and f"sudoedit {DEFAULT_CONFIG}" in result.stderr
    assert config.read_text() == "[mqtt]\nport = 0\n"
    assert not inside(root, UNIT).exists()


def test_a_user_made_by_hand_outside_audio_is_added_to_it(root: Path, executable: Path) -> None:
    with (root / "etc/passwd").open("a") as f:
        f.write("pi-monitor:x:990:990::/var/lib/pi-monitor:/usr/sbin/nologin\n")
    with (root / "etc/group").open("a") as f:
        f.write("pi-monitor:x:990:\n")
    result = setup(root, executable, "--dry-run")
    assert f"$ usermod --prefix={root} --append --groups audio pi-monitor" in result.stdout
    assert setup(root, executable).returncode == 0
    assert account(root, "group", "audio")[3] == "pi-monitor"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit_setup_writes(root: Path, executable: Path) -> None:
    assert setup(root, executable).returncode == 0
    result = subprocess.run(
        ["systemd-analyze", "verify", str(inside(root, UNIT))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def test_a_root_without_account_files_is_refused_naming_them(
    tmp_path: Path, executable: Path
) -> None:
    result = setup(tmp_path, executable)
    assert result.returncode == 2
    assert result.stderr == (
        f"pi-monitor: error: {tmp_path}/etc/passwd not found: --root needs a system tree (at "
        "least etc/passwd and etc/group, as a Raspberry Pi OS image has)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_setup_on_the_live_system_needs_root_and_says_sudo() -> None:
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if os.geteuid() != 0:
        prefix = []
    elif shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to drop to another user")
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "pi_monitor", "setup"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    # (onnxruntime may warn first that it cannot write to this user's home)
    error = result.stderr.splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error.startswith("pi-monitor: error: setup changes the system")
    assert "`sudo pi-monitor setup`" in error


def test_a_system_without_systemd_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, executable: Path
) -> None:
    monkeypatch.setattr("pi_monitor.install.SYSTEMD_RUNNING", tmp_path / "no-systemd")
    found = problems(Target(Path("/"), executable), dry_run=False)
    assert any(p.startswith("systemd is not running here") and "--root DIR" in p for p in found)


@pytest.mark.parametrize(
    "interpreter",
    [
        "/home/pi/.pyenv/versions/3.11.2/bin/python3",
        "/root/.local/pipx/venvs/pi-monitor/bin/python",
    ],
)
def test_a_program_the_units_sandbox_hides_is_refused_with_the_system_wide_install(
    interpreter: str, tmp_path: Path
) -> None:
    script = tmp_path / "pi-monitor"
    script.write_text(f"#!{interpreter}\n")
    script.chmod(0o755)
    found = problems(Target(Path("/"), script), dry_run=True)
    hides = [p for p in found if f"its interpreter {interpreter} lies under /" in p]
    assert len(hides) == 1 and "sudo PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin" in hides[0]
    in_tmp = [p for p in found if f"its program {script} lies under" in p]
    assert len(in_tmp) == any(script.is_relative_to(d) for d in HIDDEN_FROM_SERVICE)


def test_the_unit_runs_the_real_file_behind_a_pipx_link(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = tmp_path / "pipx" / "venvs" / "pi-monitor" / "bin" / "pi-monitor"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\n")
    link = tmp_path / "bin" / "pi-monitor"
    link.parent.mkdir()
    link.symlink_to(real)
    monkeypatch.setattr(sys, "argv", [str(link), "setup"])
    assert installed_executable() == real
