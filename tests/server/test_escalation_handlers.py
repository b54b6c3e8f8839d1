"""Handlers: the CPython engine, an OpenAI-compatible service (a local stand-in), the factory."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from server.handlers import (
    ChatCompletionsHandler,
    EngineHandler,
    HandlerError,
    ReviewHandler,
    create_handler,
)
from server.queue import Case, NewCase
from server.settings import Settings

from .conftest import new_case

GOOD = {"label": "power", "confidence": 0.93, "scores": {"power": 0.93, "thermal": 0.07}}


class StandInChatCompletions:
    """A stand-in for the third-party OpenAI-compatible service, on loopback.

    ``replies`` is consumed one per request: a dict is sent as the message content (JSON), a str
    as raw content, an int as an HTTP error status. It records every request it gets.
    """

    def __init__(self):
        self.replies: list = []
        self.requests: list[dict] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            self.requests.append({"headers": dict(request.headers),
                                  "body": await request.json()})
            reply = self.replies.pop(0) if self.replies else GOOD
            if isinstance(reply, int):
                return JSONResponse({"error": {"message": "stand-in failure"}}, reply)
            content = reply if isinstance(reply, str) else json.dumps(reply)
            return {"id": "chatcmpl-standin", "object": "chat.completion",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}]}

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                     ws="none"))
        self._thread = threading.Thread(target=self._server.run, args=([self._sock],),
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


@pytest.fixture(scope="module")
def stand_in():
    with StandInChatCompletions() as server:
        yield server


@pytest.fixture
def service(stand_in):
    stand_in.replies.clear()
    stand_in.requests.clear()
    return stand_in


def a_case(**overrides) -> Case:
    return Case.new(NewCase.model_validate(new_case(**overrides)), now=1.0)


def test_the_engine_handler_answers_with_the_engine_result(engine):
    handler = EngineHandler(lambda task: engine)
    answer = asyncio.run(handler.resolve(a_case()))
    assert answer["handler"] == "engine"
    assert answer["output"]["label"] == "mechanical"
    assert answer["task"] == "telemetry-triage" and answer["backend"] == "cpython"


def test_the_engine_is_loaded_once_per_task_on_first_use(engine):
    opened = []
    handler = EngineHandler(lambda task: opened.append(task) or engine)
    assert opened == []

    async def twice():
        return await asyncio.gather(handler.resolve(a_case()), handler.resolve(a_case()))

    asyncio.run(twice())
    assert opened == ["telemetry-triage"]


def test_chat_completions_asks_for_the_task_schema_and_validates_the_reply(service):
    handler = ChatCompletionsHandler(service.url, "sk-test", "stand-in-model")
    answer = asyncio.run(handler.resolve(a_case()))
    assert answer == {"handler": "openai", "model": "stand-in-model", "output": GOOD}
    (sent,) = service.requests
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "stand-in-model"
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "telemetry-triage"
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"][:2] == ["thermal", "power"]
    assert "Fan 2 stalled" in body["messages"][-1]["content"]
    assert "below threshold" in body["messages"][-1]["content"]


@pytest.mark.parametrize(("reply", "message"), [
    ({"label": "banana", "confidence": 0.5, "scores": {}}, "label: Input should be 'thermal'"),
    ("not json at all", "reply does not match the telemetry-triage schema"),
    ({"label": "power"}, "confidence: Field required"),
    (500, "HTTP 500"),
    (429, "HTTP 429"),
])
def test_chat_completions_failures_are_readable_handler_errors(service, reply, message):
    service.replies.append(reply)
    handler = ChatCompletionsHandler(service.url, None, "m")
    with pytest.raises(HandlerError, match=message):
        asyncio.run(handler.resolve(a_case()))
    assert "authorization" not in service.requests[0]["headers"]


def test_an_unreachable_service_is_a_handler_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    handler = ChatCompletionsHandler(f"http://127.0.0.1:{port}/v1", None, "m", timeout_s=2)
    with pytest.raises(HandlerError, match="request failed: ConnectError"):
        asyncio.run(handler.resolve(a_case()))


def test_the_review_handler_does_not_run_in_the_background():
    assert ReviewHandler.automatic is False
    with pytest.raises(HandlerError, match="/review"):
        asyncio.run(ReviewHandler().resolve(a_case()))


def test_settings_choose_the_handler(tmp_path):
    assert isinstance(create_handler(Settings(build_dir=tmp_path)), EngineHandler)
    assert isinstance(create_handler(Settings(handler="review")), ReviewHandler)
    openai = create_handler(Settings(handler="openai", openai_url="http://x/v1/",
                                     openai_key="k", openai_model="m"))
    assert isinstance(openai, ChatCompletionsHandler)
    assert openai.url == "http://x/v1/chat/completions"
    with pytest.raises(ValueError, match="EDGE_TRIAGE_OPENAI_URL"):
        create_handler(Settings(handler="openai"))
