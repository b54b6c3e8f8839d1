"""Encoder in the browser: transformers.js (onnxruntime-web) driven from Pyodide.

With ``browser_lm`` (the language model) one of the two Python modules that import ``js``/``pyodide``.
The worker registers ``edge_triage_host`` (web/inference.js) before importing us.
"""

from __future__ import annotations

import json
from typing import Any

import edge_triage_host  # type: ignore[import-not-found]  # registered by web/worker.js
from pyodide.ffi import to_js  # type: ignore[import-not-found]
from transformers_js_py import proxies as tjs_proxies  # type: ignore[import-not-found]

from ..engine import Engine, run_as_json
from .base import EncoderBackend


# What CPython sets too (backends/cpython.py): without it onnxruntime-web keeps the q8 file's
# DequantizeLinear nodes for its QDQ fusions and dequantises every weight on every call instead of
# once at load: 108-210 ms per text instead of 33-42 ms (ORT-web 1.31 Wasm, 1 thread, parity set).
SESSION_OPTIONS = {"extra": {"session": {"disable_quant_qdq": "1"}}}


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
        # The module web/inference.js imported and configured, wrapped the way transformers-js-py's
        # import_transformers_js would; that function imports through pyodide.code.run_js, i.e.
        # JavaScript eval, which the Content-Security-Policy forbids (server/app.py).
        module = await edge_triage_host.configureTransformers(to_js(self.config["transformersEnv"],
                                                                    dict_converter=_js_object))
        tjs_proxies._TRANSFORMERS_JS = module  # what its proxies compare classes against
        transformers = tjs_proxies.TjsModuleProxy(module)
        self._pipe = await transformers.pipeline(
            "feature-extraction", self.model_id,
            to_js({"device": self.name, "dtype": self.dtype, "session_options": SESSION_OPTIONS},
                  dict_converter=_js_object),
        )
        self._tokenizer = self._pipe.tokenizer

    async def embed(self, texts: list[str]) -> list[list[float]]:
        # Call the JS pipeline itself: transformers-js-py's proxy calls ``_call``, which in
        # transformers.js 4 no longer binds the tokenizer.
        # Through web/inference.js, which runs one inference at a time across both models.
        tensor = await edge_triage_host.embed(
            self._pipe._js_obj, to_js(texts),
            to_js({"pooling": "mean", "normalize": True}, dict_converter=_js_object))
        try:
            dims = tensor.dims.to_py()
            flat = tensor.data.to_py().tolist()  # one copy of the batch's pooled vectors
        finally:
            tensor.dispose()  # frees the ORT tensor now rather than at JS garbage collection
        width = dims[1]
        return [flat[i * width : (i + 1) * width] for i in range(dims[0])]

    async def count_tokens(self, text: str) -> int:
        return self._tokenizer._js_obj.encode(text).length


def _js_object(entries):
    import js  # type: ignore[import-not-found]

    return js.Object.fromEntries(entries)


class BrowserApp:
    """What the worker calls: JSON in, JSON out, so no proxies cross the boundary."""

    def __init__(self, config_json: str):
        self.config = json.loads(config_json)
        self.encoder = TransformersJsEncoder(self.config)
        self.engine = Engine(self.encoder)

    async def load(self) -> None:
        await self.encoder.load()
        await self.engine.load(list(self.config["tasks"]),
                               artifacts=self.config.get("artifacts") or {})

    async def run(self, task: str, text: Any) -> str:
        return await run_as_json(self.engine, task, text)

    def status(self) -> str:
        return json.dumps({"backend": self.encoder.name, "threads": self.encoder.threads,
                           "tasks": sorted(self.engine.tasks), "model": self.encoder.model_id})
