"""Causal language model under CPython: onnxruntime + tokenizers on the files the browser loads.

The only module that imports onnxruntime for the LM. ``OnnxCausalLM`` does KV-cached forward
passes; ``OnnxTextGenerator`` adds the tokenizer, chat prompt, grammar engine and the decode loop
of ``pyapp.generation`` — what ``pyapp.tasks.extraction`` calls.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pyapp.generation import DecodeState, Generation, Prompt, decode_greedy
from pyapp.generation.closing import closing_starts_at, closing_token_ids, quote_tokens
from pyapp.generation.phrases import token_texts
from pyapp.generation.prompt import reusable_prefix
from .sampling import GreedyKernel
from ..ggufcodes import load_external_data
from ..manifest import ModelManifest


def greedy_continuation(model, ids: list[int], n: int) -> list[int]:
    """``n`` tokens of unconstrained greedy decoding on a step model (the build's and the
    importer's checks against a source model), numpy logits."""
    state = model.start(ids)
    out = []
    for _ in range(n):
        token = int(state.logits.argmax())
        out.append(token)
        state = model.step(state, token)
    return out


class OnnxCausalLM:
    """KV-cached forward passes of an optimum ``text-generation-with-past`` export.

    >>> lm = OnnxCausalLM.from_file("build/models/SmolLM2-…/onnx/model_quantized.onnx")  # doctest: +SKIP
    >>> lm.greedy([1, 9690, 198], 4)                                                     # doctest: +SKIP
    [...]
    """

    def __init__(self, path: Path, config: dict, threads: int | None = None):
        import numpy as np
        import onnxruntime as ort

        self._np = np
        options = ort.SessionOptions()
        self.threads = threads or min(4, os.cpu_count() or 1)
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Dequantise int8 weights once at load (constant folding) rather than re-quantising
        # activations at run time, which rounds differently in onnxruntime-web (weightquant.py).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        # A graph whose float weights are folded from GGUF codes (models/ggufcodes.py): its
        # external data, built here as web/lmweights.js builds it in the page (same bytes).
        external = load_external_data(Path(path))
        if external is not None:
            name, data = external
            options.add_external_initializers_from_files_in_memory([name], [data], [data.size])
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        del external
        self.layers = int(config["num_hidden_layers"])
        heads = int(config.get("num_key_value_heads") or config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
        self._empty = np.zeros((1, heads, 0, head_dim), dtype=np.float32)
        self._outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(self.layers)
                                      for kv in ("key", "value")]
        self.vocab_size = int(config["vocab_size"])
        # Prefilled shared prompt prefixes (a task's instructions): token ids → state. A few
        # tasks' worth; each is ~46 KB per token.
        self._prefixes: OrderedDict[tuple[int, ...], DecodeState] = OrderedDict()

    PREFIX_CACHE_SIZE = 4

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = None) -> OnnxCausalLM:
        path = Path(path)
        config = json.loads((path.parent.parent / "config.json").read_text())
        return cls(path, config, threads)

    def start(self, ids: list[int]) -> DecodeState:
        """Prefill: run the prompt, keep its KV cache, return the state with the last logits."""
        past = [self._empty] * (2 * self.layers)
        return self._run(ids, past, 0)

    def start_after(self, prefix: list[int], ids: list[int]) -> DecodeState:
        """Prefill ``ids`` (which start with ``prefix``) reusing ``prefix``'s KV cache, computed
        once by a prefill of ``prefix`` alone and kept; only the rest of ``ids`` is run."""
        key = tuple(prefix)
        state = self._prefixes.get(key)
        if state is None:
            full = self.start(prefix)
            # The cache only (its last logits are a view keeping every position's row alive).
            state = DecodeState(None, full.cache, full.length)
            self._prefixes[key] = state
            while len(self._prefixes) > self.PREFIX_CACHE_SIZE:
                self._prefixes.popitem(last=False)
        self._prefixes.move_to_end(key)
        return self._run(ids[len(prefix):], state.cache, state.length)

    def step(self, state: DecodeState, token: int) -> DecodeState:
        return self._run([token], state.cache, state.length)

    def extend(self, state: DecodeState, tokens: list[int]) -> DecodeState:
        """Several tokens in one forward pass (the grammar's forced tokens)."""
        return self._run(tokens, state.cache, state.length)

    def _run(self, ids: list[int], past: list, offset: int) -> DecodeState:
        np = self._np
        n = len(ids)
        feeds: dict[str, Any] = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, offset + n), dtype=np.int64),
            "position_ids": np.arange(offset, offset + n, dtype=np.int64)[None, :],
        }
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"] = past[2 * i]
            feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
        logits, *present = self._session.run(self._outputs, feeds)
        # Only the last position's row is kept: a view, no copy of the vocabulary vector.
        return DecodeState(logits[0, -1], present, offset + n)

    def greedy(self, ids: list[int], n: int) -> list[int]:
        """Unconstrained greedy continuation of ``n`` tokens (for checks)."""
        return greedy_continuation(self, ids, n)


class OnnxTextGenerator:
    """Tokenizer + ``OnnxCausalLM`` + grammar engine: a ``TextGenerator`` for tasks.

    >>> gen = OnnxTextGenerator.from_dir("build/models/SmolLM2-135M-Instruct-<key>")  # doctest: +SKIP
    >>> import asyncio; asyncio.run(gen.generate(Prompt(user="Say hi"), max_new_tokens=8)).text  # doctest: +SKIP
    'Hello! How can I help you today?'
    """

    name = "cpython"

    def __init__(self, model_dir: Path, manifest: ModelManifest, dtype: str | None = None,
                 threads: int | None = None):
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.dtype = dtype or manifest.dtype
        self.model_key = f"{manifest.key}:{self.dtype}"
        self.max_tokens = manifest.max_tokens
        self.tokenizer_config = json.loads((self.model_dir / "tokenizer_config.json").read_text())
        self.generation_config = json.loads((self.model_dir / "generation_config.json").read_text())
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.lm = self._open_model(manifest, threads)
        self.threads = self.lm.threads
        eos = self.generation_config.get("eos_token_id", self.DEFAULT_EOS)
        self.eos_ids = frozenset(eos if isinstance(eos, list) else [eos])
        self._grammar_engine = None
        self._kernel = GreedyKernel(self.lm.vocab_size)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True).items()
        self._closing = (self._kernel.group_masks(closing_token_ids(vocab)), quote_tokens(vocab))
        self._texts = token_texts(vocab)

    #: Whether the model keeps a task's prefilled prompt prefix (``OnnxCausalLM.start_after``).
    REUSES_PREFIX = True
    #: Stop token when generation_config.json names none (SmolLM2's <|im_end|>).
    DEFAULT_EOS: int | list[int] = 2

    def _open_model(self, manifest: ModelManifest, threads: int | None):
        """The forward pass (a ``StepModel``): onnxruntime here; llama.cpp in ``models.cpython.gguf``."""
        files = manifest.variants or {manifest.dtype: "onnx/model_quantized.onnx"}
        return OnnxCausalLM.from_file(self.model_dir / files[self.dtype], threads)

    @classmethod
    def from_dir(cls, model_dir: str | Path, dtype: str | None = None,
                 threads: int | None = None) -> OnnxTextGenerator:
        model_dir = Path(model_dir)
        manifest = ModelManifest.model_validate_json((model_dir / "manifest.json").read_text())
        return cls(model_dir, manifest, dtype, threads)

    def grammar_engine(self):
        """The grammar engine for this tokenizer (created once, on first use)."""
        if self._grammar_engine is None:
            from .xgrammar_engine import XGrammarEngine

            self._grammar_engine = XGrammarEngine.from_tokenizer_json(
                self.model_dir / "tokenizer.json", vocab_size=self.lm.vocab_size,
                stop_token_ids=sorted(self.eos_ids))
        return self._grammar_engine

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def _answer_start(self, prompt: Prompt) -> list[int]:
        return self.encode(prompt.answer_start) if prompt.answer_start else []

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """``text`` cut at a token boundary to at most ``max_tokens`` tokens."""
        enc = self._tokenizer.encode(text[: max_tokens * 100], add_special_tokens=False)
        if len(enc.ids) <= max_tokens and len(text) <= max_tokens * 100:
            return text, False
        return text[: enc.offsets[max_tokens - 1][1]], True

    async def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    async def generate(self, prompt: Prompt, grammar=None, max_new_tokens: int = 128,
                       cancel=None, on_token=None) -> Generation:
        return self.generate_sync(prompt, grammar, max_new_tokens, cancel, on_token)

    def generate_sync(self, prompt: Prompt, grammar=None, max_new_tokens: int = 128,
                      cancel=None, on_token=None) -> Generation:
        ids = self.encode(prompt.render())
        answer_start = self._answer_start(prompt)
        # The answer's fixed start is not counted in max_new_tokens (decode_greedy), but it
        # takes room in the context window.
        budget = min(max_new_tokens, self.max_tokens - len(ids) - len(answer_start))
        cursor = grammar.cursor() if grammar is not None else None
        started = time.perf_counter()
        fixed = reusable_prefix(ids, self.encode(prompt.fixed_text()))
        prefix = fixed if self.REUSES_PREFIX else []
        model = _PrefixedModel(self.lm, prefix) if prefix else self.lm
        gen = decode_greedy(model, ids, kernel=self._kernel, cursor=cursor,
                            max_new_tokens=max(0, budget), eos_ids=self.eos_ids,
                            cancel=cancel, on_token=on_token,
                            closing=(closing_starts_at(max(0, budget)), *self._closing),
                            fixed=len(fixed), answer_start=answer_start,
                            token_texts=self._texts,
                            span_fields=prompt.span_fields, span_source=prompt.span_source)
        gen.timings["cached_prompt_tokens"] = float(len(prefix))
        return gen.finish(self.decode(gen.token_ids), len(ids), max_new_tokens, budget,
                          time.perf_counter() - started, decode=self.decode)


class _PrefixedModel:
    """``OnnxCausalLM`` whose prefill reuses a cached prompt prefix (a ``StepModel``)."""

    def __init__(self, lm: OnnxCausalLM, prefix: list[int]):
        self._lm, self._prefix = lm, prefix

    def start(self, ids: list[int]) -> DecodeState:
        return self._lm.start_after(self._prefix, ids)

    def step(self, state: DecodeState, token: int) -> DecodeState:
        return self._lm.step(state, token)

    def extend(self, state: DecodeState, tokens: list[int]) -> DecodeState:
        return self._lm.extend(state, tokens)
