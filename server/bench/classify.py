"""Classification sections: our page vs a plain transformers.js page on the standard export.

One Chromium run (server/bench/classify.mjs) measures, for each page and ``repeats`` times (the
two pages' order swapped every repeat): cold start (fresh profile) and warm start (second visit)
to the first result, and the bytes each visit downloaded; then warm ``edgeTriage.run`` latency
against ``plain.run`` over the parity texts, interleaved, ``repeats`` times. Ratios are medians
over repeats.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .runner import BenchContext, Pair

SCRIPT = Path(__file__).with_name("classify.mjs")
TEXTS = Path(__file__).resolve().parent.parent.parent / "tests" / "data" / "parity_texts.json"
FIRST_TEXT = "Error: Fan speed threshold exceeded on Node 4B."
PLAIN = "plain transformers.js"
# Issue 11's targets (ratios to the plain page; ≤ 50 ms absolute for classification).
TARGET_LATENCY = 1.0
TARGET_COLD = 2.0
TARGET_ABSOLUTE_MS = 50.0


def _measure(ctx: BenchContext) -> dict[str, Any]:
    """The Chromium run, once per bench (both sections below read it)."""
    cached = ctx.shared.get("classify")
    if cached is None:
        # What our page picks here (web/env.js threadCount: min(4, cores)); the peer gets the same.
        threads = max(1, min(4, os.cpu_count() or 1))
        plain = "/bench/static/plain.html?" + urlencode({
            "runtime": ctx.runtime_base, "models": "/bench/models/",
            "model": ctx.reference_model, "threads": threads})
        cached = ctx.drive(SCRIPT, {
            "ours": f"{ctx.origin}/?backend=wasm&prefetch=0", "plain": f"{ctx.origin}{plain}",
            "texts": json.loads(TEXTS.read_text()), "repeats": ctx.repeats,
            "first": FIRST_TEXT})
        cached["threads"] = threads
        ctx.shared["classify"] = cached
    return cached


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def latency(ctx: BenchContext) -> dict[str, Any]:
    """Warm classification end to end: p50/p95 of ``edgeTriage.run`` vs ``plain.run``."""
    lat = _measure(ctx)["latency"]
    ours50, plain50 = _median(lat["ours"], "p50"), _median(lat["plain"], "p50")
    pairs = [
        Pair("classify p50", ours50, plain50, "ms", PLAIN, TARGET_LATENCY),
        Pair("classify p95", _median(lat["ours"], "p95"), _median(lat["plain"], "p95"), "ms",
             PLAIN, TARGET_LATENCY),
        Pair("classify p50 vs 50 ms", ours50, TARGET_ABSOLUTE_MS, "ms", "target", 1.0),
    ]
    profile = _profile(lat, ours50, plain50)
    ctx.log("  " + profile["line"])
    return {"pairs": [p.as_dict() for p in pairs], "threads": _measure(ctx)["threads"],
            "profile": profile, "raw": lat}


def _profile(lat: dict[str, Any], ours50: float, plain50: float) -> dict[str, Any]:
    """Where our p50 goes (each part's p50 over the calls of a repeat, median over repeats, so
    the parts add up only roughly): the encoder's call with the task head, timed in the worker,
    and the rest (the worker's Python before and after it, the messages between page and
    worker). Against the plain page's whole call, the first part says how much of a miss is the
    model file."""
    parts = {"encoder_and_head_ms": statistics.median(lat["ours_inference"]),
             "rest_ms": statistics.median(lat["ours_rest"])}
    inference = parts["encoder_and_head_ms"]
    line = (f"classify p50 profile: ours {ours50:.1f} ms ≈ encoder call and task head "
            f"{inference:.1f} ms ({inference / plain50:.2f}× the plain page's whole call, "
            f"{plain50:.1f} ms) + Python around it and page↔worker messages "
            f"{parts['rest_ms']:.1f} ms")
    return {**parts, "plain_call_ms": plain50, "line": line}


def start(ctx: BenchContext) -> dict[str, Any]:
    """Cold (fresh profile) and warm (second visit) start to the first result, medians over the
    repeats; bytes per visit. The repeat visit must download no runtime or model byte in any
    repeat."""
    s = _measure(ctx)["start"]
    ours, plain = s["ours"], s["plain"]
    pairs = [
        Pair("cold start", _median(ours, "cold_ms"), _median(plain, "cold_ms"), "ms", PLAIN,
             TARGET_COLD),
        Pair("warm start", _median(ours, "warm_ms"), _median(plain, "warm_ms"), "ms", PLAIN),
        Pair("first visit bytes", statistics.median(_mib(v["cold_bytes"]) for v in ours),
             statistics.median(_mib(v["cold_bytes"]) for v in plain), "MiB", PLAIN),
    ]
    repeat_runtime_model = max(v["warm_bytes"]["runtime"] + v["warm_bytes"]["model"] for v in ours)
    return {"pairs": [p.as_dict() for p in pairs], "raw": s,
            "repeat_visit_runtime_model_bytes": repeat_runtime_model,
            "repeat_visit_zero_bytes": repeat_runtime_model == 0}


def _mib(counts: dict[str, int]) -> float:
    return sum(counts.values()) / 2**20


SECTIONS = {"classify-latency": latency, "classify-start": start}
