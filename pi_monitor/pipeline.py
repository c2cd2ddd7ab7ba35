"""One pipeline for mic and file: blocks → log-mel → classifier windows → detector events.

It counts audio time itself (samples seen / rate), so live and replay agree decision for
decision. Windows start at fixed frame indices, so the scores do not depend on how the audio was
split into blocks. Blocks wait, unprocessed, until they complete the next window: live capture
delivers ten small blocks a second and a window is due about four times a second, so this halves
the calls into numpy without delaying any score. Every window a block completes goes to the
model in one run of frames: the model is convolutional in time, so in a replay's long blocks
overlapping windows share each frame's computation.
"""

from __future__ import annotations

import numpy as np

from pi_monitor.classifier import CryClassifier
from pi_monitor.config import DetectorSettings
from pi_monitor.detector import CryDetector, DetectorParams
from pi_monitor.events import Event, Score
from pi_monitor.features import FeatureExtractor


class Pipeline:
    """Streaming state for one audio stream; make a new one per file."""

    def __init__(self, classifier: CryClassifier, detector: DetectorSettings) -> None:
        info = classifier.info
        self.classifier = classifier
        self.features = FeatureExtractor(info.features)
        self.detector = CryDetector(DetectorParams.for_model(detector, info))
        self.sample_rate = info.features.sample_rate
        self.samples_seen = 0
        self._size, self._hop = info.window_frames, info.window_hop_frames
        self._waiting: list[np.ndarray] = []  # blocks not yet turned into frames
        self._frames = np.zeros((0, info.features.n_mels), dtype=np.float32)
        self._frames_start = 0  # stream index of self._frames[0]
        self._next_window = 0  # stream frame index where the next window starts

    def set_detector(self, settings: DetectorSettings) -> None:
        """Decide with new settings from the next window on (a parent's choice from HA)."""
        self.detector.params = DetectorParams.for_model(settings, self.classifier.info)

    @property
    def time_s(self) -> float:
        """Audio seconds heard so far."""
        return self.samples_seen / self.sample_rate

    def process(self, block: np.ndarray) -> list[Event]:
        """Scores for every window completed by this block, each followed by its decisions."""
        self.samples_seen += len(block)
        self._waiting.append(block)
        size, hop = self._size, self._hop
        if self.samples_seen < self._sample_end(self._next_window + size - 1):
            return []
        frames = self.features.process(np.concatenate(self._waiting))
        self._waiting.clear()
        self._frames = np.concatenate((self._frames, frames))
        # Every complete window from the next one on, in one run of frames.
        ahead = self._frames[self._next_window - self._frames_start :]
        scores, logits = self.classifier.predict(ahead)
        starts = range(self._next_window, self._next_window + hop * len(scores), hop)
        self._next_window = starts.stop
        # a hop longer than a window skips frames
        keep_from = min(self._next_window, self._frames_start + len(self._frames))
        self._frames = self._frames[keep_from - self._frames_start :]
        self._frames_start = keep_from
        return self._decide(starts, scores, logits)

    def finish(self) -> list[Event]:
        """End of stream: close a bout under way."""
        return self.detector.finish(self.time_s)

    def _sample_end(self, frame: int) -> int:
        """Stream samples needed to complete a frame."""
        p = self.features.params
        return frame * p.hop_length + p.n_fft

    def _decide(self, starts: range, scores: np.ndarray, logits: np.ndarray) -> list[Event]:
        p = self.features.params
        events: list[Event] = []
        for start, score, logit in zip(starts, scores.tolist(), logits.tolist(), strict=True):
            t = p.frame_time(self.classifier.info.score_frame(start))
            decided_t = self._sample_end(start + self._size - 1) / p.sample_rate
            events.append(Score(t=t, score=score, logit=logit))
            events.extend(self.detector.update(t, score, decided_t))
        return events
