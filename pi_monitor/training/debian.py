"""Debian packages as a source of audio: download, unpack, read the licence, open Qt bundles.

Only `apt-get download` (no root, nothing installed) and `dpkg-deb -x` into a folder of ours,
so any Debian machine with the archive in its apt sources can rebuild the transfer set.
Licences come from each package's /usr/share/doc/<pkg>/copyright; the machine-readable
(DEP-5) form is read per file where a package mixes licences.
"""

from __future__ import annotations

import fnmatch
import re
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path


class PackageError(RuntimeError):
    """A package could not be fetched or does not say what the catalogue expects."""


def fetch(package: str, into: Path) -> Path:
    """Download `package` with apt-get and unpack it under `into/package`; returns that root."""
    into.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(
        ["apt-get", "download", "-q", package], cwd=into, capture_output=True, text=True
    )
    debs = sorted(into.glob(f"{package}_*.deb"))
    if got.returncode != 0 or not debs:
        raise PackageError(
            f"apt-get download {package} failed ({got.stderr.strip()[-300:]}); this machine's "
            "apt sources need Debian main (run `apt-get update`), or leave the package out"
        )
    root = into / package
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (root / ".version").write_text(version + "\n")
    debs[0].unlink()
    return root


def version(root: Path) -> str:
    """The Debian version `fetch` unpacked at `root` ('' when not recorded)."""
    path = root / ".version"
    return path.read_text().strip() if path.is_file() else ""


def copyright_text(root: Path, package: str) -> str:
    path = root / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        raise PackageError(f"{package}: no {path.relative_to(root)}; cannot tell its licence")
    return path.read_text(errors="replace")


def dep5_licence(copyright: str, path: str) -> str | None:
    """The licence the DEP-5 copyright gives `path` (the last matching Files stanza wins)."""
    found = None
    for block in re.split(r"\n\s*\n", copyright):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", block, re.MULTILINE)
        licence = re.search(r"^License:[ \t]*(\S.*)$", block, re.MULTILINE)
        if files and licence and any(fnmatch.fnmatchcase(path, p) for p in files[1].split()):
            found = licence[1].strip()
    return found


def rcc_entries(path: Path) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of each file in a compiled Qt resource bundle (.rcc, format 1-3).

    zlib-compressed entries are inflated; zstd ones (flag 4) are skipped, as the standard
    library cannot read them.
    """
    data = path.read_bytes()
    if data[:4] != b"qres":
        raise PackageError(f"{path}: not a Qt resource bundle (no 'qres' magic)")
    fmt, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node = 14 if fmt == 1 else 22

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * n].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        at = tree + index * node
        name_offset, flags = struct.unpack(">IH", data[at : at + 6])
        here = prefix + (name(name_offset) if index else "")
        if flags & 2:  # directory
            count, first = struct.unpack(">II", data[at + 6 : at + 14])
            for child in range(first, first + count):
                yield from walk(child, here + "/")
            return
        (offset,) = struct.unpack(">I", data[at + 10 : at + 14])
        (size,) = struct.unpack(">I", data[payload + offset : payload + offset + 4])
        blob = data[payload + offset + 4 : payload + offset + 4 + size]
        if flags & 4:
            return
        yield here, zlib.decompress(blob[4:]) if flags & 1 else blob

    yield from walk(0, "")
