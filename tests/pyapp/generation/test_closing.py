"""Closing mode and the decode loop, the same cases in both loops: pyapp/generation/loop.py under
CPython and web/decode.js (the browser's copy) under node, with the constants and closing groups
Python hands the browser (``decode_plan``). Fast: scripted logits, no model."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.cpython.sampling import GreedyKernel
from pyapp.generation import decode_greedy
from pyapp.generation.closing import IN_STRING_GROUPS, repeats, string_state
from pyapp.generation.loop import decode_plan

from .test_loop import VOCAB, AnyOfCursor, OnlyCursor, ScriptedModel

HARNESS = Path(__file__).with_name("decode_harness.mjs")

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
}

STRINGS = [((False, False), '{"a'), ((True, False), 'x\\"'), ((True, False), "\\"),
           ((True, True), '""'), ((False, False), 'a"b"c"')]
REPEATS = [[5, 1, 2, 1, 2, 1, 2, 1, 2], [1] * 7, [1] * 8, [9, 3, 4, 5, 3, 4, 5, 3, 4],
           [7] + [1, 2, 3, 4, 5, 6, 7, 8, 9] * 3, [1, 2, 3, 4, 5, 6, 7, 8] * 3]


def run_python(case: dict):
    cursor = case.get("cursor")
    if cursor is not None:
        cursor = (OnlyCursor(cursor["only"]) if "only" in cursor
                  else AnyOfCursor(cursor["any"], cursor["last"]))
    kernel = GreedyKernel(VOCAB)
    emitted = []
    closing = None
    if case.get("close_at") is not None:
        closing = (case["close_at"], kernel.group_masks(case["groups"]), case.get("quotes", {}))
    return decode_greedy(
        ScriptedModel(case["script"]), [1], kernel=kernel, cursor=cursor,
        max_new_tokens=case.get("max_new_tokens", 10), eos_ids=frozenset({0}),
        cancel=(lambda: len(emitted) >= case["cancel_after"]) if "cancel_after" in case else None,
        on_token=emitted.append, closing=closing)


def pick_cases() -> list[dict]:
    """Random logits and grammars, with and without closing preference and avoided tokens."""
    rng = random.Random(14)
    cases = []
    for i in range(60):
        logits = [round(rng.gauss(0, 3), 3) for _ in range(VOCAB)]
        allowed = None if i % 10 == 0 else sorted(rng.sample(range(VOCAB), rng.randint(1, 12)))
        prefer = [sorted(rng.sample(range(VOCAB), 3)) for _ in range(2)] if i % 3 and allowed else None
        avoid = rng.sample(range(VOCAB), 4) if i % 4 == 1 and allowed else None
        cases.append(dict(logits=logits, allowed=allowed, prefer=prefer, avoid=avoid))
    return cases


@pytest.fixture(scope="module")
def js():
    """Every case through web/decode.js in one node run."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test web/decode.js (npm ci installs the project's JS)")
    request = {"plan": decode_plan([]), "vocab": VOCAB,
               "cases": [{**c, "max_new_tokens": c.get("max_new_tokens", 10), "expect": None}
                         for c in CASES.values()],
               "picks": pick_cases(), "strings": STRINGS, "repeats": REPEATS}
    done = subprocess.run([node, str(HARNESS)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    result["cases"] = dict(zip(CASES, result["cases"]))
    return result


def check(got: dict, expect: dict) -> None:
    for key, value in expect.items():
        if key == "choices":
            assert got[key] == pytest.approx(value, rel=1e-5)
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("name", CASES)
def test_python_loop(name):
    gen = run_python(CASES[name])
    check({"token_ids": gen.token_ids, "stop_reason": gen.stop_reason, "choices": gen.choices,
           "closed_early": gen.closed_early}, CASES[name]["expect"])


@pytest.mark.parametrize("name", CASES)
def test_js_loop(js, name):
    check(js["cases"][name], CASES[name]["expect"])


def test_js_pick_kernel_matches_python(js):
    kernel = GreedyKernel(VOCAB)
    for case, (token, prob, allowed) in zip(pick_cases(), js["picks"], strict=True):
        bitmask = None
        if case["allowed"] is not None:
            bitmask = kernel.group_masks([case["allowed"]])[0]
        prefer = kernel.group_masks(case["prefer"]) if case["prefer"] else None
        want = kernel.pick(np.array(case["logits"], dtype=np.float32), bitmask, prefer,
                           case["avoid"])
        assert (token, allowed) == (want[0], want[2]), case
        assert prob == pytest.approx(want[1], rel=1e-5), case


def test_js_string_state_and_repeats_match_python(js):
    assert [tuple(s) for s in js["strings"]] == [string_state(*c) for c in STRINGS]
    assert js["repeats"] == [repeats(t) for t in REPEATS]
    assert any(js["repeats"]) and not all(js["repeats"])


def test_the_plan_carries_every_constant_the_js_loop_reads():
    plan = decode_plan([('"', 1), ("}", 2), ("ab", 3)])
    assert plan["in_string"] == list(IN_STRING_GROUPS)
    used = set()
    source = (Path(__file__).resolve().parents[3] / "web" / "decode.js").read_text()
    for key in plan:
        if f"p.{key}" in source:
            used.add(key)
    assert used == set(plan)
