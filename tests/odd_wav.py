"""WAV files with whatever a header may claim, as corrupt or hostile files do."""

from __future__ import annotations

import struct
from pathlib import Path


def wav_with_header(
    path: Path, rate: int, channels: int = 1, frames: int = 800, fmt_size: int = 16
) -> Path:
    """A 16-bit PCM WAV whose header says `rate` and `channels`, whatever they are; a `fmt_size`
    over 16 is declared but not written, as in a corrupt file."""
    fmt = struct.pack(
        "<HHIIHH",
        1,
        channels,
        rate,
        (rate * channels * 2) & 0xFFFFFFFF,
        (channels * 2) & 0xFFFF,
        16,
    )
    data = bytes(frames * channels * 2)
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
