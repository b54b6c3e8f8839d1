"""web/pick.js, the browser's pick kernel (the loop in pyapp/generation/loop.py drives it through
pyapp/backends/browser_decode.py), against models/cpython/sampling.py GreedyKernel: the same token,
allowed count, probability and forced token on random logits, grammars, closing preferences, avoided
tokens and span restrictions (``only``, pyapp/generation/spans.py).
Runs node once."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.cpython.sampling import GreedyKernel

HARNESS = Path(__file__).with_name("pick_harness.mjs")
VOCAB = 40


def pick_cases() -> list[dict]:
    rng = random.Random(14)
    cases = []
    for i in range(80):
        logits = [round(rng.gauss(0, 3), 3) for _ in range(VOCAB)]
        allowed = None if i % 10 == 0 else sorted(rng.sample(range(VOCAB), rng.randint(1, 12)))
        prefer = [sorted(rng.sample(range(VOCAB), 3)) for _ in range(2)] if i % 3 and allowed else None
        avoid = rng.sample(range(VOCAB), 4) if i % 4 == 1 and allowed else None
        only = None
        if allowed and i % 5 == 2:
            only = sorted(rng.sample(range(VOCAB), 5))
        elif allowed and i % 5 == 4:  # none of them allowed: the restriction is dropped
            only = [t for t in range(VOCAB) if t not in allowed][:3]
        cases.append(dict(logits=logits, allowed=allowed, prefer=prefer, avoid=avoid, only=only))
    for token in (0, 31, 32, VOCAB - 1):  # one allowed token, at the ends of a bitmask word
        cases.append(dict(logits=cases[token]["logits"], allowed=[token], prefer=None, avoid=None,
                          only=None))
    return cases


def test_js_pick_kernel_matches_python():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test web/pick.js")
    cases = pick_cases()
    done = subprocess.run([node, str(HARNESS)], input=json.dumps({"vocab": VOCAB, "picks": cases}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kernel = GreedyKernel(VOCAB)
    preferred = 0
    single = 0
    restricted = 0
    for case, (token, prob, allowed, forced) in zip(cases, json.loads(done.stdout), strict=True):
        bitmask = kernel.group_masks([case["allowed"]])[0] if case["allowed"] is not None else None
        prefer = kernel.group_masks(case["prefer"]) if case["prefer"] else None
        want = kernel.pick(np.array(case["logits"], dtype=np.float32), bitmask, prefer,
                           case["avoid"], case["only"])
        assert (token, allowed) == (want[0], want[2]), case
        assert prob == pytest.approx(want[1], rel=1e-5), case
        # The one allowed token (which the loop takes without logits), or none.
        want_forced = kernel.forced(bitmask) if bitmask is not None else None
        assert forced == (-1 if want_forced is None else want_forced), case
        if want_forced is not None:
            single += 1
            assert want_forced == token and allowed == 1
        unpreferred = kernel.pick(np.array(case["logits"], dtype=np.float32), bitmask)[0]
        preferred += token != unpreferred
        if case["only"] is not None:
            fits = [t for t in case["only"] if t in case["allowed"]]
            assert token in fits if fits else True, case
            restricted += token != kernel.pick(np.array(case["logits"], dtype=np.float32),
                                               bitmask, prefer, case["avoid"])[0]
    assert preferred > 5  # the cases exercise the closing preference, not only the argmax
    assert single >= 6  # and grammars that allow one token
    assert restricted > 3  # and restrictions that change the token
