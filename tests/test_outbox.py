"""The on-disk outbox: order, persistent sequence numbers, bounded size."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pi_monitor.outbox import Outbox


def payloads(box: Outbox) -> list[dict]:
    return [json.loads(p) for _, p in box.peek(0, 1000)]


def test_events_come_out_in_order_with_their_seq_in_the_payload(tmp_path: Path):
    box = Outbox(tmp_path / "o.sqlite3", 100)
    seqs = [box.put({"type": "cry_onset", "t": float(i)}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [(p["seq"], p["t"]) for p in payloads(box)] == [(s, float(s - 1)) for s in seqs]
    assert [s for s, _ in box.peek(3, 10)] == [4, 5]
    assert [s for s, _ in box.peek(0, 2)] == [1, 2]


def test_acknowledged_events_leave_and_seq_is_never_reused_after_reopening(tmp_path: Path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 100)
    for i in range(3):
        box.put({"type": "settled", "episode": i})
    box.ack(1)
    box.ack(3)
    box.close()

    again = Outbox(path, 100)
    assert len(again) == 1
    assert [s for s, _ in again.peek(0, 10)] == [2]
    assert again.put({"type": "settled", "episode": 9}) == 4
    again.ack(2)
    again.ack(4)
    assert len(again) == 0
    assert again.put({"type": "settled", "episode": 10}) == 5


def test_full_outbox_drops_the_oldest_counts_and_logs(tmp_path: Path, caplog):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 10)
    with caplog.at_level(logging.WARNING, logger="pi_monitor.outbox"):
        for i in range(25):
            box.put({"type": "cry_onset", "t": float(i)})
    assert len(box) == 10
    assert box.dropped == 15
    assert [s for s, _ in box.peek(0, 100)] == list(range(16, 26))
    assert "dropped oldest seq 1..1" in caplog.text
    assert "15 dropped in total" in caplog.text
    box.ack(3)
    assert len(box) == 10, "acknowledging a dropped event changes nothing"
    box.close()
    assert Outbox(path, 10).dropped == 15


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot open the MQTT outbox.*service\.state_dir"):
        Outbox(blocker / "o.sqlite3", 10)
