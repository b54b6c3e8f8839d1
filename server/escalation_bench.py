"""Does escalating pay? ``edge-triage escalation-bench``: the browser's model (the ONNX model the
page runs, here under onnxruntime: the same numbers) answers held-out dev records; the ones it
escalates are answered again by the escalation model; both are scored on those escalated records
only (per-field exact match, schema-valid rate) and timed per case, side by side in one run.

Only tasks with labelled dev data can be scored: loghub-fields (``loghub/dev.jsonl``, its
held-out 30 %). telemetry-extract has no labelled dev set, and CLINC's out-of-scope queries are
escalated by design (there is no field to get right), so neither is scored here.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from models import metrics
from pyapp.engine import Engine
from models.evaluation import file_sha256, gold_label, select_records, spread

#: Tasks with labelled dev data: task → file under the data root.
DEV_DATA = {"loghub-fields": "loghub/dev.jsonl"}


def _valid_record(task, result: dict) -> dict | None:
    record = result["output"].get("record") if result.get("valid") else None
    if record is None:
        return None
    return task.record_model.model_validate(record).model_dump(mode="json")


def _run_all(engine: Engine, task_name: str, texts: list[str], log, label: str) -> list[dict]:
    out = []

    async def go():
        for i, text in enumerate(texts):
            started = time.perf_counter()
            result = await engine.run(task_name, text)
            result["wall_s"] = time.perf_counter() - started
            out.append(result)
            log(f"  {label} {i + 1}/{len(texts)}: {result['route']} {result['wall_s']:.1f}s "
                f"{result['output'].get('text', '')[:80]}")

    asyncio.run(go())
    return out


def _score(task, gold: list[dict], results: list[dict]) -> dict[str, Any]:
    fields = list(task.record_model.model_fields)
    pred = [_valid_record(task, r) for r in results]
    wall = [r["wall_s"] for r in results]
    return {"exact_match": metrics.fields_exact_match(gold, pred, fields),
            "schema_valid": metrics.schema_valid_rate([p is not None for p in pred]),
            "seconds_per_case": {"mean": sum(wall) / len(wall) if wall else float("nan"),
                                 "p50": metrics.percentile(wall, 50),
                                 "p95": metrics.percentile(wall, 95)},
            "backend": results[0]["backend"] if results else None}


def run_escalation_bench(build_dir: Path, task_name: str = "loghub-fields", limit: int = 60,
                         model: str = "", data_root: Path | None = None,
                         log=print, wait_s: float = 0.0) -> dict[str, Any]:
    from models.trainingdata import data_root as default_root
    from models.cpython.gguf import GgufTextGenerator
    from models.cpython.engines import open_generator

    from .escalation_engine import choose_server_model
    from .settings import Settings

    if task_name not in DEV_DATA:
        raise SystemExit(f"no labelled dev data for {task_name!r}; scored tasks: "
                         f"{', '.join(DEV_DATA)}")
    root = data_root or default_root()
    path = root / DEV_DATA[task_name]
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    small = Engine(open_generator(build_dir))
    asyncio.run(small.load([task_name]))
    task = small.task(task_name)
    selected, note = select_records(task, records, file_sha256(path))
    selected = spread(selected, limit)
    log(f"{task_name}: {note}; {len(selected)} spread through it")
    first = _run_all(small, task_name, [r["text"] for r in selected], log, "browser model")
    escalated = [i for i, r in enumerate(first) if r["route"] != "local"]
    log(f"{len(escalated)} of {len(selected)} escalated by the browser's model")
    chosen = choose_server_model(Settings(build_dir=build_dir, escalation_model=model))
    deadline = time.monotonic() + wait_s
    while chosen is None and time.monotonic() < deadline:  # an import running beside the bench
        time.sleep(10)
        chosen = choose_server_model(Settings(build_dir=build_dir, escalation_model=model))
    if chosen is None:
        raise SystemExit("no server model imported: run `make escalation-engine`")
    if chosen.runtime == "onnxruntime":  # a language model imported for the browser
        big = Engine(open_generator(build_dir, model=chosen.model_id))
    else:
        big = Engine(GgufTextGenerator.from_dir(build_dir / "server-models" / chosen.model_id))
    asyncio.run(big.load([task_name]))
    texts = [selected[i]["text"] for i in escalated]
    second = _run_all(big, task_name, texts, log, chosen.model_id)
    gold = [gold_label(task, selected[i]) for i in escalated]
    small_escalated = [first[i] for i in escalated]
    browser = _score(task, gold, small_escalated)
    server = _score(task, gold, second)
    return {
        "task": task_name, "data": DEV_DATA[task_name], "selection": note,
        "records": len(selected), "escalated": len(escalated),
        "browser_model": {"model": small.backend.manifest.model_id,
                          "local_share": 1 - len(escalated) / len(selected) if selected else 0,
                          **browser},
        "escalation_model": {"model": chosen.model_id,
                             "measured_memory_bytes": chosen.estimated_memory_bytes, **server},
        "time_ratio": (server["seconds_per_case"]["mean"] / browser["seconds_per_case"]["mean"]
                       if escalated else None),
        "rows": [{"gold": g, "browser": _valid_record(task, a),
                  "escalation": _valid_record(task, b), "reasons": a["reasons"]}
                 for g, a, b in zip(gold, small_escalated, second, strict=True)],
    }
