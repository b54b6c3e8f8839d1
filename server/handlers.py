"""Who answers an escalated case, chosen by ``EDGE_TRIAGE_HANDLER``.

- ``engine`` (default): the CPython pyapp engine; extraction cases on the escalation model
  (``server.escalation_engine``: a bigger GGUF model under llama.cpp when one is imported).
- ``openai``: any OpenAI-compatible chat-completions service, asked for JSON in the task's schema.
- ``review``: nobody automatically; people answer on the ``/review`` page.

Every answer is a dict whose ``output`` validates against the task's output model, plus which
handler gave it. A handler signals failure by raising; the worker retries with backoff.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from pyapp.tasks import create_task

from .queue import Case
from .settings import Settings


class HandlerError(RuntimeError):
    """A readable reason an attempt failed; it ends up in the case's ``last_error``."""


class EscalationHandler(Protocol):
    name: str
    automatic: bool  # False: no background worker; answers arrive some other way (review page)

    async def resolve(self, case: Case) -> dict[str, Any]: ...


def output_model(task: str) -> type[BaseModel]:
    return create_task(task).output_model


def readable(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
    )


class EngineHandler:
    """Runs the case on this server's CPython engine for its task (``server.escalation_engine``:
    extraction on the escalation model, classification on the encoder).

    ``open_engine(task)`` is called once per task, on that task's first case, never at server
    start; at most ``concurrency`` cases run at once, and a case that takes longer than
    ``timeout_s`` is cancelled (within one token) and fails this attempt, to be retried.
    """

    name = "engine"
    automatic = True

    def __init__(self, open_engine: Callable[[str], Any], concurrency: int = 1,
                 timeout_s: float | None = None):
        self._open_engine = open_engine
        self._engines: dict[str, Any] = {}
        # A thread lock, not an asyncio one: opening runs in a worker thread, and the handler
        # may be driven from more than one event loop (tests, the CLI).
        self._opening = threading.Lock()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineHandler:
        from .escalation_engine import EscalationEngines

        return cls(EscalationEngines(settings).open, settings.escalation_concurrency,
                   settings.escalation_timeout_s or None)

    def _engine(self, task: str):
        with self._opening:
            if task not in self._engines:
                self._engines[task] = self._open_engine(task)
            return self._engines[task]

    async def resolve(self, case: Case) -> dict[str, Any]:
        try:
            engine = await asyncio.to_thread(self._engine, case.task)
        except (ValueError, KeyError) as e:  # unknown task
            raise HandlerError(f"engine refused the case: {e}") from e
        cancelled = threading.Event()

        def run() -> dict[str, Any]:
            return asyncio.run(engine.run(case.task, case.text, cancel=cancelled.is_set))

        async with self._slots:
            # Inference is synchronous native work: keep it off the server's event loop.
            try:
                result = await asyncio.wait_for(asyncio.to_thread(run), self.timeout_s)
            except TimeoutError as e:
                cancelled.set()  # the decode loop polls this before every token
                raise HandlerError(f"engine timed out after {self.timeout_s:g} s") from e
            except (ValueError, KeyError) as e:  # InputError is a ValueError
                raise HandlerError(f"engine refused the case: {e}") from e
        # The model that ran the task (an extraction's engine is grouped with its heads' encoder).
        backend = engine.backend_for(case.task) if hasattr(engine, "backend_for") else \
            getattr(engine, "backend", None)
        model = getattr(backend, "manifest", None)
        return {"handler": self.name, **({"model": model.model_id} if model else {}), **result}


class ChatCompletionsHandler:
    """Asks an OpenAI-compatible ``/chat/completions`` endpoint for the task's output as JSON.

    >>> handler = ChatCompletionsHandler("https://api.example.com/v1", "sk-...", "some-model")
    """

    name = "openai"
    automatic = True

    def __init__(self, url: str, key: str | None, model: str, timeout_s: float = 60.0):
        self.url = url.rstrip("/") + "/chat/completions"
        self.key = key
        self.model = model
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatCompletionsHandler:
        if not settings.openai_url or not settings.openai_model:
            raise ValueError("EDGE_TRIAGE_HANDLER=openai needs EDGE_TRIAGE_OPENAI_URL and "
                             "EDGE_TRIAGE_OPENAI_MODEL (and usually EDGE_TRIAGE_OPENAI_KEY)")
        return cls(settings.openai_url, settings.openai_key, settings.openai_model,
                   settings.openai_timeout_s)

    def request_body(self, case: Case) -> dict[str, Any]:
        task = create_task(case.task)
        local = json.dumps(case.local_result, ensure_ascii=False) if case.local_result else "none"
        return {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content":
                    f"You resolve cases that a small on-device model escalated. Task "
                    f"{task.name!r}: {task.description} Reply with JSON only, matching the "
                    f"schema."},
                {"role": "user", "content":
                    f"Text:\n{case.text}\n\nLocal model's result: {local}\n"
                    f"Why it was escalated: {'; '.join(case.reasons) or 'not given'}"},
            ],
            # strict=False: strict mode forbids open objects, and outputs such as `scores`
            # (label → probability) are open; the reply is validated with pydantic instead.
            "response_format": {"type": "json_schema", "json_schema": {
                "name": re.sub(r"[^A-Za-z0-9_-]", "_", task.name)[:64],
                "schema": task.output_model.model_json_schema(),
                "strict": False,
            }},
        }

    async def resolve(self, case: Case) -> dict[str, Any]:
        import httpx

        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(self.url, json=self.request_body(case),
                                             headers=headers)
        except httpx.HTTPError as e:
            raise HandlerError(f"chat completions request failed: {type(e).__name__}: {e}") from e
        if response.status_code != 200:
            raise HandlerError(f"chat completions returned HTTP {response.status_code}: "
                               f"{response.text[:300]}")
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise HandlerError("chat completions reply has no choices[0].message") from e
        if message.get("refusal"):
            raise HandlerError(f"the model refused: {message['refusal']}")
        try:
            output = output_model(case.task).model_validate_json(message.get("content") or "")
        except ValidationError as e:
            raise HandlerError(f"reply does not match the {case.task} schema: {readable(e)}") from e
        return {"handler": self.name, "model": self.model, "output": output.model_dump(mode="json")}


class ReviewHandler:
    """People answer on ``/review`` (server/review.py); there is nothing to run in the background."""

    name = "review"
    automatic = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewHandler:
        return cls()

    async def resolve(self, case: Case) -> dict[str, Any]:
        raise HandlerError("cases are answered by people on /review")


HANDLERS: Mapping[str, Callable[[Settings], EscalationHandler]] = MappingProxyType({
    "engine": EngineHandler.from_settings,
    "openai": ChatCompletionsHandler.from_settings,
    "review": ReviewHandler.from_settings,
})


def create_handler(settings: Settings) -> EscalationHandler:
    return HANDLERS[settings.handler](settings)
