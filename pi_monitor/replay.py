"""Offline replay: audio files through the flow the service runs (`flow.py`), events to the sinks.

Each file gets a fresh flow (a fresh pipeline, and a fresh coach when rehearsing a night) and
starts at audio time 0; every line names its file. A file that cannot be read (fully) is
reported after the others have been replayed, with exit code 2.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from pi_monitor.audio import AudioFileError, FileSource, find_audio_files
from pi_monitor.checkin import Coach
from pi_monitor.classifier import CryClassifier
from pi_monitor.clock import StartClock
from pi_monitor.commands import Command
from pi_monitor.config import Settings
from pi_monitor.flow import Edges, Flow, FlowSettings
from pi_monitor.sinks import Sink
from pi_monitor.source import AudioSource

PROGRESS_MIN_S = 60.0


@dataclass
class ReplayReport:
    """What a replay did: files replayed, errors met (one line each)."""

    files: int = 0
    errors: list[str] = field(default_factory=list)


# Frames read per block. Unpaced, long blocks: the model scores a long run of frames for a
# fraction of what its windows cost one by one. Paced, short ones: Home Assistant sees each
# change about when it would happen live.
BLOCK_FRAMES = 160_000  # 10 s at 16 kHz
PACED_BLOCK_FRAMES = 4_000  # 0.25 s at 16 kHz


def replay_paths(
    paths: Iterable[str],
    classifier: CryClassifier,
    settings: Settings,
    sinks: Sequence[Sink],
    *,
    block_frames: int = BLOCK_FRAMES,
    progress: TextIO | None = None,
    coach: Callable[[], Coach] | None = None,
    commands: Sequence[Command] = (),
    start: datetime.datetime | None = None,
    pace: Callable[[AudioSource], AudioSource] | None = None,
) -> ReplayReport:
    """Replay files (directories expand to the audio files under them) into every sink.

    `coach` makes each file's coach and `commands` reach it at the file's start (a rehearsal's
    SessionStart); `start` is the wall time of each file's audio time 0; `pace` wraps each
    file's source (e.g. to play it in real time)."""
    report = ReplayReport()
    rate = classifier.info.features.sample_rate
    for given in paths:
        for path in find_audio_files(given):
            name = given if path == Path(given) else str(path)
            report.files += 1
            try:
                source: AudioSource = FileSource(path, rate, block_frames, name)
            except AudioFileError as e:
                report.errors.append(str(e))
                continue
            if progress is not None and progress.isatty():
                source = ProgressBar(source, progress)
            flow = Flow(
                pace(source) if pace else source,
                classifier,
                settings,
                sinks=sinks,
                coach=coach() if coach else None,
                clock=StartClock(start),
                behaviour=FlowSettings(file=name),
            )
            for command in commands:
                flow.command(command)
            flow.run()
            if flow.error is not None:
                report.errors.append(str(flow.error))
    return report


class RealTime:
    """A file source delivered as a microphone would: each block no sooner than its audio has
    played, `speed` times faster than real time. What Home Assistant shows during a replay
    (crying on, the sound level, a check-in falling due) then lasts as long as it would live."""

    def __init__(self, source: AudioSource, speed: float, edges: Edges | None = None) -> None:
        self.source, self.speed, self.edges = source, speed, edges or Edges()
        self.sample_rate = source.sample_rate
        self._samples = 0
        self._started = 0.0

    @property
    def name(self) -> str:
        return self.source.name

    def open(self) -> None:
        self.source.open()
        self._samples, self._started = 0, self.edges.monotonic()

    def read(self, timeout: float) -> np.ndarray | None:
        block = self.source.read(timeout)
        if block is not None:
            self._samples += len(block)
            due = self._started + self._samples / self.sample_rate / self.speed
            self.edges.sleep(max(0.0, due - self.edges.monotonic()))
        return block

    def close(self) -> None:
        self.source.close()


class ProgressBar:
    """A file source that draws a one-line progress bar on a terminal while it is read; only
    for inputs over a minute, and erased when the file is done."""

    def __init__(self, source: FileSource, stream: TextIO) -> None:
        self.source, self.stream = source, stream
        self.sample_rate = source.sample_rate
        self._samples = 0
        self._shown = -1

    @property
    def name(self) -> str:
        return self.source.name

    def open(self) -> None:
        self.source.open()

    def read(self, timeout: float) -> np.ndarray | None:
        block = self.source.read(timeout)
        self._samples += len(block)
        if self.source.duration_s >= PROGRESS_MIN_S:
            self._show(self._samples / self.sample_rate, self.source.duration_s)
        return block

    def close(self) -> None:
        self.source.close()
        self.stream.write("\r\x1b[K")

    def _show(self, t: float, duration_s: float) -> None:
        percent = min(100, int(100 * t / duration_s))
        if percent != self._shown:
            self._shown = percent
            filled = percent // 4
            self.stream.write(
                f"\r{self.name} [{'#' * filled}{'.' * (25 - filled)}] {percent:3d}% "
                f"{_clock(t)}/{_clock(duration_s)}"
            )
            self.stream.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
