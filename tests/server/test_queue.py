"""The EscalationQueue contract, run against both backends (SQLite file, real redis-server)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from server.queue import NewCase

from .conftest import RETRY, new_case


def case(key: str = "key-1", **overrides) -> NewCase:
    return NewCase.model_validate(new_case(key, **overrides))


def test_enqueue_is_idempotent_by_key(queue):
    first = queue.enqueue(case("k"))
    again = queue.enqueue(case("k", text="a different text, same key"))
    assert first.created and not again.created
    assert again.case.id == first.case.id
    assert again.case.text == "Fan 2 stalled, rotor speed 0 RPM"  # the first one wins
    assert queue.stats() == {"pending": 1, "processing": 0, "answered": 0, "failed": 0,
                             "total": 1}


def test_get_returns_the_stored_case(queue):
    stored = queue.enqueue(case()).case
    got = queue.get(stored.id)
    assert got == stored
    assert got.local_result["output"]["label"] == "mechanical"
    assert got.reasons == ["confidence 0.610 below threshold 0.85"]
    assert queue.get("no-such-id") is None


def test_claim_hands_each_case_to_one_worker(queue):
    stored = queue.enqueue(case()).case
    claimed = queue.claim("w1", lease_s=60)
    assert (claimed.id, claimed.status, claimed.attempts, claimed.claimed_by) == (
        stored.id, "processing", 1, "w1")
    assert queue.claim("w2", lease_s=60) is None


def test_complete_records_the_answer_and_the_first_answer_wins(queue):
    stored = queue.enqueue(case()).case
    queue.claim("w1", lease_s=60)
    done = queue.complete(stored.id, {"output": {"label": "power"}})
    assert (done.status, done.answer) == ("answered", {"output": {"label": "power"}})
    assert queue.complete(stored.id, {"output": {"label": "thermal"}}).answer == done.answer
    assert queue.claim("w1", lease_s=60) is None
    assert queue.stats()["answered"] == 1


def test_failures_back_off_exponentially_then_end_failed(queue, clock):
    stored = queue.enqueue(case()).case
    for attempt in range(1, RETRY.max_attempts):
        assert queue.claim("w1", lease_s=60).attempts == attempt
        after = queue.fail(stored.id, f"boom {attempt}", "w1")
        assert (after.status, after.last_error) == ("pending", f"boom {attempt}")
        delay = RETRY.delay(attempt)  # 2 s, then 4 s
        clock.advance(delay - 0.5)
        assert queue.claim("w1", lease_s=60) is None, "retried before its backoff"
        clock.advance(0.5)
    assert queue.claim("w1", lease_s=60).attempts == RETRY.max_attempts
    final = queue.fail(stored.id, "boom 3", "w1")
    assert (final.status, final.attempts, final.last_error) == ("failed", 3, "boom 3")
    clock.advance(3600)
    assert queue.claim("w1", lease_s=60) is None
    assert queue.get(stored.id).status == "failed"  # never dropped
    assert queue.stats()["failed"] == 1


def test_backoff_delays_double():
    assert [RETRY.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]


def test_fail_from_a_worker_that_lost_the_case_is_ignored(queue):
    stored = queue.enqueue(case()).case
    queue.claim("w1", lease_s=60)
    assert queue.fail(stored.id, "not mine", "w2").status == "processing"
    assert queue.get(stored.id).last_error is None


def test_a_failed_case_can_still_be_answered(queue, clock):
    stored = queue.enqueue(case()).case
    for _ in range(RETRY.max_attempts):
        queue.claim("w1", lease_s=60)
        queue.fail(stored.id, "boom", "w1")
        clock.advance(60)
    assert queue.get(stored.id).status == "failed"
    answered = queue.complete(stored.id, {"handler": "review", "output": {"label": "power"}})
    assert answered.status == "answered"
    assert queue.stats()["failed"] == 0


def test_a_dead_workers_case_is_claimed_again_after_its_lease(queue, clock):
    stored = queue.enqueue(case()).case
    assert queue.claim("dead", lease_s=0.05).claimed_by == "dead"
    assert queue.claim("alive", lease_s=0.05) is None  # lease not over yet
    clock.advance(1)
    time.sleep(0.1)  # Redis measures idle time itself
    again = queue.claim("alive", lease_s=0.05)
    assert (again.id, again.claimed_by, again.attempts) == (stored.id, "alive", 2)
    assert queue.fail(stored.id, "zombie", "dead").claimed_by == "alive"  # ignored
    assert queue.complete(stored.id, {"output": {}}).status == "answered"


def test_a_dead_worker_on_the_last_attempt_ends_failed(queue, clock):
    stored = queue.enqueue(case()).case
    for attempt in range(1, RETRY.max_attempts + 1):
        assert queue.claim(f"dead-{attempt}", lease_s=0.05).attempts == attempt
        clock.advance(1)
        time.sleep(0.1)
    assert queue.claim("alive", lease_s=0.05) is None
    final = queue.get(stored.id)
    assert final.status == "failed"
    assert "stopped responding" in final.last_error


def test_list_is_oldest_first_and_filters_by_status(queue, clock):
    ids = []
    for i in range(3):
        ids.append(queue.enqueue(case(f"k{i}")).case.id)
        clock.advance(1)
    queue.claim("w1", lease_s=60)
    assert [c.id for c in queue.list()] == ids
    assert [c.id for c in queue.list("pending")] == ids[1:]
    assert [c.id for c in queue.list("processing")] == ids[:1]
    assert [c.id for c in queue.list(limit=2)] == ids[:2]


def test_concurrent_enqueues_from_several_processes_store_each_key_once(open_queue):
    # Four queue objects on one store stand for four server processes.
    queues = [open_queue() for _ in range(4)]
    keys = [f"k{i}" for i in range(150)] + [f"k{i}" for i in range(50)]  # 50 sent twice

    def post(i: int):
        return queues[i % 4].enqueue(case(keys[i]))

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(post, range(len(keys))))
    assert sum(r.created for r in results) == 150
    ids: dict[str, set[str]] = {}
    for key, r in zip(keys, results, strict=True):
        ids.setdefault(key, set()).add(r.case.id)
    assert all(len(v) == 1 for v in ids.values())
    assert queues[0].stats()["total"] == 150


def test_concurrent_workers_never_claim_the_same_case(open_queue):
    first = open_queue()
    for i in range(40):
        first.enqueue(case(f"k{i}"))
    workers = [open_queue() for _ in range(6)]

    def drain(i: int) -> list[str]:
        got = []
        while (c := workers[i].claim(f"w{i}", lease_s=60)) is not None:
            got.append(c.id)
        return got

    with ThreadPoolExecutor(6) as pool:
        claimed = [cid for ids in pool.map(drain, range(6)) for cid in ids]
    assert len(claimed) == len(set(claimed)) == 40
