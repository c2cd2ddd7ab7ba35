"""`pi-monitor setup`: docs/INSTALL.md's steps on a Raspberry Pi, as one idempotent command.

Setup is planned first, as data: each step names what it makes so and, unless that already
holds, the action that does it. `--dry-run` prints the plan; a run applies it in order and says
what changed, so a second run changes nothing. With `--root DIR` every path lies under DIR and
the user and the unit are made there (`useradd --prefix`, `systemctl --root`): the running
system is never touched, which is how the tests run it and how an SD-card image is prepared.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pi_monitor.config import DEFAULT_CONFIG, PACKAGE_DATA

USER = "pi-monitor"  # the unit's User= and Group=
AUDIO_GROUP = "audio"  # the unit's SupplementaryGroups=: the sound devices
STATE_DIR = Path("/var/lib/pi-monitor")  # the unit's StateDirectory=, and the user's home
CACHE_ROOT = Path("/var/cache")  # `%C` in the unit; its CacheDirectory= is CACHE_ROOT/pi-monitor
NOT_FROM_SYSTEMD = "PYTHONDONTWRITEBYTECODE"  # a shell's setting the unit's Python never sees
SERVICE = "pi-monitor.service"
UNIT = Path("/etc/systemd/system") / SERVICE
TEMPLATES = PACKAGE_DATA / "systemd"
EXECUTABLE_MARK = "{executable}"  # the unit template's ExecStart program
# The unit's sandbox hides these from the service (ProtectHome=yes, PrivateTmp=yes): a pi-monitor
# installed under them (pipx without sudo puts it in ~/.local) could never start.
HIDDEN_FROM_SERVICE = (
    Path("/home"),
    Path("/root"),
    Path("/run/user"),
    Path("/tmp"),
    Path("/var/tmp"),
)
SYSTEMD_RUNNING = Path("/run/systemd/system")  # what sd_booted() checks
TOOLS = {"systemctl": "systemd", "useradd": "passwd", "usermod": "passwd", "runuser": "util-linux"}
SYSTEM_WIDE_PIPX = "sudo PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install"


class SetupError(RuntimeError):
    """Setup cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """The system being set up: `/`, or a directory standing for it (`--root`)."""

    root: Path
    executable: Path  # the pi-monitor the unit runs; setup runs its check-config too

    @property
    def live(self) -> bool:
        return self.root == Path("/")

    def path(self, system_path: Path) -> Path:
        """Where a path of the set-up system lies on this machine."""
        return self.root / system_path.relative_to("/")


@dataclass(frozen=True)
class Command:
    """A program to run; its output is shown only when it fails."""

    argv: tuple[str, ...]

    def describe(self) -> str:
        return f"$ {shlex.join(self.argv)}"


@dataclass(frozen=True)
class Placed:
    """A directory or file that setup creates, with its mode and owner."""

    path: Path
    mode: int
    owner: str
    group: str

    def permissions(self) -> str:
        return f"mode {self.mode:04o}, {self.owner}:{self.group}"


@dataclass(frozen=True)
class Directory(Placed):
    def describe(self) -> str:
        return f"mkdir {self.path} ({self.permissions()})"


@dataclass(frozen=True)
class File(Placed):
    text: str
    source: str  # where the text comes from, for the reader of a dry run

    def describe(self) -> str:
        return f"write {self.path} from {self.source} ({self.permissions()})"


@dataclass(frozen=True)
class Check(Command):
    """`pi-monitor check-config` as the service will read the file: changes nothing, and stops
    setup before the service is installed when the config is not usable."""

    config: Path


Action = Command | Directory | File


@dataclass(frozen=True)
class Step:
    """What setup makes so, and the action that does it (None: it already is)."""

    what: str
    action: Action | None


# --- what is there -----------------------------------------------------------------------


@dataclass(frozen=True)
class Accounts:
    """Users and groups of the target, from its /etc/passwd and /etc/group (what useradd edits)."""

    users: dict[str, tuple[int, int]]  # name: (uid, primary gid)
    groups: dict[str, tuple[int, frozenset[str]]]  # name: (gid, members)

    @classmethod
    def read(cls, target: Target) -> Accounts:
        users = {
            f[0]: (int(f[2]), int(f[3])) for f in _colon_rows(target.path(Path("/etc/passwd")), 4)
        }
        groups = {
            f[0]: (int(f[2]), frozenset(filter(None, f[3].split(","))))
            for f in _colon_rows(target.path(Path("/etc/group")), 4)
        }
        return cls(users, groups)

    def in_group(self, user: str, group: str) -> bool:
        if group not in self.groups or user not in self.users:
            return False
        gid, members = self.groups[group]
        return user in members or self.users[user][1] == gid

    def ids(self, owner: str, group: str) -> tuple[int, int]:
        if owner not in self.users or group not in self.groups:
            raise SetupError(
                f"user {owner} or group {group} is missing from the target's /etc/passwd or "
                "/etc/group; run setup again"
            )
        return self.users[owner][0], self.groups[group][0]


def _colon_rows(path: Path, fields: int) -> list[list[str]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise SetupError(f"{path}: cannot read it ({e.strerror})") from None
    rows = [line.split(":") for line in lines if line and not line.startswith("#")]
    return [row for row in rows if len(row) >= fields and row[2].isdigit()]


def installed_executable() -> Path:
    """The pi-monitor being run, as the unit must name it: the console script this process was
    started as (a pipx link resolved into its venv), else the one beside this interpreter."""
    started_as = Path(sys.argv[0])
    if started_as.name == "pi-monitor" and started_as.is_file():
        return started_as.resolve()
    return (Path(sysconfig.get_path("scripts")) / "pi-monitor").resolve()


def unit_text(executable: Path) -> str:
    """The shipped unit with its ExecStart naming `executable`."""
    return (TEMPLATES / "pi-monitor.service").read_text().replace(EXECUTABLE_MARK, str(executable))


def unit_environment(cache_root: Path) -> dict[str, str]:
    """The shipped unit's Environment= settings, with its cache directory root (`%C`) at
    `cache_root`."""
    text = (TEMPLATES / "pi-monitor.service").read_text()
    return dict(
        assignment.replace("%C", str(cache_root)).split("=", 1)
        for line in text.splitlines()
        if line.startswith("Environment=")
        for assignment in line.removeprefix("Environment=").split()
    )


def as_the_unit(env: dict[str, str], cache_root: Path) -> dict[str, str]:
    """`env` as the unit's process gets it: with the unit's Environment= settings (`%C` at
    `cache_root`), without what systemd never passes on."""
    unit = {k: v for k, v in env.items() if k != NOT_FROM_SYSTEMD}
    return unit | unit_environment(cache_root)


# What `pi-monitor run` imports, with what it imports only once it runs (sounddevice when it
# opens the microphone, idna when it connects), and pi-monitor's own files; then the list of
# every source it compiled, which the next setup checks (`compiled_is_current`).
# `bench/bench_service.py` names any file the service still compiles itself.
WARMED = "warmed-sources.txt"  # in the unit's PYTHONPYCACHEPREFIX
WARM_CODE = f"""\
import compileall, encodings.idna, sounddevice, sys, sysconfig, pi_monitor.cli, pi_monitor.service
compileall.compile_dir(pi_monitor.__path__[0], quiet=1)
specs = [getattr(m, "__spec__", None) for m in list(sys.modules.values())]
sources = {{s.origin for s in specs if s and s.cached and s.origin.endswith(".py")}}  # not frozen
try:
    with open(sys.pycache_prefix + "/{WARMED}", "w") as f:
        f.write("\\n".join(sorted(sources)))
except OSError:
    pass  # an unwritable cache (a full disk) compiled nothing either: the next setup retries
"""


def warm_argv(python: str, cache_root: Path) -> tuple[str, ...]:
    """Import the service as the unit runs it (its environment, `%C` at `cache_root`), which
    compiles its Python files into the unit's cache, so that the service's first start only reads
    them: compiling in the service itself holds about 4 MB more for as long as it runs."""
    assignments = (f"{k}={v}" for k, v in unit_environment(cache_root).items())
    return ("env", "-u", NOT_FROM_SYSTEMD, *assignments, python, "-c", WARM_CODE)


def compiled_for_unit(cache_root: Path, source: Path) -> Path:
    """Where the unit's Python (`-OO`, `PYTHONPYCACHEPREFIX`) keeps `source` compiled."""
    return _compiled_in(_pycache_prefix(cache_root), source)


def compiled_is_current(cache_root: Path) -> bool:
    """Whether every source the last warm-up compiled is still compiled as Python would accept
    it: an upgrade of Python or of any library, not only of pi-monitor, makes setup compile
    again, so the service never compiles (and holds the memory that costs) itself."""
    prefix = _pycache_prefix(cache_root)  # the unit template is read once, not per source
    try:
        sources = (prefix / WARMED).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(sources) and all(_accepted(Path(s), _compiled_in(prefix, Path(s))) for s in sources)


def _pycache_prefix(cache_root: Path) -> Path:
    return Path(unit_environment(cache_root)["PYTHONPYCACHEPREFIX"])


def _compiled_in(prefix: Path, source: Path) -> Path:
    name = f"{source.stem}.{sys.implementation.cache_tag}.opt-2.pyc"
    return prefix / source.parent.relative_to("/") / name


def _accepted(source: Path, compiled: Path) -> bool:
    """Python's own test of a timestamp-checked compiled file (PEP 552): its header holds the
    interpreter's magic number and the source's mtime and size."""
    try:
        with compiled.open("rb") as f:
            header = f.read(16)
        st = source.stat()
    except OSError:
        return False
    fields = [int.from_bytes(header[i : i + 4], "little") for i in (4, 8, 12)]
    stamp = [0, int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF]
    return header[:4] == importlib.util.MAGIC_NUMBER and fields == stamp


def _interpreter(executable: Path) -> str:
    """The Python that runs `executable` (its #! line), else this one."""
    first = executable.read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    program = first.removeprefix("#!").split()[0] if first.startswith("#!") else ""
    return program if Path(program).name.startswith("python") else sys.executable


def problems(target: Target, dry_run: bool) -> list[str]:
    """Why a run would stop before its first step, each with the fix."""
    found = []
    if target.live and not dry_run and os.geteuid() != 0:
        found.append(
            "setup changes the system (a user, /etc, a systemd unit): run it as root, "
            "`sudo pi-monitor setup`, or see what it would do with --dry-run"
        )
    if target.live and not SYSTEMD_RUNNING.is_dir():
        found.append(
            f"systemd is not running here (no {SYSTEMD_RUNNING}): the monitor runs as a systemd "
            "service; run setup on Raspberry Pi OS, or give --root DIR to prepare a system image"
        )
    if not target.live:
        found += [
            f"{target.path(Path(name))} not found: --root needs a system tree (at least "
            "etc/passwd and etc/group, as a Raspberry Pi OS image has)"
            for name in ("/etc/passwd", "/etc/group")
            if not target.path(Path(name)).is_file()
        ]
    needed = TOOLS if target.live else {t: p for t, p in TOOLS.items() if t != "runuser"}
    found += [
        f"{tool} not found: setup needs it (apt-get install {package})"
        for tool, package in needed.items()
        if shutil.which(tool) is None
    ]
    exe = target.executable
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        found.append(f"{exe} is not an executable file: give --executable the installed pi-monitor")
    elif target.live:
        found += _hidden_from_service(exe)
    return found


def _hidden_from_service(exe: Path) -> list[str]:
    """The unit's sandbox must let the service see its program and that program's interpreter
    (a venv's python may lead into a home directory, as pyenv's does)."""
    found = []
    programs = {exe: "its program"}
    try:
        with exe.open("rb") as f:
            first = f.readline(512)
    except OSError:  # executable but unreadable: a binary, not a script
        first = b""
    if first.startswith(b"#!") and first[2:].split():
        programs[Path(os.fsdecode(first[2:].split()[0])).resolve()] = "its interpreter"
    for program, role in programs.items():
        for hidden in HIDDEN_FROM_SERVICE:
            if program.is_relative_to(hidden):
                found.append(
                    f"the service could not start: {role} {program} lies under {hidden}, which "
                    "the unit's sandbox hides; install pi-monitor system-wide with the system's "
                    f"python3 ({SYSTEM_WIDE_PIPX} <wheel>, docs/INSTALL.md) and run its setup"
                )
    return found


# --- the plan ----------------------------------------------------------------------------


def plan(target: Target) -> list[Step]:
    """Every step of docs/INSTALL.md, each with its action unless the target already has it."""
    root = () if target.live else (f"--prefix={target.root}",)
    accounts = Accounts.read(target)
    user = f"system user {USER} in group {AUDIO_GROUP}"
    if USER not in accounts.users:
        add = ("useradd", *root, "--system", "--user-group", "--no-create-home")
        add += ("--home-dir", str(STATE_DIR), "--shell", "/usr/sbin/nologin")
        steps = [Step(user, Command((*add, "--groups", AUDIO_GROUP, USER)))]
    elif not accounts.in_group(USER, AUDIO_GROUP):
        steps = [Step(user, Command(("usermod", *root, "--append", "--groups", AUDIO_GROUP, USER)))]
    else:
        steps = [Step(user, None)]

    config_dir = Directory(DEFAULT_CONFIG.parent, 0o755, "root", "root")
    state_dir = Directory(STATE_DIR, 0o750, USER, USER)
    cache_dir = Directory(CACHE_ROOT / "pi-monitor", 0o755, USER, USER)  # systemd's mode for it
    for directory in (config_dir, state_dir, cache_dir):
        exists = target.path(directory.path).is_dir()
        steps.append(Step(f"directory {directory.path}", None if exists else directory))

    if target.path(DEFAULT_CONFIG).exists():
        steps.append(Step(f"{DEFAULT_CONFIG} (kept as it is: setup never overwrites it)", None))
    else:
        template = (TEMPLATES / "config.toml.example").read_text()
        config = File(DEFAULT_CONFIG, 0o640, "root", USER, template, "the template")
        steps.append(Step(f"{DEFAULT_CONFIG} from the template", config))
    check = (str(target.executable), "check-config", str(target.path(DEFAULT_CONFIG)))
    as_user = ("runuser", "-u", USER, "--") if target.live else ()
    steps.append(
        Step(f"{DEFAULT_CONFIG} passes check-config", Check((*as_user, *check), DEFAULT_CONFIG))
    )
    cache_root = target.path(CACHE_ROOT)
    warm = Command((*as_user, *warm_argv(_interpreter(target.executable), cache_root)))
    steps.append(
        Step(
            f"the service compiled as the unit runs it, in {cache_dir.path}",
            None if compiled_is_current(cache_root) else warm,
        )
    )

    text = unit_text(target.executable)
    unit_path = target.path(UNIT)
    unit_current = unit_path.is_file() and unit_path.read_text() == text
    unit = File(UNIT, 0o644, "root", "root", text, "the shipped unit")
    steps.append(Step(f"{UNIT}, running {target.executable}", None if unit_current else unit))
    systemctl = ("systemctl",) if target.live else ("systemctl", f"--root={target.root}")
    if target.live:
        reload = Command((*systemctl, "daemon-reload"))
        steps.append(Step("systemd has read the unit", None if unit_current else reload))
    enabled = all(target.path(link).is_symlink() for link in _wants_links(text))
    enable = Command((*systemctl, "enable", SERVICE))
    steps.append(Step(f"{SERVICE} enabled (starts at boot)", None if enabled else enable))
    if target.live:
        active = SYSTEMD_RUNNING.is_dir() and _is_active()
        start = "restart" if active else "start"
        needed = not active or not unit_current
        steps.append(
            Step(f"{SERVICE} running", Command((*systemctl, start, SERVICE)) if needed else None)
        )
    return steps


def _wants_links(unit: str) -> list[Path]:
    """The links `systemctl enable` makes: one per target in the unit's WantedBy=."""
    targets = [
        name
        for line in unit.splitlines()
        if line.startswith("WantedBy=")
        for name in line.removeprefix("WantedBy=").split()
    ]
    return [UNIT.parent / f"{name}.wants" / SERVICE for name in targets]


def _is_active() -> bool:
    result = subprocess.run(
        ["systemctl", "is-active", "--quiet", SERVICE], capture_output=True, timeout=30
    )
    return result.returncode == 0


# --- carrying it out ---------------------------------------------------------------------


def run_setup(target: Target, dry_run: bool, out: TextIO) -> None:
    """Print the plan (dry run) or apply it, saying what changed; SetupError when it cannot."""
    found = problems(target, dry_run)
    if found and not dry_run:
        raise SetupError(found[0])
    steps = plan(target)
    where = "" if target.live else f" under {target.root} (the running system is left alone)"
    if dry_run:
        print(f"pi-monitor setup{where}, dry run: nothing is changed", file=out)
        for problem in found:
            print(f"  a run would stop at once: {problem}", file=out)
        for step in steps:
            print(f"  {'to do' if step.action else 'ok':8} {step.what}", file=out)
            if step.action:
                print(f"  {'':8}   {step.action.describe()}", file=out)
        return
    print(f"pi-monitor setup{where}", file=out)
    changed = 0
    for step in steps:
        if step.action is None:
            print(f"  {'ok':8} {step.what}", file=out)
        elif isinstance(step.action, Check):
            for line in _check(step.action):
                print(f"  {'checked':8} {line}", file=out)
        else:
            _apply(step.action, target)
            changed += 1
            print(f"  {'done':8} {step.what}", file=out)
    if not changed:
        print("nothing to change: pi-monitor was already set up", file=out)
        return
    print(
        f"pi-monitor is set up ({changed} changes). Next: pick the microphone "
        f"(`pi-monitor devices`), set audio.device and [mqtt] with `sudoedit {DEFAULT_CONFIG}`, "
        f"then `sudo systemctl restart {SERVICE}`; `journalctl -u {SERVICE} -f` shows its events.",
        file=out,
    )


def _apply(action: Action, target: Target) -> None:
    if isinstance(action, Command):
        _run(action.argv)
        return
    here = target.path(action.path)
    uid, gid = Accounts.read(target).ids(action.owner, action.group)
    try:
        if isinstance(action, Directory):
            here.mkdir(parents=True)
            os.chown(here, uid, gid)
            here.chmod(action.mode)
            return
        here.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=here.parent, prefix=f".{here.name}.", delete=False
        ) as f:
            f.write(action.text)
        os.chown(f.name, uid, gid)
        os.chmod(f.name, action.mode)
        os.replace(f.name, here)  # whole or not at all
    except OSError as e:
        raise SetupError(f"{here}: cannot create it ({e.strerror})") from None


def _run(argv: tuple[str, ...]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    if result.returncode != 0:
        raise SetupError(f"`{shlex.join(argv)}` failed (exit {result.returncode}): {_last(result)}")


def _check(check: Check) -> list[str]:
    """check-config's verdict and warnings; an unusable config stops setup, with the fix."""
    result = subprocess.run(check.argv, capture_output=True, text=True, timeout=120, cwd="/")
    if result.returncode != 0:
        raise SetupError(
            f"{_last(result).removeprefix('pi-monitor: error: ')}; fix it (`sudoedit "
            f"{check.config}`) and run `sudo pi-monitor setup` again: it never overwrites a "
            "config, and installs the service once the config passes"
        )
    return (result.stdout + result.stderr).strip().splitlines()


def _last(result: subprocess.CompletedProcess[str]) -> str:
    """A failed program's last line of output: its error."""
    return (result.stderr.strip() or result.stdout.strip() or "no message").splitlines()[-1]
