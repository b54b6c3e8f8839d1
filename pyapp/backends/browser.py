"""Encoder in the browser: transformers.js (onnxruntime-web) driven from Pyodide.

With ``browser_lm`` (the language model) one of the two Python modules that import ``js``/``pyodide``.
The worker registers ``edge_triage_encoders`` (web/encoders.js) before importing us: the base
encoder runs in a worker of its own (web/encoderworker.js, one message each way per call), a
task's own encoder in this worker beside the language model (web/encoders.js says why).
"""

from __future__ import annotations

import json
from typing import Any

import edge_triage_encoders  # type: ignore[import-not-found]  # registered by web/worker.js
from pyodide.ffi import to_js  # type: ignore[import-not-found]

from ..coroutine import run_to_end
from ..engine import Engine, EngineGroup, attach_heads, run_as_json
from .base import EncoderBackend


_WAITED = "the task waited on something other than its encoder call"


class EmbeddingNeeded(Exception):
    """Raised by a planning call (``BrowserApp.plan``) where the task would call the encoder."""

    def __init__(self, key: str, texts: list[str], counted: str | None):
        super().__init__(key)
        self.request = {"key": key, "texts": texts, "counted": counted}


class TransformersJsEncoder(EncoderBackend):
    def __init__(self, config: dict[str, Any], local: bool = False):
        self.config = config
        self.local = local  # run in this worker rather than the encoder worker
        self.name = config["device"]
        self.threads = int(config["threads"]) if self.name == "wasm" else 1
        encoder = config["encoder"]
        self.model_id = encoder["model_id"]
        self.dtype = encoder["dtype"]
        self.max_tokens = int(encoder["max_tokens"])
        self.model_key = encoder["key"]
        self._key = ""  # web/encoders.js's name for the loaded pipeline
        # BrowserApp.plan / finish: raise where the encoder would be called, or answer that
        # call with the reply the worker already has.
        self.planning = False
        self.given: Any = None

    async def load(self) -> None:
        # web/encoders.js downloads, verifies and loads it (web/worker.js started the base
        # encoder's load while Python booted; this gets the same one).
        loaded = await edge_triage_encoders.load(json.dumps({
            "transformersEnv": self.config["transformersEnv"], "modelsBase": self.config["modelsBase"],
            "encoder": self.config["encoder"], "device": self.name, "local": self.local}))
        self._key = loaded.key

    async def _call(self, texts: list[str], counted: str | None) -> tuple[list[list[float]], Any]:
        if self.planning:
            raise EmbeddingNeeded(self._key, texts, counted)
        if self.given is not None:
            reply, self.given = self.given, None
        else:
            reply = await edge_triage_encoders.embed(self._key, to_js(texts), counted)
        dims = reply.dims.to_py()
        flat = reply.data.to_py().tolist()  # one copy of the batch's pooled vectors
        width = dims[1]
        tokens = reply.tokens if counted is not None else None
        return [flat[i * width : (i + 1) * width] for i in range(dims[0])], tokens

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return (await self._call(texts, None))[0]

    async def embed_counted(self, text: str, counted: str) -> tuple[list[float], int]:
        # One call (a round trip to the encoder worker) for both.
        (embedding,), tokens = await self._call([text], counted)
        return embedding, int(tokens)

    async def count_tokens(self, text: str) -> int:
        return int((await self._call([], text))[1])


class BrowserApp:
    """What the worker calls: JSON in, JSON out, so no proxies cross the boundary (but the
    encoder's own reply, which ``finish`` reads as ``_call`` does).

    Tasks on an encoder of their own (``config["taskEncoders"]``, a pack's fine-tuned encoder)
    are not loaded at boot: the worker asks ``pending_encoder`` before running one and calls
    ``load_task_encoder``; the page holds a second encoder only once such a task has been used.
    """

    def __init__(self, config_json: str):
        self.config = json.loads(config_json)
        self.encoder = TransformersJsEncoder(self.config)
        self.engine = Engine(self.encoder)
        own = self.config.get("taskEncoders") or {}
        self._deferred = {t: own[t] for t in self.config["tasks"] if t in own}
        self._engines: dict[str, Engine] = {}  # model_id → engine on that encoder
        self._group = EngineGroup([self.engine])

    async def load(self) -> None:
        await self.encoder.load()
        await self.engine.load([t for t in self.config["tasks"] if t not in self._deferred],
                               artifacts=self.config.get("artifacts") or {})
        self._group = EngineGroup([self.engine])

    def pending_encoder(self, task: str) -> str:
        """The config (JSON) of the encoder ``task`` needs and that is not loaded yet; ''."""
        encoder = self._deferred.get(task)
        if encoder is None or task in self._group.tasks:
            return ""
        return json.dumps(encoder)

    async def load_task_encoder(self, task: str) -> None:
        """Load ``task``'s own encoder (in this worker) and every task that runs on it."""
        encoder = self._deferred[task]
        model_id = encoder["model_id"]
        if model_id not in self._engines:
            backend = TransformersJsEncoder({**self.config, "encoder": encoder}, local=True)
            await backend.load()
            engine = Engine(backend)
            await engine.load([t for t, e in self._deferred.items() if e["model_id"] == model_id],
                              artifacts=self.config.get("artifacts") or {})
            self._engines[model_id] = engine
        self._group = EngineGroup([self.engine, *self._engines.values()])

    def attach_heads_to(self, engine: Engine) -> None:
        """Give ``engine``'s hybrid extraction tasks the heads this app has loaded (on the base
        encoder or a task's own), for their closed-set fields."""
        attach_heads([*self._group.engines, engine])

    # A classification is two synchronous calls around the worker's own encoder call, not one
    # coroutine (``run_as_json`` awaited from JS): awaiting the encoder's promise resumes Python
    # only in a later task of Pyodide's event loop, and starting a coroutine from JS costs
    # another (README "Benchmarks"). The task code is the same: ``plan`` runs it up to its
    # encoder call, ``finish`` runs it again with that call answered.
    def plan(self, task: str, text: Any) -> str:
        """JSON: ``{"embed": {"key", "texts", "counted"}}``, the encoder call ``task`` makes on
        ``text``, or ``{"reply": …}`` where it ends before one (bad input, unknown task)."""
        backend = self._encoder_of(task)
        if backend is not None:
            backend.planning = True
        try:
            reply = run_to_end(run_as_json(self._group, task, text), _WAITED)
            return json.dumps({"reply": json.loads(reply)})
        except EmbeddingNeeded as needed:
            return json.dumps({"embed": needed.request})
        finally:
            if backend is not None:
                backend.planning = False

    def finish(self, task: str, text: Any, reply: Any) -> str:
        """``run_as_json``'s reply, the encoder's call answered by ``reply`` (web/encoders.js
        embed)."""
        backend = self._encoder_of(task)
        if backend is None:
            raise KeyError(f"task {task!r} has no encoder here")
        backend.given = reply
        try:
            return run_to_end(run_as_json(self._group, task, text), _WAITED)
        finally:
            backend.given = None

    def _encoder_of(self, task: str) -> TransformersJsEncoder | None:
        backend = self._group.backend_for(task)
        return backend if isinstance(backend, TransformersJsEncoder) else None

    def status(self) -> str:
        return json.dumps({"backend": self.encoder.name, "threads": self.encoder.threads,
                           "tasks": sorted([*self.engine.tasks, *self._deferred]),
                           "model": self.encoder.model_id,
                           "taskModels": {t: e.backend.model_id for e in self._engines.values()
                                          for t in e.tasks}})
