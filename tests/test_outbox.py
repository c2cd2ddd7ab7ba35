"""The on-disk outbox: order, persistent sequence numbers, bounded size."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from pi_monitor.faults import Faults
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


def test_an_event_put_while_another_is_acknowledged_keeps_the_count_true(tmp_path: Path):
    """The service puts while the MQTT thread acknowledges: a put that lands between the ack's
    delete and its count update must not see the delete twice (the count once went negative)."""
    box = Outbox(tmp_path / "o.sqlite3", 100)
    box.put({"type": "cry_onset"})
    transact = box.store.transact
    put = threading.Thread(target=box.put, args=({"type": "cry_end"},))

    def delete_then_let_a_put_in(work):
        box.store.transact = transact  # once: the put goes through the real one
        done = transact(work)
        put.start()
        put.join(0.5)  # with the count guarded, the put waits for the ack to finish
        return done

    box.store.transact = delete_then_let_a_put_in
    box.ack(1)
    put.join(5)
    assert len(box) == len(box.peek(0, 10)) == 1


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


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_full_outbox_drops_the_oldest_counts_and_logs_a_flood_as_one_line_and_a_summary(
    tmp_path: Path, caplog
):
    path = tmp_path / "o.sqlite3"
    clock = Clock()
    box = Outbox(path, 10, monotonic=clock)
    with caplog.at_level(logging.WARNING, logger="pi_monitor.outbox"):
        for i in range(25):
            box.put({"type": "cry_onset", "t": float(i)})
        assert len(box) == 10
        assert box.dropped == 15
        assert [s for s, _ in box.peek(0, 100)] == list(range(16, 26))
        assert [r.getMessage() for r in caplog.records] == [
            "MQTT outbox full (10 events): dropped oldest seq 1..1; 1 dropped in total"
        ]
        clock.now = 61.0
        box.recover()
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage().startswith("14 more like this in the last 61 s")
    assert "dropped oldest seq 15..15; 15 dropped in total" in caplog.records[1].getMessage()
    box.ack(3)
    assert len(box) == 10, "acknowledging a dropped event changes nothing"
    box.close()
    assert Outbox(path, 10).dropped == 15


def test_a_state_dir_that_cannot_be_made_keeps_the_outbox_in_memory_and_says_so(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    faults = Faults()
    box = Outbox(blocker / "o.sqlite3", 10, faults)
    assert [box.put({"type": "cry_onset", "t": float(i)}) for i in range(3)] == [1, 2, 3]
    assert [s for s, _ in box.peek(0, 10)] == [1, 2, 3]
    (fault,) = faults.active().values()
    assert fault.reason == "storage_failed" and str(blocker) in fault.detail
    assert "kept in memory" in fault.detail and "writable" in fault.detail


def test_a_full_disk_keeps_events_in_memory_in_order_and_writes_them_back_when_space_returns(
    small_disk,
):
    path = small_disk.path / "o.sqlite3"
    clock = Clock()
    faults = Faults()
    box = Outbox(path, 100, faults, monotonic=clock)
    assert box.put({"type": "cry_onset", "t": 0.0}) == 1
    small_disk.fill()
    assert [box.put({"type": "cry_onset", "t": float(i)}) for i in range(1, 6)] == [2, 3, 4, 5, 6]
    box.ack(2)
    assert [s for s, _ in box.peek(0, 10)] == [1, 3, 4, 5, 6], "in order, without a gap"
    (fault,) = faults.active().values()
    assert "database or disk is full" in fault.detail and "free some space" in fault.detail

    clock.now = 100.0
    box.recover()
    assert faults.active(), "still full: still in memory"
    small_disk.free()
    clock.now = 200.0
    box.recover()
    assert not faults.active(), "written back by itself"
    assert box.put({"type": "cry_onset", "t": 6.0}) == 7
    box.close()
    again = Outbox(path, 100)
    assert [s for s, _ in again.peek(0, 10)] == [1, 3, 4, 5, 6, 7]
    assert again.put({"type": "settled"}) == 8


def test_a_damaged_outbox_is_moved_aside_and_a_new_one_started(tmp_path: Path):
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"garbage after a power cut " * 200)
    faults = Faults()
    box = Outbox(path, 10, faults)
    assert box.put({"type": "cry_onset", "t": 1.0}) == 1
    (aside,) = tmp_path.glob("o.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"garbage")
    (notice,) = faults.take_notices()
    assert notice.reason == "storage_failed" and aside.name in notice.detail
    assert not faults.active(), "the new file works: nothing is left wrong"
