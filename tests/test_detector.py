"""Scripted score sequences → cry bouts: hysteresis, minimum length, merge gap, stream end."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pi_monitor.config import DetectorSettings
from pi_monitor.detector import CryDetector, DetectorParams, ThresholdError
from pi_monitor.events import CryEnd, CryOnset

HOP = 0.25
PARAMS = DetectorParams(
    on_threshold=0.8, off_threshold=0.5, min_bout_s=0.5, merge_gap_s=2.0, lookback_s=0.75
)


def run(scores: list[float], params: DetectorParams = PARAMS) -> list:
    detector = CryDetector(params)
    events = []
    for i, score in enumerate(scores):
        events += detector.update(i * HOP, score, i * HOP + 0.5)
    return events + detector.finish(len(scores) * HOP + 0.5)


def test_a_sustained_cry_gives_one_onset_and_one_end() -> None:
    events = run([0.1] * 4 + [0.9] * 8 + [0.1] * 12)
    onset, end = events
    assert isinstance(onset, CryOnset) and onset.t == 1.0
    assert onset.emitted_t == pytest.approx(1.0 + 0.5 + 0.5)  # decided when min_bout is reached
    assert isinstance(end, CryEnd) and end.t == pytest.approx(2.75)
    assert end.duration_s == pytest.approx(1.75)
    assert end.emitted_t == pytest.approx(2.75 + 2.0 + 0.5)
    assert end.peak_score == 0.9 and end.mean_score == pytest.approx(0.9)


def test_a_blip_shorter_than_the_minimum_bout_is_ignored() -> None:
    assert run([0.1, 0.95, 0.2, 0.1, 0.95, 0.1]) == []


def test_scores_between_thresholds_keep_a_bout_but_do_not_start_one() -> None:
    assert run([0.6] * 20) == []
    events = run([0.9, 0.9, 0.9] + [0.6] * 10 + [0.1] * 10)
    assert events[1].t == pytest.approx(12 * HOP)


def test_pauses_shorter_than_the_merge_gap_keep_one_bout() -> None:
    breathing = ([0.9] * 4 + [0.1] * 3) * 5  # 1 s crying, 0.75 s breath
    events = run(breathing + [0.1] * 12)
    assert [type(e) for e in events] == [CryOnset, CryEnd]
    assert events[1].duration_s == pytest.approx((len(breathing) - 4) * HOP)


def test_a_pause_longer_than_the_merge_gap_splits_bouts() -> None:
    events = run([0.9] * 4 + [0.1] * 9 + [0.9] * 4 + [0.1] * 12)
    assert [type(e) for e in events] == [CryOnset, CryEnd, CryOnset, CryEnd]


def test_stream_end_closes_a_bout_under_way() -> None:
    events = run([0.9] * 6)
    assert isinstance(events[-1], CryEnd)
    assert events[-1].emitted_t == pytest.approx(6 * HOP + 0.5)


def test_the_onset_is_dated_where_the_run_above_the_off_threshold_began() -> None:
    events = run([0.1] * 4 + [0.6, 0.7] + [0.9] * 6 + [0.1] * 12)
    onset, end = events
    assert onset.t == pytest.approx(4 * HOP)
    assert onset.emitted_t == pytest.approx(6 * HOP + 0.5 + 0.5)  # still confirmed from crossing
    assert end.onset_t == onset.t and end.duration_s == pytest.approx(7 * HOP)
    assert end.mean_score == pytest.approx((0.6 + 0.7 + 6 * 0.9) / 8)


def test_back_dating_reaches_at_most_the_lookback_before_the_crossing() -> None:
    events = run([0.1] * 2 + [0.6] * 10 + [0.9] * 6 + [0.1] * 12)
    assert events[0].t == pytest.approx(12 * HOP - PARAMS.lookback_s)


def test_a_run_broken_below_the_off_threshold_does_not_back_date() -> None:
    events = run([0.6, 0.6, 0.2] + [0.9] * 6 + [0.1] * 12)
    assert events[0].t == pytest.approx(3 * HOP)


def test_a_burst_too_short_to_confirm_dates_the_bout_that_follows_within_the_merge_gap() -> None:
    # the cry's first burst falls back after 0.25 s; the bout confirms 0.75 s later
    events = run([0.1] * 4 + [0.9, 0.9, 0.2, 0.2, 0.2] + [0.9] * 6 + [0.1] * 12)
    onset, end = events
    assert onset.t == pytest.approx(4 * HOP)
    assert onset.emitted_t == pytest.approx(9 * HOP + 0.5 + 0.5)  # still confirmed by the bout
    assert end.duration_s == pytest.approx(10 * HOP)
    assert end.mean_score == pytest.approx(0.9)  # the pause does not count, as inside a bout


def test_a_burst_a_merge_gap_or_more_before_a_bout_stays_forgotten() -> None:
    events = run([0.9, 0.9] + [0.1] * 8 + [0.9] * 6 + [0.1] * 12)
    assert events[0].t == pytest.approx(10 * HOP)
    assert run([0.9, 0.9] + [0.1] * 12) == []  # and alone it is no bout


def test_a_lead_in_alone_does_not_make_a_bout_longer_than_it_is() -> None:
    assert run([0.7] * 3 + [0.9, 0.2] + [0.1] * 10) == []


def test_thresholds_default_to_the_model_and_off_must_not_exceed_on() -> None:
    def resolve(settings: DetectorSettings, model_off: float | None) -> DetectorParams:
        return DetectorParams.resolve(settings, model_on=0.7, model_off=model_off, window_s=0.8)

    params = resolve(DetectorSettings(), model_off=None)
    assert (params.on_threshold, params.off_threshold) == (0.7, pytest.approx(0.42))
    assert params.lookback_s == 0.8
    assert resolve(DetectorSettings(), model_off=0.4).off_threshold == 0.4
    with pytest.raises(ThresholdError, match=r"detector\.off_threshold"):
        resolve(DetectorSettings(off_threshold=0.9), model_off=None)


SURE = replace(PARAMS, sure_threshold=0.95)


def test_a_window_as_sure_as_the_sure_threshold_confirms_at_once() -> None:
    onset, _ = run([0.1] * 4 + [0.97] * 8 + [0.1] * 12, SURE)
    assert isinstance(onset, CryOnset) and onset.t == 1.0
    assert onset.emitted_t == pytest.approx(1.0 + 0.5), "decided at the crossing window"


def test_a_bout_that_becomes_sure_confirms_on_that_window() -> None:
    onset, _ = run([0.1] * 4 + [0.85, 0.96] + [0.9] * 6 + [0.1] * 12, SURE)
    assert onset.t == 1.0 and onset.emitted_t == pytest.approx(1.25 + 0.5)


def test_a_bout_below_the_sure_threshold_still_waits_the_minimum_bout() -> None:
    assert run([0.1] * 4 + [0.9] * 8 + [0.1] * 12, SURE) == run([0.1] * 4 + [0.9] * 8 + [0.1] * 12)
    assert run([0.1, 0.94, 0.2, 0.1], SURE) == [], "a short unsure blip is still ignored"


def test_the_sure_threshold_defaults_to_the_model_and_must_not_be_below_on() -> None:
    def resolve(settings: DetectorSettings, model_sure: float | None) -> DetectorParams:
        return DetectorParams.resolve(
            settings, model_on=0.7, model_off=None, window_s=0.8, model_sure=model_sure
        )

    assert resolve(DetectorSettings(), model_sure=None).sure_threshold is None
    assert resolve(DetectorSettings(), model_sure=0.9).sure_threshold == 0.9
    assert resolve(DetectorSettings(sure_threshold=0.95), model_sure=0.9).sure_threshold == 0.95
    assert resolve(DetectorSettings(sure_threshold=1.0), model_sure=0.9).sure_threshold is None
    raised = DetectorSettings(on_threshold=0.95)
    assert resolve(raised, model_sure=0.9).sure_threshold is None, "below a raised on: waits"
    with pytest.raises(ThresholdError, match=r"detector\.sure_threshold"):
        resolve(DetectorSettings(sure_threshold=0.6), model_sure=None)
