"""Encoder in the browser: transformers.js (onnxruntime-web) driven from Pyodide.

With ``browser_lm`` (the language model) one of the two Python modules that import ``js``/``pyodide``.
The worker registers ``edge_triage_host`` (web/inference.js) before importing us.
"""

from __future__ import annotations

import json
from typing import Any

import edge_triage_host  # type: ignore[import-not-found]  # registered by web/worker.js
from pyodide.ffi import to_js  # type: ignore[import-not-found]

from ..engine import Engine, EngineGroup, attach_heads, run_as_json
from .base import EncoderBackend


class TransformersJsEncoder(EncoderBackend):
    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.name = config["device"]
        self.threads = int(config["threads"]) if self.name == "wasm" else 1
        encoder = config["encoder"]
        self.model_id = encoder["model_id"]
        self.dtype = encoder["dtype"]
        self.max_tokens = int(encoder["max_tokens"])
        self.model_key = encoder["key"]
        self._pipe = None
        self._tokenizer = None

    async def load(self) -> None:
        # web/inference.js makes the pipeline (started by web/worker.js while Python booted).
        self._pipe = await edge_triage_host.encoderPipeline(
            to_js(self.config["transformersEnv"], dict_converter=_js_object), self.model_id,
            to_js({"device": self.name, "dtype": self.dtype}, dict_converter=_js_object))
        self._tokenizer = self._pipe.tokenizer

    async def embed(self, texts: list[str]) -> list[list[float]]:
        # Through web/inference.js, which runs one inference at a time across both models.
        tensor = await edge_triage_host.embed(
            self._pipe, to_js(texts),
            to_js({"pooling": "mean", "normalize": True}, dict_converter=_js_object))
        try:
            dims = tensor.dims.to_py()
            flat = tensor.data.to_py().tolist()  # one copy of the batch's pooled vectors
        finally:
            tensor.dispose()  # frees the ORT tensor now rather than at JS garbage collection
        width = dims[1]
        return [flat[i * width : (i + 1) * width] for i in range(dims[0])]

    async def count_tokens(self, text: str) -> int:
        return self._tokenizer.encode(text).length


def _js_object(entries):
    import js  # type: ignore[import-not-found]

    return js.Object.fromEntries(entries)


class BrowserApp:
    """What the worker calls: JSON in, JSON out, so no proxies cross the boundary.

    Tasks on an encoder of their own (``config["taskEncoders"]``, a pack's fine-tuned encoder)
    are not loaded at boot: the worker asks ``pending_encoder`` before running one, downloads
    that encoder's files and calls ``load_task_encoder``; the page holds a second encoder only
    once such a task has been used.
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
        """Load ``task``'s own encoder (its files already verified by the worker) and every
        task that runs on it."""
        encoder = self._deferred[task]
        model_id = encoder["model_id"]
        if model_id not in self._engines:
            backend = TransformersJsEncoder({**self.config, "encoder": encoder})
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

    async def run(self, task: str, text: Any) -> str:
        return await run_as_json(self._group, task, text)

    def status(self) -> str:
        return json.dumps({"backend": self.encoder.name, "threads": self.encoder.threads,
                           "tasks": sorted([*self.engine.tasks, *self._deferred]),
                           "model": self.encoder.model_id,
                           "taskModels": {t: e.backend.model_id for e in self._engines.values()
                                          for t in e.tasks}})
