"""Is the microphone alive? Pure logic: the service feeds levels and stream state, times in.

A baby monitor that fails must say so: a lost device or an input that is digitally silent or
stuck raises an `Escalation`, and the problem stays on until the input is back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pi_monitor.events import Escalation, Reason

LEVEL_FLOOR_DBFS = -120.0


def level_dbfs(block: np.ndarray) -> float:
    """Sound level of a block in dBFS (RMS, full-scale sine = -3 dB).

    The DC part is removed first, so a stuck input (a constant value) reads as silent just as
    all-zero samples do.
    """
    if len(block) == 0:
        return LEVEL_FLOOR_DBFS
    x = block.astype(np.float64)
    rms = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
    return max(LEVEL_FLOOR_DBFS, 20.0 * np.log10(rms)) if rms > 0 else LEVEL_FLOOR_DBFS


@dataclass
class MicHealth:
    """Tracks silence (in audio time) and device loss (in service time, which runs on without
    audio); returns the escalations due. `problems` maps each active reason to its detail."""

    silence_floor_dbfs: float
    silence_timeout_s: float
    lost_after_s: float
    problems: dict[str, str] = field(default_factory=dict)
    _silent_since: float | None = None
    _down_since: float | None = None
    _down_detail: str = ""

    def on_block(self, t_start: float, t_end: float, level: float) -> list[Escalation]:
        """A captured block spanning [t_start, t_end) with sound level `level` dBFS."""
        self._down_since = None
        self.problems.pop(Reason.MIC_LOST, None)
        if level >= self.silence_floor_dbfs:
            self._silent_since = None
            self.problems.pop(Reason.MIC_SILENT, None)
            return []
        if self._silent_since is None:
            self._silent_since = t_start
        silent_s = t_end - self._silent_since
        if silent_s < self.silence_timeout_s or Reason.MIC_SILENT in self.problems:
            return []
        detail = (
            f"input silent or stuck (below {self.silence_floor_dbfs:g} dBFS) for {silent_s:.0f} s; "
            "check the microphone, its mute switch and gain"
        )
        self.problems[Reason.MIC_SILENT] = detail
        return [Escalation(t=t_end, reason=Reason.MIC_SILENT, detail=detail)]

    def on_mic_down(self, t: float, detail: str) -> None:
        """The stream failed or stopped delivering at `t`; the alarm follows via `tick`."""
        if self._down_since is None:
            self._down_since = t
        self._down_detail = detail
        self._silent_since = None

    def tick(self, t: float) -> list[Escalation]:
        """Called at least every few seconds; raises `mic_lost` once the outage is long enough."""
        if self._down_since is None or Reason.MIC_LOST in self.problems:
            return []
        down_s = t - self._down_since
        if down_s < self.lost_after_s:
            return []
        detail = f"no audio for {down_s:.0f} s ({self._down_detail}); retrying"
        self.problems[Reason.MIC_LOST] = detail
        return [Escalation(t=t, reason=Reason.MIC_LOST, detail=detail)]

    @property
    def mic_down(self) -> bool:
        return self._down_since is not None

    def problem_detail(self) -> str:
        """One line for the problem sensor; empty when all is well."""
        return "; ".join(f"{reason}: {d}" for reason, d in sorted(self.problems.items()))
