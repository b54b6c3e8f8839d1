"""Closing mode and the decode loop on shared cases, through both drivers of the one loop:
``decode_greedy`` (CPython's pieces answer at once) and ``decode_greedy_async`` with pieces that
answer through coroutines, as the browser's JS pieces do (pyapp/backends/browser_decode.py). Fast:
scripted logits, no model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from models.cpython.sampling import GreedyKernel
from pyapp.generation import decode_greedy
from pyapp.generation.loop import decode_greedy_async

from .test_loop import VOCAB, AnyOfCursor, OnlyCursor, ScriptedModel

#: name → case: the scripted favourites, the grammar (``only``: allowed ids per step; ``any``:
#: the same ids every step, finished after ``last``), the closing plan, and what must come out.
CASES = {
    "eos stops without being emitted": dict(
        script=[5, 6, 0, 9], expect=dict(token_ids=[5, 6], stop_reason="eos")),
    "token limit": dict(
        script=[5] * 20, max_new_tokens=4, expect=dict(token_ids=[5] * 4, stop_reason="max_new_tokens")),
    "cancel within one token": dict(
        script=[5] * 20, cancel_after=2, expect=dict(token_ids=[5, 5], stop_reason="cancelled")),
    # The model prefers 5; the grammar allows {7, 9} then {9}: the runner-up 7, then 9, and one
    # real choice whose probability is renormalised over {7, 9}.
    "grammar mask overrides the favourite": dict(
        script=[5, 5, 5], cursor={"only": [[7, 9], [9]]},
        expect=dict(token_ids=[7, 9], stop_reason="grammar", choices=[1 / (1 + np.exp(-4.0))])),
    # The model keeps choosing 5 ("more text"); from token 3 on the closer 9 is preferred.
    "closing near the budget": dict(
        script=[5], cursor={"any": [5, 7, 9], "last": 9}, groups=[[9], [7]], close_at=3,
        expect=dict(token_ids=[5, 5, 5, 9], stop_reason="grammar", closed_early=True)),
    "no closing before the reserve": dict(
        script=[5, 5, 9], cursor={"any": [5, 7, 9], "last": 9}, groups=[[9], [7]], close_at=8,
        expect=dict(token_ids=[5, 5, 9], closed_early=False)),
    "falls through groups the grammar does not allow": dict(
        script=[5], cursor={"any": [5, 7, 9], "last": 7}, groups=[[11], [12, 7]], close_at=1,
        expect=dict(token_ids=[5, 7])),
    # Token 3 is '"', 9 is '}' (group 0), 8 is '"}' (group 1). Opening quote first, then inside
    # the string '}' is just a character: the quote group wins although '}' is listed first.
    "inside a string only the string closes": dict(
        script=[3, 5], cursor={"any": [3, 5, 8, 9], "last": 8}, groups=[[9], [8], [3]],
        close_at=1, quotes={3: '"', 8: '"}'}, expect=dict(token_ids=[3, 8])),
    "outside a string the pure closer": dict(
        script=[5], cursor={"any": [3, 5, 8, 9], "last": 9}, groups=[[9], [8], [3]],
        close_at=1, quotes={3: '"', 8: '"}'}, expect=dict(token_ids=[5, 9])),
    # Greedy on a model that only ever wants 5 loops; after 8 of them it is closed, long before
    # the reserve at token 50.
    "a loop starts closing early": dict(
        script=[5], cursor={"any": [5, 9], "last": 9}, groups=[[9]], close_at=50,
        max_new_tokens=60, expect=dict(token_ids=[5] * 8 + [9], closed_early=True)),
    # Like the digits of a time's fraction: only a digit or the final "Z" (9) may come next and
    # no closing group applies, so recent tokens are avoided until the loop is left.
    "a loop is left where no closer is allowed": dict(
        script=[5], cursor={"any": [5, 6, 9], "last": 9}, groups=[[11]], close_at=50,
        max_new_tokens=60, expect=dict(token_ids=[5] * 8 + [6, 9], closed_early=True)),
    # Inside a string (3 opens it, 8 closes it) the model would write "5 6" a third time: the
    # token that would repeat the 3-token sequence 6 5 6 → 5 is avoided, the runner-up 7 written.
    "a phrase is not repeated inside a string": dict(
        script=[3, 5, 6, 5, 6, 5, 8], cursor={"any": [3, 5, 6, 7, 8], "last": 8}, groups=[[9]],
        close_at=50, quotes={3: '"', 8: '"}'}, expect=dict(token_ids=[3, 5, 6, 5, 6, 7, 8])),
    # ... unless the prompt has that sequence too (a copy of the input may repeat itself).
    "a repeat the prompt has is allowed": dict(
        script=[3, 5, 6, 5, 6, 5, 8], cursor={"any": [3, 5, 6, 7, 8], "last": 8}, groups=[[9]],
        close_at=50, quotes={3: '"', 8: '"}'}, prompt=[1, 6, 5, 6, 5],
        expect=dict(token_ids=[3, 5, 6, 5, 6, 5, 8])),
    # The first 4 prompt tokens are the task's instructions, with the phrase 5 6 9 that the rest
    # of the prompt does not have: inside a string the model may not write it out again.
    "the instructions are not echoed into a string": dict(
        script=[3, 5, 6, 9, 8], cursor={"any": [3, 5, 6, 7, 8, 9], "last": 8}, groups=[[11]],
        close_at=50, quotes={3: '"', 8: '"}'}, prompt=[1, 5, 6, 9, 2], fixed=4,
        expect=dict(token_ids=[3, 5, 6, 7, 8])),
    "what the input has too may be copied": dict(
        script=[3, 5, 6, 9, 8], cursor={"any": [3, 5, 6, 7, 8, 9], "last": 8}, groups=[[11]],
        close_at=50, quotes={3: '"', 8: '"}'}, prompt=[1, 5, 6, 9, 2, 5, 6, 9], fixed=4,
        expect=dict(token_ids=[3, 5, 6, 9, 8])),
    # Outside strings (structure, numbers) nothing is avoided: "5 6 5 6 5" stands.
    "outside a string a repeat is not avoided": dict(
        script=[5, 6, 5, 6, 5, 9], cursor={"any": [5, 6, 7, 9], "last": 9}, groups=[[11]],
        close_at=50, quotes={3: '"'}, expect=dict(token_ids=[5, 6, 5, 6, 5, 9])),
}


def pieces(case: dict):
    cursor = case.get("cursor")
    if cursor is not None:
        cursor = (OnlyCursor(cursor["only"]) if "only" in cursor
                  else AnyOfCursor(cursor["any"], cursor["last"]))
    kernel = GreedyKernel(VOCAB)
    emitted: list[int] = []
    closing = None
    if case.get("close_at") is not None:
        closing = (case["close_at"], kernel.group_masks(case["groups"]), case.get("quotes", {}))
    options = dict(kernel=kernel, cursor=cursor, max_new_tokens=case.get("max_new_tokens", 10),
                   eos_ids=frozenset({0}), on_token=emitted.append, closing=closing,
                   fixed=case.get("fixed", 0),
                   cancel=(lambda: len(emitted) >= case["cancel_after"])
                   if "cancel_after" in case else None)
    return ScriptedModel(case["script"]), options


class AsyncModel:
    """The scripted model behind coroutines that really suspend (as awaiting JS does)."""

    def __init__(self, model):
        self.model = model

    async def start(self, ids):
        await asyncio.sleep(0)
        return self.model.start(ids)

    async def step(self, state, token):
        await asyncio.sleep(0)
        return self.model.step(state, token)


class AsyncCursor:
    def __init__(self, cursor):
        self.cursor = cursor
        self.new_bitmask, self.accept, self.is_finished = (
            cursor.new_bitmask, cursor.accept, cursor.is_finished)

    async def fill_bitmask(self, bitmask):
        await asyncio.sleep(0)
        self.cursor.fill_bitmask(bitmask)


def check(gen, expect: dict) -> None:
    for key, value in expect.items():
        got = getattr(gen, key)
        assert got == (pytest.approx(value, rel=1e-5) if key == "choices" else value), key


@pytest.mark.parametrize("name", CASES)
def test_loop(name):
    model, options = pieces(CASES[name])
    check(decode_greedy(model, CASES[name].get("prompt", [1]), **options), CASES[name]["expect"])


@pytest.mark.parametrize("name", CASES)
def test_loop_with_asynchronous_pieces(name):
    model, options = pieces(CASES[name])
    if options["cursor"] is not None:
        options["cursor"] = AsyncCursor(options["cursor"])
    check(asyncio.run(decode_greedy_async(AsyncModel(model), CASES[name].get("prompt", [1]),
                                          **options)),
          CASES[name]["expect"])


def test_the_synchronous_driver_refuses_asynchronous_pieces():
    model, options = pieces(CASES["token limit"])
    with pytest.raises(RuntimeError, match="asynchronous"):
        decode_greedy(AsyncModel(model), [1], **options)

