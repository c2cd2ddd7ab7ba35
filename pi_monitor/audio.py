"""Audio files as a source (`source.py`), and the streaming resampler both sources use.

Files are read in blocks, never whole, so an hour-long night costs no more memory than a minute.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pi_monitor.features import strided_frames
from pi_monitor.source import SourceEnded, SourceError

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg")
# What a header may claim before it is called corrupt: 768 kHz is the highest rate interfaces
# record at; 256 channels is more than any microphone array. Beyond these a header only costs
# memory (a 65,535-channel frame is 512 kB).
MIN_RATE, MAX_RATE = 1000, 768_000
MAX_CHANNELS = 256
# The resampler's filter has 20 * max(up, down) + 1 taps: 1,000,003 Hz to 8 kHz would need 20
# million (GBs with its phase table). 2**20 taps (8 MB) covers every pair of common rates.
MAX_FILTER_TAPS = 1 << 20
READ_MAX_BYTES = 1 << 22  # one read of a file, whatever --block-frames or the frame size
FMT_BYTES_USED = 26  # the part of a 'fmt ' chunk the reader needs (extensible: its sub-format)
OGG_PAGE_MAX_BYTES = 27 + 255 + 255 * 255  # header, segment table, body


class AudioFileError(SourceError):
    """A file that cannot be replayed (fully); the message names the file and the fix."""


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

    @staticmethod
    def check(orig_rate: int, target_rate: int) -> None:
        """ValueError if the filter from `orig_rate` to `target_rate` would be too large."""
        g = gcd(orig_rate, target_rate)
        taps = 20 * max(orig_rate, target_rate) // g + 1
        if taps > MAX_FILTER_TAPS:
            raise ValueError(
                f"resampling {orig_rate} Hz to {target_rate} Hz needs a {taps:,}-tap filter "
                f"(at most {MAX_FILTER_TAPS:,}); use a common rate such as 48000 or 16000 Hz"
            )

    def __init__(self, orig_rate: int, target_rate: int) -> None:
        self.check(orig_rate, target_rate)
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
            body = f.read(min(size, FMT_BYTES_USED))  # a huge size must not become a huge read
            f.seek(size - len(body) + (size & 1), 1)
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
    check_layout(name, channels, rate)
    return WavFormat(channels, rate, bits, tag == 3, offset, size)


def check_layout(name: str, channels: int, rate: int) -> None:
    """Refuse channel counts and rates no recording has: they come from corrupt headers."""
    if not (1 <= channels <= MAX_CHANNELS and MIN_RATE <= rate <= MAX_RATE):
        raise AudioFileError(
            f"{name}: implausible header ({channels} channels, {rate} Hz; allowed 1 to "
            f"{MAX_CHANNELS} channels at {MIN_RATE} to {MAX_RATE} Hz); the file is corrupt"
        )


def decode_pcm(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Interleaved WAV bytes → mono float32 in [-1, 1] (channels averaged).

    Float samples beyond full scale are clipped, as a microphone's converter would (a cast of
    1e300 to float32 would make it infinite); NaN and infinities become NaN for the caller to see.
    """
    if fmt.is_float:
        x = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8")
        x = np.where(np.isfinite(x), np.clip(x, -1.0, 1.0), np.nan).astype(np.float32)
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

    A file that cannot be opened at all fails at once (AudioFileError). One whose data stops
    short (of what its header promises, of an OGG stream's end, or at a sample that is not a
    number) still yields every whole sample before that point; `AudioFileError` follows, so
    nothing audible is lost.
    """

    def __init__(
        self, path: str | Path, sample_rate: int, block_frames: int = 16000, name: str = ""
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.block_frames = block_frames
        self.name = name or str(path)
        self.file_rate = 0
        self.duration_s = 0.0
        self._channels = 1
        self._blocks: Iterator[np.ndarray] | None = None
        self._is_ogg = False
        self._floats = True  # decoded samples may be NaN or infinite (integer PCM cannot)
        try:
            self._probe()
        except OSError as e:
            raise AudioFileError(
                f"{self.name}: cannot read ({e.strerror}); check the file and its permissions"
            ) from None
        try:
            Resampler.check(self.file_rate, self.sample_rate)
        except ValueError as e:
            raise AudioFileError(f"{self.name}: {e}") from None

    def open(self) -> None:
        self._blocks = self.blocks()

    def read(self, timeout: float = 0.0) -> np.ndarray:
        """The next block (a file never keeps a reader waiting); SourceEnded after the last."""
        if self._blocks is None:
            raise AudioFileError(f"{self.name}: read before open")
        try:
            return next(self._blocks)
        except StopIteration:
            raise SourceEnded(self.name) from None

    def close(self) -> None:
        self._blocks = None

    def _probe(self) -> None:
        """Fail early, before any block, for files that cannot be opened at all."""
        if not self.path.exists():
            raise AudioFileError(f"{self.name}: no such file; check the path")
        if self.path.is_dir():
            raise AudioFileError(_directory_problem(self.path, self.name))
        if not self.path.is_file():
            raise AudioFileError(
                f"{self.name}: not a regular file (a FIFO, socket or device); give an audio file"
            )
        if self.path.stat().st_size == 0:
            raise AudioFileError(f"{self.name}: empty file; record or copy it again")
        if self._is_wav():
            with self.path.open("rb") as f:
                fmt = read_wav_header(f, self.name)
            size = fmt.data_bytes or (self.path.stat().st_size - fmt.data_offset)
            self.file_rate = fmt.sample_rate
            self.duration_s = size / fmt.frame_bytes / fmt.sample_rate
            self._floats = fmt.is_float
        else:
            info = _soundfile_info(self.path, self.name)
            check_layout(self.name, info.channels, info.samplerate)
            self.file_rate, self._channels = info.samplerate, info.channels
            self.duration_s = info.frames / info.samplerate
            self._is_ogg = info.format == "OGG"

    def _is_wav(self) -> bool:
        with self.path.open("rb") as f:
            return f.read(4) == b"RIFF" or self.path.suffix.lower() in (".wav", ".wave")

    def blocks(self) -> Iterator[np.ndarray]:
        resampler = Resampler(self.file_rate, self.sample_rate)
        frames = 0  # read from the file so far
        try:
            for block in self._wav_blocks() if self._is_wav() else self._soundfile_blocks():
                if self._floats and not np.isfinite(block).all():  # NaN scores: stop before
                    first = int(np.argmax(~np.isfinite(block)))
                    out = resampler.process(block[:first])
                    if len(out):
                        yield out
                    raise AudioFileError(
                        f"{self.name}: a sample that is not a number (NaN or infinity) at "
                        f"{(frames + first) / self.file_rate:.2f} s (replayed up to there); "
                        "the file is corrupt: export it again"
                    )
                frames += len(block)
                out = resampler.process(block)
                if len(out):
                    yield out
        except OSError as e:
            raise AudioFileError(
                f"{self.name}: read error after {frames / self.file_rate:.2f} s ({e.strerror}; "
                "replayed up to there); copy the file again"
            ) from None
        tail = resampler.flush()
        if len(tail):
            yield tail

    def _wav_blocks(self) -> Iterator[np.ndarray]:
        with self.path.open("rb") as f:
            fmt = read_wav_header(f, self.name)
            remaining = fmt.data_bytes
            chunk_bytes = _frames_per_read(self.block_frames, fmt.frame_bytes) * fmt.frame_bytes
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

        frames_per_read = _frames_per_read(self.block_frames, 4 * self._channels)
        frames = 0
        try:
            with soundfile.SoundFile(str(self.path)) as f:
                while True:
                    block = f.read(frames_per_read, dtype="float32", always_2d=True)
                    if len(block) == 0:
                        break
                    frames += len(block)
                    yield np.clip(block.mean(axis=1), -1.0, 1.0)  # lossy codecs overshoot
        except (RuntimeError, soundfile.LibsndfileError) as e:
            raise AudioFileError(f"{self.name}: cannot decode ({e}); re-encode it") from None
        if self._is_ogg and not ogg_ends_cleanly(self.path):
            raise AudioFileError(
                f"{self.name}: truncated: the OGG stream has no end, file holds "
                f"{frames / self.file_rate:.2f} s (replayed what is there); the recording was "
                "cut short"
            )


def _frames_per_read(block_frames: int, frame_bytes: int) -> int:
    """`block_frames`, fewer if that many frames would exceed `READ_MAX_BYTES` in one read."""
    return max(1, min(block_frames, READ_MAX_BYTES // frame_bytes))


def ogg_ends_cleanly(path: Path) -> bool:
    """Whether an OGG file ends with a whole page flagged end-of-stream.

    libsndfile reads a cut-short OGG without a word, up to its last whole page; only the missing
    end-of-stream page tells that the recording goes on beyond the file.
    """
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - OGG_PAGE_MAX_BYTES))
        tail = f.read()
    at = tail.rfind(b"OggS")
    while at >= 0:  # the last capture pattern whose page reaches exactly to the end of the file
        if at + 27 <= len(tail):
            segments = tail[at + 27 : at + 27 + tail[at + 26]]
            if at + 27 + len(segments) + sum(segments) == len(tail):
                return bool(tail[at + 5] & 0x04)
        at = tail.rfind(b"OggS", 0, at)
    return False


def _soundfile_info(path: Path, name: str):  # -> soundfile._SoundFileInfo
    import soundfile

    try:
        return soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise AudioFileError(
            f"{name}: not a readable audio file ({e}); use WAV, FLAC or OGG"
        ) from None


def find_audio_files(path: str | Path) -> list[Path]:
    """A file as given, or every audio file under a directory, sorted for a stable order.

    A directory that cannot be listed, or holds no audio file, is listed itself, so that
    replaying it reports why (`FileSource`) instead of skipping it without a word.
    """
    path = Path(path)
    try:
        if not path.is_dir():
            return [path]
    except OSError:  # its folder cannot be searched: FileSource says so
        return [path]
    unlisted: list[OSError] = []
    found = [
        Path(folder, name)
        for folder, _, names in os.walk(path, onerror=unlisted.append)
        for name in names
        if Path(name).suffix.lower() in AUDIO_SUFFIXES
    ]
    found += [Path(e.filename) for e in unlisted]
    return sorted(found) if found else [path]


def _directory_problem(path: Path, name: str) -> str:
    try:
        os.scandir(path).close()
    except OSError as e:
        return f"{name}: cannot list this directory ({e.strerror}); check its permissions"
    return (
        f"{name}: a directory without audio files ({', '.join(AUDIO_SUFFIXES)}) under it; "
        "give audio files or a directory of them"
    )
