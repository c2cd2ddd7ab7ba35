"""Offline replay: audio files through the live pipeline, events out as JSON Lines.

Each file gets a fresh pipeline and starts at audio time 0; every line names its file. A file
that cannot be read (fully) is reported after the others have been replayed, with exit code 2.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pi_monitor.audio import AudioFileError, FileSource, find_audio_files
from pi_monitor.checkin import CheckinCoach
from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DetectorSettings
from pi_monitor.events import CryEnd, CryOnset, Event, Score
from pi_monitor.pipeline import Pipeline

EventSink = Callable[[dict[str, Any]], None]
PROGRESS_MIN_S = 60.0


@dataclass
class ReplayReport:
    """What a replay did: files replayed, errors met (one line each), events written."""

    files: int = 0
    events: int = 0
    errors: list[str] = field(default_factory=list)


def replay_file(
    source: FileSource,
    pipeline: Pipeline,
    on_progress: Callable[[float], None] | None = None,
    coach: CheckinCoach | None = None,
) -> Iterator[Event]:
    """Every event of one file, in audio-time order; AudioFileError after the last whole block.

    With a `coach`, its decisions follow the detector events they come from, and what falls
    due between events is ticked out after every block."""
    error: AudioFileError | None = None
    try:
        for block in source.blocks():
            yield from coached(pipeline.process(block), coach, pipeline.time_s)
            if on_progress:
                on_progress(pipeline.time_s)
    except AudioFileError as e:
        error = e  # close the bout under way first: a cut-short night keeps its last cry
    yield from coached(pipeline.finish(), coach, pipeline.time_s)
    if error:
        raise error


def replay_paths(
    paths: Iterable[str],
    classifier: CryClassifier,
    detector: DetectorSettings,
    sinks: list[EventSink],
    *,
    scores: bool = False,
    block_frames: int = 16000,
    progress: TextIO | None = None,
    coach: Callable[[], CheckinCoach] | None = None,
    start: datetime.datetime | None = None,
) -> ReplayReport:
    """Replay files (directories expand to the audio files under them) into every sink."""
    report = ReplayReport()
    rate = classifier.info.features.sample_rate
    for given in paths:
        for path in find_audio_files(given):
            name = given if path == Path(given) else str(path)
            try:
                source = FileSource(path, rate, block_frames)
                source.name = name
                bar = _progress_bar(name, source.duration_s, progress)
                pipeline = Pipeline(classifier, detector)
                for event in replay_file(source, pipeline, bar, coach() if coach else None):
                    if scores or not isinstance(event, Score):
                        line = event.to_dict(file=name, **wall_of(start, event))
                        for sink in sinks:
                            sink(line)
                        report.events += 1
            except AudioFileError as e:
                report.errors.append(str(e))
            finally:
                if progress is not None and progress.isatty():
                    progress.write("\r\x1b[K")
            report.files += 1
    return report


def jsonl_sink(out: TextIO) -> EventSink:
    def write(line: dict[str, Any]) -> None:
        out.write(json.dumps(line, separators=(",", ":")) + "\n")

    return write


def _progress_bar(
    name: str, duration_s: float, stream: TextIO | None
) -> Callable[[float], None] | None:
    """A one-line progress bar for long inputs, only when a person is watching stderr."""
    if stream is None or not stream.isatty() or duration_s < PROGRESS_MIN_S:
        return None
    last = [-1]

    def show(t: float) -> None:
        percent = min(100, int(100 * t / duration_s))
        if percent != last[0]:
            last[0] = percent
            filled = percent // 4
            stream.write(
                f"\r{name} [{'#' * filled}{'.' * (25 - filled)}] {percent:3d}% "
                f"{_clock(t)}/{_clock(duration_s)}"
            )
            stream.flush()

    return show


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


# --- check-in coach: rehearse a night (check-in engineer's block) ---------------------------


def coached(events: list[Event], coach: CheckinCoach | None, now: float) -> Iterator[Event]:
    """Detector events, each followed by the coach's decisions, then what fell due by `now`."""
    for event in events:
        yield event
        if coach is not None and isinstance(event, CryOnset | CryEnd):
            yield from coach.handle(event)
    if coach is not None:
        yield from coach.tick(now)


def wall_of(start: datetime.datetime | None, event: Event) -> dict[str, str]:
    """`wall` for an event when the file's audio time 0 is known to be `start`."""
    t = getattr(event, "t", None)
    if start is None or t is None:
        return {}
    moment = start + datetime.timedelta(seconds=t)
    return {"wall": moment.isoformat(timespec="milliseconds")}
