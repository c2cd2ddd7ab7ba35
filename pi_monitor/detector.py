"""Window scores → cry bouts, with hysteresis, a minimum bout length and a merge gap.

Pure state machine: scores and audio times in, `CryOnset` / `CryEnd` out. A bout starts when a
score reaches the on-threshold and stays at or above the off-threshold for `min_bout_s`, or at
once when a window reaches the sure-threshold: certainty buys speed, doubt waits (with v11 it
took a third off the median latency, with fewer alarms; docs/MODEL_EXPERIMENTS.md, stop 56).
It ends once no window has reached the off-threshold for `merge_gap_s`, so breaths and sobs
between cries do not split it. Times are where each score is dated (`ModelInfo.score_frame`:
the window's centre, or the centre of the part at its end a join hears); `emitted_t` is when
the decision could be made.

The onset is dated where the run of windows above the off-threshold began, at most one window
length before the on-crossing: a cry's first window scores only partly, and the window that
crosses the on-threshold is typically 0.5 s late. Confirmation still counts from the crossing,
so back-dating moves `t`, never `emitted_t` or what is a bout. For the same reason a burst that
crossed the on-threshold but fell back before `min_bout_s` is not forgotten: if a bout confirms
less than `merge_gap_s` after it, the bout began with that burst, as a pause that short inside a
bout would not have split it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from pi_monitor.config import DetectorSettings
from pi_monitor.events import CryEnd, CryOnset, Event

if TYPE_CHECKING:
    from pi_monitor.classifier import ModelInfo


class ThresholdError(ValueError):
    """An off-threshold above, or a sure-threshold below, the on-threshold it resolves against;
    the message names the key."""


@dataclass(frozen=True)
class DetectorParams:
    """Detector settings with the thresholds resolved against the model's recommendation."""

    on_threshold: float
    off_threshold: float
    min_bout_s: float
    merge_gap_s: float
    lookback_s: float  # how far before the on-crossing an onset may be dated
    sure_threshold: float | None = None  # a bout reaching it confirms at once; None: always wait

    @classmethod
    def resolve(
        cls,
        settings: DetectorSettings,
        *,
        model_on: float,
        model_off: float | None,
        window_s: float,
        model_sure: float | None = None,
    ) -> DetectorParams:
        on = settings.on_threshold if settings.on_threshold is not None else model_on
        off = settings.off_threshold
        if off is None:
            off = model_off if model_off is not None and model_off <= on else 0.6 * on
        if off > on:
            raise ThresholdError(
                f"'detector.off_threshold' ({off}) must not exceed the on-threshold ({on}); "
                "lower it or set 'detector.on_threshold'"
            )
        sure = settings.sure_threshold
        if sure is None:
            sure = model_sure if model_sure is not None and model_sure > on else None
        elif sure < on:
            raise ThresholdError(
                f"'detector.sure_threshold' ({sure}) must not be below the on-threshold ({on}); "
                "raise it, or set it to 1 to make every bout wait 'detector.min_bout_s'"
            )
        if sure is not None and sure >= 1.0:
            sure = None
        return cls(on, off, settings.min_bout_s, settings.merge_gap_s, window_s, sure)

    @classmethod
    def for_model(cls, settings: DetectorSettings, info: ModelInfo) -> DetectorParams:
        """The service's rule: the model's thresholds and window unless the config overrides."""
        return cls.resolve(
            settings,
            model_on=info.threshold,
            model_off=info.off_threshold,
            window_s=info.window_s,
            model_sure=info.sure_threshold,
        )


class _State(Enum):
    IDLE = "idle"
    PENDING = "pending"  # above threshold, not yet long enough to be a bout
    CRYING = "crying"


class CryDetector:
    """Feeds on one (time, score) per classifier window, in order."""

    def __init__(self, params: DetectorParams) -> None:
        self.params = params
        self._state = _State.IDLE
        self._lead: deque[tuple[float, float]] = deque()  # (t, score) idle, above off
        self._onset_t = 0.0
        self._crossing_t = 0.0
        self._last_above_t = 0.0
        self._peak = 0.0
        self._sum = 0.0  # score sum and count up to the last window above the off-threshold
        self._count = 0
        self._fell_back = False  # idle, and the fields above still describe a burst that fell back

    @property
    def crying(self) -> bool:
        return self._state is _State.CRYING

    @property
    def onset_t(self) -> float | None:
        """Start of the current bout, while crying."""
        return self._onset_t if self.crying else None

    @property
    def crossing_t(self) -> float | None:
        """While crying, where the window is dated whose on-crossing the bout's confirmation
        counted from (evaluation blames an alarm on what was playing then)."""
        return self._crossing_t if self.crying else None

    def update(self, t: float, score: float, decided_t: float) -> list[Event]:
        p = self.params
        if self._state is _State.IDLE:
            self._remember_lead(t, score)
            if score >= p.on_threshold:
                self._start(t)
                return self._confirm_if_long(decided_t)
            return []
        if score >= p.off_threshold:
            self._last_above_t = t
            self._peak = max(self._peak, score)
            self._sum += score
            self._count += 1
            if self._state is _State.PENDING:
                return self._confirm_if_long(decided_t)
            return []
        if self._state is _State.PENDING:
            self._state = _State.IDLE
            self._fell_back = True
            return []
        if t - self._last_above_t >= p.merge_gap_s:
            return [self._end(decided_t)]
        return []

    def finish(self, end_t: float) -> list[Event]:
        """The stream ended: a bout under way ends at its last crying window; nothing else
        carries over."""
        self._fell_back = False
        self._lead.clear()
        if self._state is _State.CRYING:
            return [self._end(end_t)]
        self._state = _State.IDLE
        return []

    def _remember_lead(self, t: float, score: float) -> None:
        """Keep the idle windows above the off-threshold within the lookback of `t`."""
        if score < self.params.off_threshold:
            self._lead.clear()
            return
        self._lead.append((t, score))
        while self._lead[0][0] < t - self.params.lookback_s - 1e-9:
            self._lead.popleft()

    def _start(self, t: float) -> None:
        """A bout may begin: it includes the lead-in run that ends with this crossing, and the
        burst that fell back before it, if that ended less than the merge gap before."""
        lead_t = self._lead[0][0]
        scores = [s for _, s in self._lead]
        if self._fell_back and lead_t - self._last_above_t < self.params.merge_gap_s:
            self._peak = max(self._peak, *scores)
            self._sum += sum(scores)
            self._count += len(scores)
        else:
            self._onset_t = lead_t
            self._peak, self._sum, self._count = max(scores), sum(scores), len(scores)
        self._fell_back = False
        self._state = _State.PENDING
        self._crossing_t = self._last_above_t = t
        self._lead.clear()

    def _confirm_if_long(self, decided_t: float) -> list[Event]:
        """Onset once the bout is long or sure enough; its score is the bout's peak so far."""
        p = self.params
        sure = p.sure_threshold is not None and self._peak >= p.sure_threshold
        if not sure and self._last_above_t - self._crossing_t < p.min_bout_s:
            return []
        self._state = _State.CRYING
        return [CryOnset(t=self._onset_t, emitted_t=decided_t, score=self._peak)]

    def _end(self, decided_t: float) -> CryEnd:
        self._state = _State.IDLE
        return CryEnd(
            t=self._last_above_t,
            onset_t=self._onset_t,
            duration_s=self._last_above_t - self._onset_t,
            emitted_t=decided_t,
            peak_score=self._peak,
            mean_score=self._sum / self._count,
        )
