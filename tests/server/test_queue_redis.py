"""Redis Streams specifics, on a real redis-server: consumer group, pending entries, reclaim."""

from __future__ import annotations

import time

import pytest

from server.queue import NewCase

from .conftest import new_case


@pytest.fixture
def backend() -> str:
    return "redis"


def case(key: str = "key-1") -> NewCase:
    return NewCase.model_validate(new_case(key))


def pending_entries(q) -> list[dict]:
    return q.client.xpending_range(f"{q.prefix}:stream", "workers", "-", "+", 100)


def test_a_dead_consumers_entry_moves_to_the_live_one_with_xautoclaim(open_queue, clock):
    dead, alive = open_queue(), open_queue()  # two processes
    stored = dead.enqueue(case()).case
    dead.claim("dead", lease_s=0.05)
    assert [e["consumer"] for e in pending_entries(alive)] == ["dead"]
    del dead  # the process is gone; its entry stays in the group's pending list
    time.sleep(0.1)
    clock.advance(1)
    again = alive.claim("alive", lease_s=0.05)
    assert (again.id, again.attempts) == (stored.id, 2)
    assert [e["consumer"] for e in pending_entries(alive)] == ["alive"]
    alive.complete(stored.id, {"output": {}})
    assert pending_entries(alive) == []
    assert alive.client.xlen(f"{alive.prefix}:stream") == 0


def test_a_retry_is_a_fresh_stream_entry_once_due(queue, clock):
    stored = queue.enqueue(case()).case
    queue.claim("w1", lease_s=60)
    queue.fail(stored.id, "boom", "w1")
    assert pending_entries(queue) == []  # acknowledged: the retry waits in the delayed set
    assert queue.client.zscore(f"{queue.prefix}:delayed", stored.id) == clock() + 2
    clock.advance(2)
    assert queue.claim("w1", lease_s=60).attempts == 2


def test_cases_survive_a_new_client(open_queue):
    stored = open_queue().enqueue(case()).case
    fresh = open_queue()
    assert fresh.get(stored.id) == stored
    assert not fresh.enqueue(case()).created
    assert fresh.claim("w", lease_s=60).id == stored.id
