"""`pi-monitor` in a child process: for exit codes, stderr and limits a test cannot set on itself.

`unprivileged=True` runs it as a user who cannot read what its mode forbids: as is for a normal
user; for root (CI containers), through `setpriv` without the capabilities that let root read
any file, so a `chmod 000` file really is unreadable to it.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT_S = 120
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_cli(
    *args: str,
    unprivileged: bool = False,
    memory_limit: int | None = None,
    cwd: Path | None = None,
    stdout: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """`pi-monitor ARGS`; `memory_limit` caps its address space (bytes) so that a bug that reads
    without bound fails with MemoryError instead of taking the machine's memory."""
    prefix = _unprivileged_prefix() if unprivileged else []

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [*prefix, sys.executable, "-m", "pi_monitor", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        preexec_fn=limit if memory_limit is not None else None,
    )


def _unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): root reads any file")
    return NO_OVERRIDE
