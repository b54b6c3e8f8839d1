"""A GGUF language model run natively by llama.cpp (PyPI ``llama-cpp-python``), server side only.

The escalation engine (``server.handlers.EngineHandler``) answers the cases the browser's small
model escalated with a bigger model than the browser can hold. llama.cpp runs the GGUF's own
block-quantised weights (Q4_K_M for Qwen2.5-Coder-1.5B: 1.1 GB), so the model is never
de-quantised to float32 (6 GB for 1.5B parameters). Only the forward pass is llama.cpp's: the
tokenizer (``tokenizers``, on the tokenizer.json the import wrote), the prompt, the grammar
(xgrammar on the same tokenizer.json) and the greedy decode loop are the ones every other backend
uses (``pyapp.generation``), so an escalated case is decoded under the task's same compiled
constraint.

Never imported in the browser; llama_cpp is imported when a model is opened, and a missing
binding fails with the command that installs it.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

from pyapp.generation import DecodeState
from models.manifest import ModelManifest
from .lm import OnnxTextGenerator, greedy_continuation

INSTALL_HINT = ("the escalation engine needs llama.cpp's Python binding: `make escalation-engine` "
                "(or pip install llama-cpp-python==0.3.36; it compiles llama.cpp: 31 min "
                "measured on a loaded 2-core machine)")


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return llama_cpp


class LlamaCppCausalLM:
    """The ``StepModel`` of ``pyapp.generation.loop`` on a llama.cpp context.

    llama.cpp keeps the KV cache inside its context, so ``DecodeState.cache`` is unused and a
    model serves one decode at a time (``lock``): the handler bounds concurrency above this.
    """

    def __init__(self, path: Path, n_ctx: int, threads: int | None = None):
        import numpy as np

        llama_cpp = import_llama_cpp()
        self._np = np
        self._llama_cpp = llama_cpp
        self.threads = threads or min(4, os.cpu_count() or 1)
        # n_batch bounds the prompt chunk per decode call and the binding's (lazily paged)
        # logits buffer; logits_all=False: only the last position's logits are computed.
        self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=256,
                                    n_threads=self.threads, n_threads_batch=self.threads,
                                    logits_all=False, use_mmap=True, verbose=False)
        self.vocab_size = int(self._llm.n_vocab())
        self.lock = threading.Lock()

    def _logits(self):
        ptr = self._llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        row = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float))
        return self._np.ctypeslib.as_array(row, shape=(self.vocab_size,)).copy()

    def start(self, ids: list[int]) -> DecodeState:
        self._llm.reset()
        self._llm.eval(ids)
        return DecodeState(self._logits(), None, len(ids))

    def step(self, state: DecodeState, token: int) -> DecodeState:
        return self.extend(state, [token])

    def extend(self, state: DecodeState, tokens: list[int]) -> DecodeState:
        """Tokens in one ``eval`` (one, or the grammar's forced tokens)."""
        if self._llm.n_tokens != state.length:  # the loop is linear; anything else is a bug
            raise RuntimeError(f"llama.cpp context holds {self._llm.n_tokens} tokens, "
                               f"the decode state {state.length}")
        self._llm.eval(tokens)
        return DecodeState(self._logits(), None, state.length + len(tokens))

    def greedy(self, ids: list[int], n: int) -> list[int]:
        return greedy_continuation(self, ids, n)

    def reference_greedy(self, ids: list[int], n: int) -> list[int]:
        """llama.cpp's own greedy sampler (top_k=1), for the import check of ``greedy``."""
        out = []
        self._llm.reset()  # no reuse of a cached prefix: a cold run, as a fresh process would
        for token in self._llm.generate(ids, top_k=1, temp=0.0, reset=True):
            out.append(int(token))
            if len(out) == n:
                break
        return out


class GgufTextGenerator(OnnxTextGenerator):
    """A ``TextGenerator`` on an imported GGUF model folder (``models.importer``): the same
    tokenizer, prompt, grammar engine and decode loop as ``OnnxTextGenerator``, llama.cpp's
    forward pass.

    >>> gen = GgufTextGenerator.from_dir("build/server-models/Qwen2.5-…")  # doctest: +SKIP
    """

    name = "llama.cpp"

    # One llama.cpp context holds one KV cache, shared by every decode: a task's prefix is not
    # kept between cases (the whole prompt is prefilled each time).
    REUSES_PREFIX = False
    # An imported GGUF names its stop tokens in generation_config.json; none is assumed.
    DEFAULT_EOS: list[int] = []

    def _open_model(self, manifest: ModelManifest, threads: int | None):
        return LlamaCppCausalLM(self.model_dir / manifest.variants[self.dtype], manifest.max_tokens,
                                threads)

    def generate_sync(self, prompt, grammar=None, max_new_tokens: int = 128, cancel=None,
                      on_token=None):
        # One llama.cpp context holds one KV cache: decodes on it take turns.
        with self.lm.lock:
            return super().generate_sync(prompt, grammar, max_new_tokens, cancel, on_token)
