"""Does escalating pay? ``edge-triage escalation-bench``: the browser's side (what the page runs,
here under onnxruntime: the same numbers) answers held-out dev records; the ones it escalates are
answered again exactly as the server's ``engine`` handler would (``EscalationEngines.open``: the
escalation model); both are scored on those escalated records only (per-field exact match on the
labelled fields, schema-valid rate) and timed per case, side by side in one run.

Tasks with labelled dev data (``DEV_DATA``), each scored on the held-out part only
(``models.evaluation.select_records``):

- loghub-fields: ``loghub/dev.jsonl``, its held-out 30 % (system, level, component);
- telemetry-extract: the lines of ``loghub/dev.jsonl`` whose template is labelled by hand
  (``pyapp/tasks/telemetry_labels.py``) and held out of the heads' training (split by template);
  scored on category, severity and component_kind (the summary and component have no label).
  The browser's side is the page's: encoder heads fill those three fields and SmolLM2 the rest.
  Since 2026-12-03 the handler's engine takes them from the same heads (``EscalationEngines``:
  the escalation model writing them itself measured far worse on these cases), so they come out
  as the browser's and the escalation model writes only component and action; the bench shows
  that, and what each side's generated fields and time are.

CLINC's out-of-scope queries are escalated by design (there is no field to get right), so they
are not scored here.

Measured: ``reports/escalation.md`` (both tasks, with the commands).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from models import metrics
from models.evaluation import file_sha256, gold_label, scored_fields, select_records, spread

#: Tasks with labelled dev data: task → file under the data root.
DEV_DATA = {"loghub-fields": "loghub/dev.jsonl", "telemetry-extract": "loghub/dev.jsonl"}


def _valid_record(task, result: dict) -> dict | None:
    record = result["output"].get("record") if result.get("valid") else None
    if record is None:
        return None
    return task.record_model.model_validate(record).model_dump(mode="json")


def _run_all(engine, task_name: str, texts: list[str], log, label: str) -> list[dict]:
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


def _score(task, gold: list[dict], results: list[dict], fields: list[str]) -> dict[str, Any]:
    pred = [_valid_record(task, r) for r in results]
    wall = [r["wall_s"] for r in results]
    return {"exact_match": metrics.fields_exact_match(gold, pred, fields),
            "schema_valid": metrics.schema_valid_rate([p is not None for p in pred]),
            "seconds_per_case": {"mean": sum(wall) / len(wall) if wall else float("nan"),
                                 "p50": metrics.percentile(wall, 50),
                                 "p95": metrics.percentile(wall, 95),
                                 "max": max(wall, default=float("nan"))},
            # Which part filled each field (heads or language model), as the engine reports it.
            "sources": results[0]["output"].get("sources", {}) if results else {},
            "backend": results[0]["backend"] if results else None}


def _model_id(backend) -> str | None:
    manifest = getattr(backend, "manifest", None)
    return manifest.model_id if manifest else None


def _wait_for_model(settings, wait_s: float):
    from .escalation_engine import choose_server_model

    chosen = choose_server_model(settings)
    deadline = time.monotonic() + wait_s
    while chosen is None and time.monotonic() < deadline:  # an import running beside the bench
        time.sleep(10)
        chosen = choose_server_model(settings)
    if chosen is None:
        raise SystemExit("no server model imported: run `make escalation-engine`")
    return chosen


def run_escalation_bench(build_dir: Path, task_name: str = "loghub-fields", limit: int = 60,
                         model: str = "", data_root: Path | None = None,
                         log=print, wait_s: float = 0.0,
                         max_escalated: int | None = None) -> dict[str, Any]:
    """``limit`` held-out records (spread through them) run on the browser's side; of those it
    escalates, at most ``max_escalated`` (spread) run on the escalation model and are scored."""
    from models.cpython.engines import open_engine
    from models.trainingdata import data_root as default_root, read_jsonl

    from .escalation_engine import EscalationEngines
    from .settings import Settings

    if task_name not in DEV_DATA:
        raise SystemExit(f"no labelled dev data for {task_name!r}; scored tasks: "
                         f"{', '.join(DEV_DATA)}")
    root = data_root or default_root()
    path = root / DEV_DATA[task_name]
    records = read_jsonl(path)
    # What the page runs: for telemetry-extract the encoder heads and the language model together.
    small = open_engine(build_dir, [task_name])
    task = small.task(task_name)
    selected, note = select_records(task, records, file_sha256(path))
    selected = spread(selected, limit)
    log(f"{task_name}: {note}; {len(selected)} spread through it")
    first = _run_all(small, task_name, [r["text"] for r in selected], log, "browser side")
    escalated = [i for i, r in enumerate(first) if r["route"] != "local"]
    log(f"{len(escalated)} of {len(selected)} escalated by the browser's side")
    all_escalated = len(escalated)
    escalated = spread(escalated, max_escalated)
    # The server's settings (threads, timeout) as `serve` reads them, on this build and model.
    settings = replace(Settings.from_env(), build_dir=build_dir, escalation_model=model)
    chosen = _wait_for_model(settings, wait_s)
    # The handler's own engine for this task (server.handlers.EngineHandler): same model, same
    # task loading (with the task's heads), so the bench measures what an escalated case gets.
    big = EscalationEngines(replace(settings, escalation_model=chosen.model_id)).open(task_name)
    second = _run_all(big, task_name, [selected[i]["text"] for i in escalated], log,
                      chosen.model_id)
    gold = [gold_label(task, selected[i]) for i in escalated]
    # The labelled fields (of every selected line: also when nothing was escalated).
    fields = scored_fields(task, [gold_label(task, r) for r in selected])
    small_escalated = [first[i] for i in escalated]
    browser = _score(task, gold, small_escalated, fields)
    server = _score(task, gold, second, fields)
    head_names = list(getattr(task, "field_heads", {}).values())
    return {
        "task": task_name, "data": DEV_DATA[task_name], "selection": note,
        "records": len(selected), "escalated_by_browser": all_escalated,
        "escalated": len(escalated), "fields": fields,
        "browser_model": {"model": _model_id(small.backend_for(task_name)),
                          "heads_encoder": (_model_id(small.backend_for(head_names[0]))
                                            if head_names else None),
                          "local_share": 1 - all_escalated / len(selected) if selected else 0,
                          **browser},
        "escalation_model": {"model": chosen.model_id,
                             "measured_memory_bytes": chosen.estimated_memory_bytes,
                             "over_handler_timeout": sum(
                                 r["wall_s"] > settings.escalation_timeout_s > 0 for r in second),
                             **server},
        "time_ratio": (server["seconds_per_case"]["mean"] / browser["seconds_per_case"]["mean"]
                       if escalated else None),
        "rows": [{"text": selected[i]["text"], "gold": g, "browser": _valid_record(task, a),
                  "escalation": _valid_record(task, b), "reasons": a["reasons"]}
                 for i, g, a, b in zip(escalated, gold, small_escalated, second, strict=True)],
    }
