"""The worker: resolves queued cases, retries failures with backoff, never drops a case."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.handlers import ChatCompletionsHandler, EngineHandler, HandlerError
from server.queue import NewCase
from server.escalation_runner import EscalationRunner

from .conftest import AUTH, RETRY, new_case
from .test_escalation_handlers import GOOD, StandInChatCompletions


class FailingHandler:
    name = "failing"
    automatic = True

    def __init__(self, error: Exception):
        self.error = error
        self.calls = 0

    async def resolve(self, case):
        self.calls += 1
        raise self.error


@pytest.fixture
def app(settings_for, backend, queue):
    app = create_app(settings_for(backend))
    app.state.queue.close()
    app.state.queue = queue  # same backend, on the test's clock
    return app


@pytest.fixture
def client(app):
    return TestClient(app)


def post(client, key: str = "k") -> str:
    r = client.post("/api/escalations", json=new_case(key), headers=AUTH)
    assert r.status_code == 201
    return r.json()["id"]


def test_process_once_answers_a_case_with_the_engine(client, app, engine):
    case_id = post(client)
    worker = EscalationRunner(app.state.queue, EngineHandler(lambda task: engine), name="w")
    done = asyncio.run(worker.process_once())
    assert (done.id, done.status, done.attempts) == (case_id, "answered", 1)
    got = client.get(f"/api/escalations/{case_id}", headers=AUTH).json()
    assert got["status"] == "answered"
    assert got["answer"]["handler"] == "engine"
    assert got["answer"]["output"]["label"] == "mechanical"
    assert asyncio.run(worker.process_once()) is None  # nothing left


@pytest.mark.parametrize("error", [HandlerError("service down"), RuntimeError("bug"),
                                   TimeoutError("slow")])
def test_a_failing_handler_retries_with_backoff_then_the_case_ends_failed(client, app, clock,
                                                                          error):
    case_id = post(client)
    handler = FailingHandler(error)
    worker = EscalationRunner(app.state.queue, handler, name="w")
    seen = []
    for attempt in range(1, RETRY.max_attempts + 1):
        case = asyncio.run(worker.process_once())
        seen.append((case.status, case.attempts))
        assert asyncio.run(worker.process_once()) is None, "retried before its backoff"
        clock.advance(RETRY.delay(attempt))
    assert seen == [("pending", 1), ("pending", 2), ("failed", 3)]
    assert handler.calls == RETRY.max_attempts
    got = client.get(f"/api/escalations/{case_id}", headers=AUTH).json()
    assert (got["status"], got["attempts"]) == ("failed", 3)
    assert got["last_error"] == f"{type(error).__name__}: {error}"
    assert got["answer"] is None


def test_a_flaky_service_is_retried_until_it_answers(client, app, clock):
    case_id = post(client)
    with StandInChatCompletions() as service:
        service.replies.extend([503, "{truncated"])
        worker = EscalationRunner(app.state.queue,
                                  ChatCompletionsHandler(service.url, "k", "m"), name="w")
        first = asyncio.run(worker.process_once())
        assert first.status == "pending" and "HTTP 503" in first.last_error
        clock.advance(RETRY.delay(1))
        second = asyncio.run(worker.process_once())
        assert "does not match the telemetry-triage schema" in second.last_error
        clock.advance(RETRY.delay(2))
        third = asyncio.run(worker.process_once())
    assert (third.id, third.status, third.attempts) == (case_id, "answered", 3)
    assert third.answer == {"handler": "openai", "model": "m", "output": GOOD}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_lifespan_worker_resolves_cases_in_the_background(settings_for, backend):
    app = create_app(settings_for(backend))  # the engine handler on the real build
    with TestClient(app) as client:
        assert app.state.escalation_runner is not None
        ids = [post(client, f"k{i}") for i in range(3)]
        # A generous bound: the first case loads the engine, on a machine that may be busy.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = [client.get(f"/api/escalations/{i}", headers=AUTH).json()["status"]
                        for i in ids]
            if statuses == ["answered"] * 3:
                break
            time.sleep(0.05)
        assert statuses == ["answered"] * 3
    assert app.state.escalation_runner is None  # stopped with the app


@pytest.mark.parametrize("backend", ["sqlite"])
def test_no_background_worker_for_review_or_when_disabled(settings_for, backend):
    for overrides in ({"handler": "review"}, {"worker": False}):
        app = create_app(settings_for(backend, **overrides))
        with TestClient(app):
            assert app.state.escalation_runner is None


def test_stop_lets_the_case_in_hand_finish_or_leaves_it_to_its_lease(queue, clock):
    class SlowHandler:
        name, automatic = "slow", True

        async def resolve(self, case):
            await asyncio.sleep(10)

    async def go():
        queue.enqueue(NewCase.model_validate(new_case()))
        worker = EscalationRunner(queue, SlowHandler(), name="w", poll_s=0.01)
        worker.start()
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await worker.stop(grace_s=0.2)
        return time.monotonic() - started

    assert asyncio.run(go()) < 2
    (case,) = queue.list()
    assert (case.status, case.claimed_by) == ("processing", "w")  # reclaimed after its lease
