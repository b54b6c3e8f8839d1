"""The decode loop's pieces in the browser: a step model, a grammar cursor and a pick kernel over
web/lm.js, for ``pyapp.generation.loop.decode_greedy_async``.

The logits, the KV cache and the grammar's bitmask stay in JS; per token Python sends a token id
and gets back (token, probability, allowed count), so the loop, the closing rule and every
constant are the ones CPython runs. The worker registers ``edge_triage_lm`` (web/lm.js) before
importing us.
"""

from __future__ import annotations

import json
from typing import Any

import edge_triage_lm  # type: ignore[import-not-found]  # registered by web/worker.js

from ..generation import DecodeState


class JsStepModel:
    """A ``StepModel`` whose state lives in JS: Python keeps only the length. The first
    ``prefix`` ids are a task's fixed prompt, whose KV cache lm.js prefills once and reuses."""

    def __init__(self, prefix: int = 0):
        self.prefix = prefix

    async def start(self, ids: list[int]) -> DecodeState:
        await edge_triage_lm.start(json.dumps(ids), self.prefix)
        return DecodeState(None, None, len(ids))

    async def step(self, state: DecodeState, token: int) -> DecodeState:
        await edge_triage_lm.step(token)
        return DecodeState(None, None, state.length + 1)

    async def extend(self, state: DecodeState, tokens: list[int]) -> DecodeState:
        await edge_triage_lm.extend(json.dumps(tokens))
        return DecodeState(None, None, state.length + len(tokens))


class JsCursor:
    """The grammar cursor of one decode: web-xgrammar's matcher for the compiled schema ``key``."""

    def __init__(self, key: str):
        self.key = key

    def new_bitmask(self) -> None:
        return None  # kept in JS

    async def fill_bitmask(self, bitmask: Any) -> None:
        await edge_triage_lm.fillBitmask(self.key)

    def accept(self, token: int) -> bool:
        return bool(edge_triage_lm.acceptToken(token))

    def is_finished(self) -> bool:
        return bool(edge_triage_lm.isTerminated())


class JsKernel:
    """The pick kernel over the logits and bitmask held in JS (web/pick.js). Closing groups are
    sent once; ``prefer`` then names them by index."""

    def group_masks(self, groups: list[list[int]]) -> list[int]:
        edge_triage_lm.setGroups(json.dumps(groups))
        return list(range(len(groups)))

    def pick(self, logits: Any, bitmask: Any, prefer: list[int] | None = None,
             avoid: list[int] | None = None,
             only: list[int] | None = None) -> tuple[int, float, int]:
        token, prob, allowed = edge_triage_lm.pick(
            json.dumps(prefer) if prefer is not None else None,
            json.dumps(avoid) if avoid else None,
            json.dumps(only) if only is not None else None).to_py()
        return int(token), float(prob), int(allowed)

    def forced(self, bitmask: Any) -> int | None:
        token = int(edge_triage_lm.forced())
        return token if token >= 0 else None
