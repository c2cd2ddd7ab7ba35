"""The event contract: wire form and moving events along the audio time axis."""

from __future__ import annotations

import json

import pytest

from pi_monitor.events import EVENT_TYPES, CryEnd, Escalation, Reason, Score


def test_shifted_moves_every_audio_time_and_nothing_else() -> None:
    end = CryEnd(t=5.0, onset_t=2.0, duration_s=3.0, emitted_t=8.0, peak_score=0.9, mean_score=0.8)
    moved = end.shifted(100.0)
    assert (moved.t, moved.onset_t, moved.emitted_t) == (105.0, 102.0, 108.0)
    assert (moved.duration_s, moved.peak_score, moved.mean_score) == (3.0, 0.9, 0.8)
    assert Escalation(t=1.0, reason="mic_lost").shifted(2.5) == Escalation(t=3.5, reason="mic_lost")


def test_wire_form_puts_the_type_first_then_fields_then_extras() -> None:
    line = Score(t=1.0, score=0.25, logit=-1.0986123).to_dict(file="a.wav")
    assert list(line) == ["type", "t", "score", "logit", "file"]
    assert line["logit"] == pytest.approx(-1.098612)


def test_event_types_on_the_wire_are_the_contract_classes_and_reasons_are_strings() -> None:
    assert EVENT_TYPES == (
        "cry_onset",
        "cry_end",
        "checkin_due",
        "escalation",
        "settled",
        "session_started",
        "command_refused",
    )
    line = Escalation(t=1.0, reason=Reason.MIC_LOST).to_dict()
    assert json.loads(json.dumps(line))["reason"] == "mic_lost"
    assert [str(r) for r in Reason] == ["max_crying_exceeded", "mic_lost", "mic_silent"]
