"""Audio sources: anything that yields float32 mono blocks at the model's sample rate.

The live microphone (`capture.py`) and files (here) share this interface, so a replay makes the
same decisions the service would have made. Files are read in blocks, never whole, so an
hour-long night costs no more memory than a minute.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from pi_monitor.features import strided_frames

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg")


class AudioFileError(Exception):
    """A file that cannot be replayed (fully); the message names the file and the fix."""


class AudioSource(Protocol):
    """A stream of mono float32 blocks in [-1, 1] at `sample_rate`."""

    sample_rate: int

    def blocks(self) -> Iterator[np.ndarray]: ...


def lowpass_filter(up: int, down: int) -> np.ndarray:
    """`scipy.signal.firwin` as `resample_poly` calls it: Kaiser (beta 5) windowed sinc."""
    half_len = 10 * max(up, down)
    n = 2 * half_len + 1
    cutoff = 1.0 / max(up, down)
    h = cutoff * np.sinc(cutoff * (np.arange(n) - half_len)) * np.kaiser(n, 5.0)
    return h / h.sum() * up


class Resampler:
    """Streaming `scipy.signal.resample_poly` in numpy: same filter and alignment, any block size.

    Output p of the polyphase filter is a dot product of T taps (chosen by its phase,
    p * down mod up) with the inputs ending at p * down // up. Inputs are kept until no later
    output needs them; the stream starts and `flush` ends with zeros, as `resample_poly` pads.
    numpy only: importing scipy.signal costs a Pi seconds and tens of MB.
    """

    def __init__(self, orig_rate: int, target_rate: int) -> None:
        g = gcd(orig_rate, target_rate)
        self.up, self.down = target_rate // g, orig_rate // g
        self.passthrough = self.up == self.down
        self._n_in = 0
        self._n_out = 0
        if self.passthrough:
            return
        h = lowpass_filter(self.up, self.down)
        half_len = (len(h) - 1) // 2
        n_pre_pad = self.down - half_len % self.down  # resample_poly's alignment of output 0
        self._skip = (half_len + n_pre_pad) // self.down
        h = np.concatenate((np.zeros(n_pre_pad), h))
        self._taps = -(-len(h) // self.up)
        h = np.concatenate((h, np.zeros(self._taps * self.up - len(h))))
        # Row phi, reversed: coefficients for inputs j = last - T + 1 .. last of a phase-phi output.
        self._phases = np.ascontiguousarray(h.reshape(self._taps, self.up).T[:, ::-1])
        self._buf = np.zeros(self._taps - 1)  # inputs before the stream are zeros
        self._buf_start = -(self._taps - 1)

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.passthrough:
            return block.astype(np.float32, copy=False)
        self._buf = np.concatenate((self._buf, block))
        self._n_in += len(block)
        total = -(-self._n_in * self.up // self.down)
        return self._emit(total)  # output p < total needs inputs up to n_in - 1 only

    def flush(self) -> np.ndarray:
        """Remaining outputs at the end of the stream: ceil(n_in * up / down) in all."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        self._buf = np.concatenate((self._buf, np.zeros(self._skip * self.down // self.up + 2)))
        return self._emit(-(-self._n_in * self.up // self.down) + self._skip)

    def _emit(self, p_end: int) -> np.ndarray:
        p = np.arange(self._n_out + self._skip, p_end)
        if len(p) == 0:
            return np.zeros(0, dtype=np.float32)
        last = p * self.down // self.up
        windows = strided_frames(self._buf, self._taps, 1)
        rows = windows[last - self._taps + 1 - self._buf_start]
        if self.up == 1:
            out = rows @ self._phases[0]
        else:
            out = np.einsum("nt,nt->n", rows, self._phases[(p * self.down) % self.up])
        self._n_out += len(p)
        keep_from = (p[-1] + 1) * self.down // self.up - self._taps + 1
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
        return out.astype(np.float32)


@dataclass(frozen=True)
class WavFormat:
    """What the `fmt ` chunk says, and where the samples are."""

    channels: int
    sample_rate: int
    bits: int
    is_float: bool
    data_offset: int
    data_bytes: int | None  # None: header gives no usable size (streamed WAV), read to EOF

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8


def read_wav_header(f: BinaryIO, name: str) -> WavFormat:
    """Parse RIFF/WAVE chunks up to `data`; PCM 8/16/24/32-bit, float 32/64, extensible."""
    head = f.read(12)
    if len(head) == 0:
        raise AudioFileError(f"{name}: empty file; record or copy it again")
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFileError(f"{name}: not a WAV file (no RIFF/WAVE header); convert it to WAV")
    fmt: tuple[int, int, int, int] | None = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            missing = "fmt " if fmt is None else "data"
            raise AudioFileError(
                f"{name}: truncated WAV header (no '{missing}' chunk); the file was cut short"
            )
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = f.read(size + (size & 1))
            if len(body) < 16:
                raise AudioFileError(f"{name}: truncated WAV header ('fmt ' chunk cut short)")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise AudioFileError(f"{name}: WAV 'data' chunk before 'fmt '; re-encode the file")
            return _check_format(name, *fmt, f.tell(), None if size in (0, 0xFFFFFFFF) else size)
        else:
            f.seek(size + (size & 1), 1)


def _check_format(
    name: str, tag: int, channels: int, rate: int, bits: int, offset: int, size: int | None
) -> WavFormat:
    pcm_ok = tag == 1 and bits in (8, 16, 24, 32)
    float_ok = tag == 3 and bits in (32, 64)
    if not (pcm_ok or float_ok):
        raise AudioFileError(
            f"{name}: unsupported WAV encoding (format {tag}, {bits} bit); "
            "use PCM 8/16/24/32-bit or float 32/64-bit"
        )
    if channels < 1 or rate < 1000:
        raise AudioFileError(f"{name}: implausible WAV header ({channels} channels, {rate} Hz)")
    return WavFormat(channels, rate, bits, tag == 3, offset, size)


def decode_pcm(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Interleaved WAV bytes → mono float32 in [-1, 1] (channels averaged)."""
    if fmt.is_float:
        x = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8").astype(np.float32)
    elif fmt.bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    else:
        dtype = "<i2" if fmt.bits == 16 else "<i4"
        x = (np.frombuffer(raw, dtype=dtype) / float(1 << (fmt.bits - 1))).astype(np.float32)
    return x.reshape(-1, fmt.channels).mean(axis=1) if fmt.channels > 1 else x


class FileSource:
    """A WAV (own reader) or FLAC/OGG (libsndfile) file, streamed in blocks at `sample_rate`.

    A file whose data stops short of what its header promises still yields every whole sample
    it holds; `AudioFileError` follows at the end, so nothing audible is lost.
    """

    def __init__(self, path: str | Path, sample_rate: int, block_frames: int = 16000) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.block_frames = block_frames
        self.name = str(path)
        self.file_rate = 0
        self.duration_s = 0.0
        self._probe()

    def _probe(self) -> None:
        """Fail early, before any block, for files that cannot be opened at all."""
        if not self.path.exists():
            raise AudioFileError(f"{self.name}: no such file; check the path")
        if self.path.is_dir():
            raise AudioFileError(f"{self.name}: is a directory, not an audio file")
        if self.path.stat().st_size == 0:
            raise AudioFileError(f"{self.name}: empty file; record or copy it again")
        if self._is_wav():
            with self.path.open("rb") as f:
                fmt = read_wav_header(f, self.name)
            size = fmt.data_bytes or (self.path.stat().st_size - fmt.data_offset)
            self.file_rate = fmt.sample_rate
            self.duration_s = size / fmt.frame_bytes / fmt.sample_rate
        else:
            info = _soundfile_info(self.path, self.name)
            self.file_rate = info.samplerate
            self.duration_s = info.frames / info.samplerate

    def _is_wav(self) -> bool:
        with self.path.open("rb") as f:
            return f.read(4) == b"RIFF" or self.path.suffix.lower() in (".wav", ".wave")

    def blocks(self) -> Iterator[np.ndarray]:
        raw_blocks = self._wav_blocks() if self._is_wav() else self._soundfile_blocks()
        resampler = Resampler(self.file_rate, self.sample_rate)
        for block in raw_blocks:
            out = resampler.process(block)
            if len(out):
                yield out
        tail = resampler.flush()
        if len(tail):
            yield tail

    def _wav_blocks(self) -> Iterator[np.ndarray]:
        with self.path.open("rb") as f:
            fmt = read_wav_header(f, self.name)
            remaining = fmt.data_bytes
            chunk_bytes = self.block_frames * fmt.frame_bytes
            while remaining is None or remaining > 0:
                want = chunk_bytes if remaining is None else min(chunk_bytes, remaining)
                raw = f.read(want)
                whole = len(raw) - len(raw) % fmt.frame_bytes
                if whole:
                    yield decode_pcm(raw[:whole], fmt)
                if remaining is not None:
                    remaining -= len(raw)
                if len(raw) < want:
                    break
            if remaining:
                held = (fmt.data_bytes - remaining) / fmt.frame_bytes / fmt.sample_rate
                promised = fmt.data_bytes / fmt.frame_bytes / fmt.sample_rate
                raise AudioFileError(
                    f"{self.name}: truncated: header promises {promised:.2f} s, file holds "
                    f"{held:.2f} s (replayed what is there); the recording was cut short"
                )

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        import soundfile

        try:
            with soundfile.SoundFile(str(self.path)) as f:
                while True:
                    block = f.read(self.block_frames, dtype="float32", always_2d=True)
                    if len(block) == 0:
                        break
                    yield block.mean(axis=1)
        except (RuntimeError, soundfile.LibsndfileError) as e:
            raise AudioFileError(f"{self.name}: cannot decode ({e}); re-encode it") from None


def _soundfile_info(path: Path, name: str):  # -> soundfile._SoundFileInfo
    import soundfile

    try:
        return soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise AudioFileError(
            f"{name}: not a readable audio file ({e}); use WAV, FLAC or OGG"
        ) from None


def find_audio_files(path: str | Path) -> list[Path]:
    """A file as given, or every audio file under a directory, sorted for a stable order."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    return [path]
