"""The language model in the browser: a ``TextGenerator`` over web/lm.js (transformers.js +
web-xgrammar), for extraction tasks in Pyodide.

Besides ``browser.py`` the only Python module that talks to JS. The worker registers
``edge_triage_lm`` (web/lm.js) before importing us. The prompt, the context budget, the stop
reasons, the result and the decode loop itself (``pyapp.generation.loop``) are the code CPython
runs; the loop drives small JS pieces (``browser_decode``) that keep the logits, the KV cache and
the grammar's bitmask in JS, so per token only a token id and (token, probability, allowed count)
cross. Cancel and streaming are JS-side too
(``lm.cancel()``, ``lm.setTokenListener``), driven by the worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

import edge_triage_lm  # type: ignore[import-not-found]  # registered by web/worker.js

from ..engine import Engine, run_as_json
from ..generation import Generation, Prompt
from ..generation.closing import closing_starts_at, closing_token_ids, quote_tokens
from ..generation.phrases import token_texts
from ..generation.loop import decode_greedy_async
from ..generation.prompt import reusable_prefix
from ..grammar import CompiledGrammar, GrammarEngine, enforceable
from ..grammar.coverage import check_web_xgrammar
from .browser_decode import JsCursor, JsKernel, JsStepModel


class JsCompiledGrammar(CompiledGrammar):
    """A schema compiled by web-xgrammar in the worker; ``key`` names it to ``lm.generate``."""

    def __init__(self, key: str, schema: dict):
        self.key = key
        self.schema = schema

    def cursor(self) -> JsCursor:
        return JsCursor(self.key)


class JsGrammarEngine(GrammarEngine):
    """web-xgrammar with models/cpython/xgrammar_engine.py's options. Compiling is async in JS,
    so ``prepare`` compiles ahead (at task load) and ``compile_json_schema`` returns that."""

    name = "web-xgrammar"

    def __init__(self):
        self._compiled: dict[str, JsCompiledGrammar] = {}

    async def prepare(self, schema: dict) -> None:
        key = json.dumps(schema)
        if key not in self._compiled:
            # What CPython compiles: the enforceable rewrite, properties in the schema's order.
            rewritten = enforceable(schema)
            check_web_xgrammar(rewritten)
            compiled = json.dumps(rewritten)
            await edge_triage_lm.compileSchema(compiled)
            self._compiled[key] = JsCompiledGrammar(compiled, schema)

    def compile_json_schema(self, schema: dict) -> JsCompiledGrammar:
        key = json.dumps(schema)
        if key not in self._compiled:
            raise RuntimeError("schema not prepared: call `await engine.prepare(schema)` first")
        return self._compiled[key]


class BrowserTextGenerator:
    def __init__(self, config: dict[str, Any]):
        lm = config["lm"]
        self.config = config
        self.name = config.get("device", "wasm")
        self.threads = int(config.get("threads", 1)) if self.name == "wasm" else 1
        self.dtype = lm["dtype"]
        self.model_key = f"{lm['key']}:{self.dtype}"
        self.max_tokens = int(lm["max_tokens"])
        self._engine = JsGrammarEngine()

    async def load(self, on_progress=None) -> None:
        # The budget and the encoders' estimates let lm.js pick the variant that fits (or refuse).
        options = {"modelsBase": self.config["modelsBase"], "lm": self.config["lm"],
                   "device": self.name, "transformersEnv": self.config["transformersEnv"],
                   "xgrammarUrl": self.config["xgrammarUrl"],
                   "encoderMemoryBytes": self.config.get("encoderMemoryBytes"),
                   "memoryBudgetBytes": self.config.get("memoryBudgetBytes"),
                   "measuredMemoryBytes": self.config.get("measuredMemoryBytes")}
        info = json.loads(await edge_triage_lm.load(json.dumps(options), on_progress))
        vocab = [(text, i) for i, text in enumerate(json.loads(edge_triage_lm.vocabulary()))]
        self._kernel = JsKernel()
        self._closing = (self._kernel.group_masks(closing_token_ids(vocab)), quote_tokens(vocab))
        self._texts = token_texts(vocab)
        self.eos_ids = frozenset(info["eos_ids"])
        self.dtype = info["dtype"]
        self.model_key = f"{self.config['lm']['key']}:{self.dtype}"

    def grammar_engine(self) -> JsGrammarEngine:
        return self._engine

    def encode(self, text: str) -> list[int]:
        return json.loads(edge_triage_lm.encode(text))

    def decode(self, ids: list[int]) -> str:
        # transformers.js refuses an empty list; CPython's tokenizer decodes it to "" (the text
        # before a choice made at the first token).
        return edge_triage_lm.decode(json.dumps(ids)) if ids else ""

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """``text`` cut at a token boundary to at most ``max_tokens`` tokens (as CPython's, which
        cuts at the token's character offset; here the decoded prefix gives that offset)."""
        ids = self.encode(text[: max_tokens * 100])
        if len(ids) <= max_tokens and len(text) <= max_tokens * 100:
            return text, False
        prefix = self.decode(ids[:max_tokens])
        return (text[: len(prefix)] if text.startswith(prefix) else prefix), True

    async def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    async def generate(self, prompt: Prompt, grammar=None, max_new_tokens: int = 128,
                       cancel=None, on_token=None) -> Generation:
        # As OnnxTextGenerator.generate_sync (models/cpython/lm.py), with the JS pieces. Cancel
        # and streaming are the worker's (lm.cancel(), lm.setTokenListener).
        ids = self.encode(prompt.render())
        answer_start = self.encode(prompt.answer_start) if prompt.answer_start else []
        budget = min(max_new_tokens, self.max_tokens - len(ids) - len(answer_start))
        cursor = grammar.cursor() if grammar is not None else None
        started = time.perf_counter()
        # The same split as under CPython: lm.js keeps the prefix's KV cache per task.
        prefix = reusable_prefix(ids, self.encode(prompt.fixed_text()))
        try:
            gen = await decode_greedy_async(
                JsStepModel(len(prefix)), ids, kernel=self._kernel, cursor=cursor,
                max_new_tokens=max(0, budget), eos_ids=self.eos_ids,
                cancel=lambda: bool(edge_triage_lm.isCancelled()),
                on_token=edge_triage_lm.emitToken,
                closing=(closing_starts_at(max(0, budget)), *self._closing),
                fixed=len(prefix),
                answer_start=answer_start,
                token_texts=self._texts,
                span_fields=prompt.span_fields, span_source=prompt.span_source)
        finally:
            edge_triage_lm.release()
        gen.timings["cached_prompt_tokens"] = float(len(prefix))
        return gen.finish(self.decode(gen.token_ids), len(ids), max_new_tokens, budget,
                          time.perf_counter() - started, decode=self.decode)


class BrowserLMApp:
    """What the worker calls for extraction tasks: JSON in, JSON out (as ``BrowserApp``)."""

    def __init__(self, config_json: str):
        self.config = json.loads(config_json)
        self.generator = BrowserTextGenerator(self.config)
        self.engine = Engine(self.generator)  # type: ignore[arg-type]

    async def load(self, on_progress=None) -> None:
        from ..tasks import create_task

        await self.generator.load(on_progress)
        names = list(self.config["lmTasks"])
        for name in names:
            await self.generator.grammar_engine().prepare(create_task(name).schema)
        # The tasks' build-time calibrations travel with the encoder tasks' artifacts.
        await self.engine.load(names, artifacts=self.config.get("artifacts") or {})

    async def run(self, task: str, text: Any) -> str:
        return await run_as_json(self.engine, task, text)

    def status(self) -> str:
        return json.dumps({"backend": self.generator.name, "threads": self.generator.threads,
                           "tasks": sorted(self.engine.tasks), "dtype": self.generator.dtype})
