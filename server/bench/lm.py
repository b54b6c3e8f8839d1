"""The language-model sections of ``edge-triage bench``: decode speed and time per extracted
record, our page vs plain transformers.js ``generate`` on our q8 file vs native onnxruntime vs
wllama (llama.cpp in Wasm) on the GGUF we build from, constrained vs unconstrained, and the page's
measured memory with both models.

``run(context) -> dict`` is what the bench's section registry calls; ``python -m server.bench.lm
--report OUT.json`` runs these sections alone. Not a test: timings depend on the machine, so
every comparison is a ratio of things measured in the same run (medians over repeats).

The wllama peer (server/bench/wllama.py) extracts the same records from the same prompts, greedy,
under llama.cpp's own JSON-schema grammar, at 1 and 2 threads; the best is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .wllama import measure as measure_wllama, prompt_of, records, source_gguf, stage

ROOT = Path(__file__).resolve().parents[2]
TASK = "telemetry-extract"
#: Targets of issue 11 (on the 2-core reference machine).
TARGETS = {"record_s_warm": 3.0, "constrained_vs_unconstrained": 0.90,
           "memory_bytes": 1_200_000_000, "decode_vs_wllama": 1.5}


def _texts(n: int) -> list[str]:
    return json.loads((ROOT / "tests" / "data" / "parity_texts.json").read_text())[:n]


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def bench_lm(build_dir: Path):
    """The language model the bench's page runs: the deployment's (EDGE_TRIAGE_BROWSER_LM, as
    the server chooses), built-in or imported; native onnxruntime and wllama (on the GGUF it was
    built from, ``wllama.source_gguf``) run the same model. Refused up front when the page
    would refuse it: its smallest variant alone over the page's memory budget."""
    from models.cpython.engines import lm_manifest
    from server.settings import Settings
    from server.site import lm_variants

    manifest = lm_manifest(build_dir)
    budget = Settings.from_env().memory_budget_bytes
    smallest = min((v["estimated_memory_bytes"] for v in lm_variants(manifest, build_dir / "models")),
                   default=manifest.estimated_memory_bytes)
    if budget and smallest > budget:
        raise SystemExit(f"{manifest.model_id} needs about {smallest:,} bytes in the page even in "
                         f"its smallest variant, over the page's budget of {budget:,}: the page "
                         "would refuse it. Set EDGE_TRIAGE_MEMORY_BUDGET_BYTES to bench it")
    return manifest


def native(build_dir: Path, lm, texts: list[str], repeats: int, tokens: int) -> dict[str, Any]:
    """Native onnxruntime (CPython) on ``lm`` (``bench_lm``'s) in its first variant, the one the
    page takes when it fits: lm-bench's decode speeds, and extraction per record."""
    from models.cpython.lm import OnnxTextGenerator
    from pyapp.engine import Engine
    from models.lm_benchmark import run_benchmark

    generator = OnnxTextGenerator.from_dir(build_dir / "models" / lm.model_id)
    decode = run_benchmark(generator, tokens=tokens, repeats=repeats)
    engine = Engine(generator)
    asyncio.run(engine.load([TASK]))
    asyncio.run(engine.run(TASK, texts[0]))  # warm-up: also prefills the task's fixed prefix
    per_record = []
    for _ in range(repeats):
        for text in texts:
            started = time.perf_counter()
            asyncio.run(engine.run(TASK, text))
            per_record.append(time.perf_counter() - started)
    return {"model_id": lm.model_id, "dtype": lm.dtype, "threads": generator.threads,
            "decode": decode,
            "record_s": {"median": _median(per_record), "max": round(max(per_record), 3)}}


@contextlib.contextmanager
def _origin(build_dir: Path, base_url: str | None) -> Iterator[str]:
    """``base_url`` (a running bench server), or this build served with the bench's routes."""
    if base_url:
        yield base_url.rstrip("/")
        return
    from server.browserrun import served

    from .runner import bench_app

    app, _ = bench_app(build_dir, build_dir / "bench" / "models")
    with served(app) as origin:
        yield origin


def _node(script: Path, job: dict[str, Any], *args: str) -> dict[str, Any]:
    proc = subprocess.run(["node", str(script), *args], input=json.dumps(job),
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def page(origin: str, texts: list[str], repeats: int, tokens: int) -> dict[str, Any]:
    """Our page in headless Chromium (server/bench/lm_page.mjs) at ``origin``."""
    url = origin.rstrip("/") + "/?backend=wasm&prefetch=0"
    raw = _node(ROOT / "server" / "bench" / "lm_page.mjs",
                {"texts": texts, "repeats": repeats, "tokens": tokens,
                 "prompt": prompt_of(texts[0])}, url)
    warm = raw["ours"]["warm"]
    first = warm[:len(texts)]  # greedy: every repeat writes the same records
    return {"status": raw["status"], "memory": raw["memory"],
            "ours": {"cold_record_s": round(raw["ours"]["cold"]["ms"] / 1000, 3),
                     "record_s": _median([w["ms"] / 1000 for w in warm]),
                     "first_token_s": _median([w["first_token_ms"] / 1000 for w in warm]),
                     "decode_tok_s": _median([w["decode_tok_s"] for w in warm]),
                     "new_tokens": _median([w["tokens"] for w in warm]),
                     "valid": sum(bool(w["valid"]) for w in warm), "records": len(warm),
                     "per_text": [{"record": w["record"], "text": w["text"], "tokens": w["tokens"]}
                                  for w in first]},
            "plain_transformers_js": {"decode_tok_s": _median(raw["plain"]["decode_tok_s"]),
                                      "prompt_tokens": raw["plain"]["prompt_tokens"]}}


def profile(origin: str, texts: list[str], repeats: int) -> dict[str, Any]:
    """Our page's decode under Chromium's sampling profiler (lm_profile.mjs): self time in the
    inference worker by part (ORT, Pyodide, web-xgrammar, pick ...), in ms per generated token."""
    raw = _node(ROOT / "server" / "bench" / "lm_profile.mjs", {"texts": texts, "repeats": repeats},
                origin + "/?backend=wasm&prefetch=0")
    n = max(raw["tokens"], 1)
    return {"tokens": raw["tokens"], "wall_ms_per_token": round(raw["wall_ms"] / n, 2),
            "ms_per_token": {k: round(v / n, 2) for k, v in
                             sorted(raw["categories"].items(), key=lambda kv: -kv[1])},
            "top_ms_per_token": [[f, round(ms / n, 2)] for f, ms in raw["top"]]}


def _same_file(nat: dict[str, Any] | None, web: dict[str, Any] | None) -> bool:
    """Whether native onnxruntime ran the variant the page chose: otherwise page/native pairs
    would compare two files of the model."""
    return bool(nat and web) and web["memory"]["lm_dtype"] == nat["dtype"]


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Pair by pair, from the medians (a ratio > 1 means the first of the pair is faster)."""
    out: dict[str, Any] = {}
    nat, web = report.get("native"), report.get("page")
    if nat:
        out["native constrained / unconstrained decode"] = nat["decode"]["constrained_vs_unconstrained"]
    if web:
        ours = web["ours"]["decode_tok_s"]
        plain = web["plain_transformers_js"]["decode_tok_s"]
        out["page / plain transformers.js decode"] = round(ours / plain, 3) if ours and plain else None
        out["page record s / 3 s target"] = round(web["ours"]["record_s"] / TARGETS["record_s_warm"], 3)
        measured = web["memory"]["measured_bytes"]
        if measured:
            out["page memory / 1.2 GB budget"] = round(measured / TARGETS["memory_bytes"], 3)
            out["manifest estimate / measured memory"] = round(
                web["memory"]["estimated_bytes"] / measured, 3)
    if _same_file(nat, web):
        native_decode = nat["decode"]["constrained"]["decode_tok_per_s"]
        out["page / native onnxruntime decode (constrained)"] = round(
            web["ours"]["decode_tok_s"] / native_decode, 3)
        out["page / native record time"] = round(web["ours"]["record_s"] / nat["record_s"]["median"], 3)
    peer = report.get("wllama")
    if web and peer and "runs" in peer:
        best = peer["runs"][peer["best"]]
        if web["ours"]["decode_tok_s"] and best["decode_tok_s"]:
            out["page / wllama decode (grammar, best threads)"] = round(
                web["ours"]["decode_tok_s"] / best["decode_tok_s"], 3)
        if web["ours"]["decode_tok_s"] and best["free_decode_tok_s"]:
            out["page / wllama decode (unconstrained)"] = round(
                web["ours"]["decode_tok_s"] / best["free_decode_tok_s"], 3)
        out["page / wllama record time"] = round(web["ours"]["record_s"] / best["record_s"], 3)
    return out


def _wllama(build_dir: Path, lm, origin: str, texts: list[str], web: dict[str, Any],
            repeats: int, budget_s: float) -> dict[str, Any]:
    try:
        gguf = source_gguf(lm)
    except LookupError as e:  # the rest of the section still measures the model
        print(f"wllama skipped: {e}", file=sys.stderr)
        return {"skipped": str(e)}
    stage(build_dir, gguf)
    per_text = web["ours"]["per_text"]
    recs = records(texts, [t["record"] for t in per_text], [t["tokens"] for t in per_text])
    out = measure_wllama(lambda script, job: _node(script, {**job, "origin": origin}),
                         recs, repeats, budget_s)
    out["gguf"] = {"file": gguf.name, "bytes": gguf.stat().st_size}
    # Greedy: how often the records agree (the same codes where our q8 file stores the GGUF's,
    # as for the built-in model; an imported K-quant GGUF is re-quantised to Q8_0, so less).
    ours = [json.loads(t["text"]) if t["text"] else None for t in per_text]
    for run in out["runs"].values():
        theirs = []
        for text in run.pop("texts"):
            try:
                theirs.append(json.loads(text))
            except ValueError:
                theirs.append(None)
        run["same_record_as_page"] = sum(a is not None and a == b for a, b in zip(ours, theirs))
        run["records_compared"] = len(theirs)
    return out


def run(context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sections; ``context`` may give build_dir, base_url (a running server), repeats,
    records (how many telemetry texts), tokens (decode length) and sections."""
    context = context or {}
    build_dir = Path(context.get("build_dir", ROOT / "build"))
    repeats = int(context.get("repeats", 3))
    texts = _texts(int(context.get("records", 5)))
    tokens = int(context.get("tokens", 64))
    sections = context.get("sections", ("native", "page", "wllama"))
    lm = bench_lm(build_dir)  # before anything runs: the page and its peers on the same model
    report: dict[str, Any] = {"model": {"model_id": lm.model_id, "imported": lm.imported,
                                        "source": lm.source},
                              "records": len(texts), "repeats": repeats, "tokens": tokens,
                              "targets": TARGETS}
    if "native" in sections:
        report["native"] = native(build_dir, lm, texts, repeats, tokens)
    if "page" in sections:
        with _origin(build_dir, context.get("base_url")) as origin:
            report["page"] = page(origin, texts, repeats, tokens)
            if "wllama" in sections:
                report["wllama"] = _wllama(build_dir, lm, origin, texts, report["page"], repeats,
                                           float(context.get("wllama_budget_s", 240)))
    if "profile" in sections:  # on request only: the profiler slows what it measures
        with _origin(build_dir, context.get("base_url")) as origin:
            report["profile"] = profile(origin, texts, repeats)
    report["ratios"] = ratios(report)
    return report


def section(ctx) -> dict[str, Any]:
    """The bench registry's entry (server/bench/__init__.py): ``run`` against the bench's own
    server, with its measurements as ``Pair``s so they print and plot beside the others."""
    from .runner import Pair

    report = run({"build_dir": ctx.build_dir, "base_url": ctx.origin, "repeats": ctx.repeats})
    nat, web, pairs = report.get("native"), report.get("page"), []
    if nat:
        dec = nat["decode"]
        pairs.append(Pair("native decode, constrained", dec["constrained"]["decode_tok_per_s"],
                          dec["unconstrained"]["decode_tok_per_s"], "tok/s", "unconstrained",
                          TARGETS["constrained_vs_unconstrained"], higher_is_better=True))
    if web:
        ours = web["ours"]
        if ours["decode_tok_s"] and web["plain_transformers_js"]["decode_tok_s"]:
            pairs.append(Pair("page decode", ours["decode_tok_s"],
                              web["plain_transformers_js"]["decode_tok_s"], "tok/s",
                              "plain transformers.js generate", higher_is_better=True))
        if _same_file(nat, web) and ours["decode_tok_s"]:
            pairs.append(Pair("page decode", ours["decode_tok_s"],
                              nat["decode"]["constrained"]["decode_tok_per_s"], "tok/s",
                              "native onnxruntime", higher_is_better=True))
        pairs.append(Pair("extraction, time per record (warm)", ours["record_s"],
                          TARGETS["record_s_warm"], "s", "the 3 s target", 1.0))
        peer = report.get("wllama")
        if peer and "runs" in peer:
            best = peer["runs"][peer["best"]]
            name = (f"wllama {peer['version']} on {peer['gguf']['file']}, {best['threads']} "
                    "thread(s), its JSON grammar")
            if ours["decode_tok_s"] and best["decode_tok_s"]:
                pairs.append(Pair("page decode", ours["decode_tok_s"], best["decode_tok_s"],
                                  "tok/s", name, TARGETS["decode_vs_wllama"],
                                  higher_is_better=True))
            if ours["decode_tok_s"] and best["free_decode_tok_s"]:
                pairs.append(Pair("page decode", ours["decode_tok_s"], best["free_decode_tok_s"],
                                  "tok/s", f"wllama {best['threads']} thread(s), unconstrained",
                                  TARGETS["decode_vs_wllama"], higher_is_better=True))
            pairs.append(Pair("extraction, time per record (warm)", ours["record_s"],
                              best["record_s"], "s", name))
        if web["memory"]["measured_bytes"]:
            pairs.append(Pair("page memory with both models", web["memory"]["measured_bytes"],
                              TARGETS["memory_bytes"], "bytes", "the 1.2 GB target", 1.0))
    if report["model"]["imported"]:  # not the built-in model: every line says which
        for p in pairs:
            p.name += f" [{report['model']['model_id']}]"
    return {**report, "pairs": [p.as_dict() for p in pairs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bench.lm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--base-url", help="a running server (default: serve this build)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--records", type=int, default=5, help="telemetry texts per repeat")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per decode-speed run")
    parser.add_argument("--sections", default="native,page,wllama",
                        help="wllama needs page (it extracts what the page extracted); profile "
                             "(not by default): where the page's decode time goes")
    parser.add_argument("--wllama-budget-s", type=float, default=240,
                        help="seconds of wllama records per thread count (at least one record)")
    args = parser.parse_args(argv)
    report = run({"build_dir": args.build_dir, "base_url": args.base_url, "repeats": args.repeats,
                  "records": args.records, "tokens": args.tokens,
                  "sections": args.sections.split(","),
                  "wllama_budget_s": args.wllama_budget_s})
    for name, value in report["ratios"].items():
        print(f"{name:50s} {value}")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
