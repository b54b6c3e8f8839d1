"""Scoring a task on a labelled JSON-lines file, in either runtime, and writing the report.

The scoring is runtime-agnostic: ``evaluate`` takes a *runner*, any callable that runs a list of
texts and returns one engine result dict per text (the shape ``Engine.run`` returns). Under
CPython that is ``cpython_runner(engine)``; for the browser the CLI registers
``server.browserrun.BrowserRunner`` (Chromium driving the page's ``edgeTriage.run``) with
``set_browser_runner``. CPython-only: never shipped to the browser.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import metrics

#: texts → engine results (``{"output": {"label", ...}, "confidence", "route", "timings_ms"}``).
Runner = Callable[[list[str]], list[dict]]

#: task name → runner factory for the browser runtime; the CLI registers server.browserrun's
#: (this layer cannot import the server).
_browser_runner_factory: Callable[[str], Runner] | None = None


class RuntimeUnavailableError(RuntimeError):
    pass


def set_browser_runner(factory: Callable[[str], Runner] | None) -> None:
    """Register how to run texts in the browser: ``factory(task_name)`` returns a ``Runner``."""
    global _browser_runner_factory
    _browser_runner_factory = factory


def browser_runner(task_name: str) -> Runner:
    if _browser_runner_factory is None:
        raise RuntimeUnavailableError(
            "no browser runner is registered (models.evaluation.set_browser_runner; "
            "`edge-triage eval --runtime browser` registers server.browserrun's)"
        )
    return _browser_runner_factory(task_name)


def cpython_runner(engine, task_name: str) -> Runner:
    """Run texts one at a time through a loaded CPython ``Engine`` (latency per text)."""

    def run(texts: list[str]) -> list[dict]:
        async def go() -> list[dict]:
            return [await engine.run(task_name, text) for text in texts]

        return asyncio.run(go())

    return run


def gold_label(task, record: dict) -> str | None:
    """The label a record gives for ``task``: its training recipe's, else ``record["label"]``."""
    training = getattr(task, "training", None)
    if training is not None:
        return training.label_of(record)
    return record.get("label")


def select_records(task, records: list[dict], data_sha256: str) -> tuple[list[dict], str]:
    """Labelled records to score, and a note on what was left out.

    When the file is the one the task's head was trained on, only its held-out part is scored
    (the split is the task's own ``TrainingData.split_of``).
    """
    labelled = [r for r in records if gold_label(task, r) is not None]
    note = f"{len(labelled):,} of {len(records):,} records carry a label for this task"
    training = getattr(task, "training_info", None) or {}
    if training.get("sha256") == data_sha256:
        labelled = [r for r in labelled if task.training.split_of_record(r) == "heldout"]
        note += (f"; this is the training file, so only its held-out part is scored "
                 f"({training.get('heldout_percent')} % by hash): {len(labelled):,} records")
    return labelled, note


def spread(records: Sequence[dict], limit: int | None) -> list[dict]:
    """At most ``limit`` records spaced evenly through the file (files are often sorted by label)."""
    if limit is None or limit >= len(records):
        return list(records)
    return [records[i * len(records) // limit] for i in range(limit)]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evaluate(task, records: list[dict], runner: Runner) -> dict[str, Any]:
    """Run ``records`` through ``runner`` and score them; returns a JSON-ready report."""
    if getattr(task, "kind", None) == "extraction":
        return evaluate_extraction(task, records, runner)
    texts = [r["text"] for r in records]
    gold = [gold_label(task, r) for r in records]
    results = runner(texts)
    if len(results) != len(texts):
        raise ValueError(f"runner returned {len(results)} results for {len(texts)} texts")
    pred = [res["output"]["label"] for res in results]
    confidence = [float(res["confidence"]) for res in results]
    local = [res["route"] == "local" for res in results]
    latency = [float(res["timings_ms"]["total"]) for res in results]
    correct = [g == p for g, p in zip(gold, pred, strict=True)]
    oos = frozenset(getattr(task, "escalate_labels", frozenset()))
    in_scope = [i for i, g in enumerate(gold) if g not in oos]
    report = {
        "task": task.name,
        "threshold": task.threshold,
        "count": len(records),
        "out_of_scope_count": len(records) - len(in_scope),
        "accuracy": metrics.accuracy(gold, pred),
        "in_scope_accuracy": metrics.accuracy([gold[i] for i in in_scope], [pred[i] for i in in_scope]),
        "macro_f1": metrics.macro_f1(gold, pred),
        "routing": metrics.routing_metrics(gold, pred, local, oos),
        "ece": metrics.expected_calibration_error(confidence, correct),
        "latency_ms": {"p50": metrics.percentile(latency, 50), "p95": metrics.percentile(latency, 95)},
        "reliability": metrics.reliability_bins(confidence, correct),
        "confusions": metrics.confusions(gold, pred, top=15),
        "backend": results[0].get("backend") if results else None,
        "rows": [
            {"gold": g, "pred": p, "confidence": c, "route": res["route"]}
            for g, p, c, res in zip(gold, pred, confidence, results, strict=True)
        ],
    }
    return report


def evaluate_extraction(task, records: list[dict], runner: Runner) -> dict[str, Any]:
    """Score an extraction task: schema-valid rate, per-field exact match (an invalid output
    counts as wrong in every field), escalation, latency. Gold records come from ``gold_label``
    (a dict of fields). Each valid record is validated against the task's schema again here, so
    a runner that returned something malformed as ``valid`` is caught."""
    from collections import Counter

    texts = [r["text"] for r in records]
    gold = [gold_label(task, r) for r in records]
    results = runner(texts)
    if len(results) != len(texts):
        raise ValueError(f"runner returned {len(results)} results for {len(texts)} texts")
    fields = scored_fields(task, gold)
    pred: list[dict | None] = []
    for res in results:
        record = res["output"].get("record") if res.get("valid") else None
        if record is not None:
            try:
                record = task.record_model.model_validate(record).model_dump(mode="json")
            except ValueError:
                record = None
        pred.append(record)
    valid = [p is not None for p in pred]
    latency = [float(res["timings_ms"]["total"]) for res in results]
    mistakes = {f: metrics.confusions([str(g.get(f)) for g in gold],
                                      ["<invalid>" if p is None else str(p.get(f)) for p in pred],
                                      top=10) for f in fields}
    return {
        "task": task.name,
        "kind": "extraction",
        "threshold": task.threshold,
        "count": len(records),
        "fields": fields,
        "schema_valid": metrics.schema_valid_rate(valid),
        "exact_match": metrics.fields_exact_match(gold, pred, fields),
        "escalated": (sum(res["route"] != "local" for res in results) / len(results)
                      if results else float("nan")),
        "stop_reasons": dict(Counter(res["output"].get("stop_reason") for res in results)),
        "latency_ms": {"p50": metrics.percentile(latency, 50), "p95": metrics.percentile(latency, 95)},
        "mistakes": mistakes,
        **extraction_routing(gold, pred, results, fields),
        "backend": results[0].get("backend") if results else None,
        "rows": [{"gold": g, "pred": p, "valid": res.get("valid"), "route": res["route"],
                  "confidence": res.get("confidence"),
                  "stop_reason": res["output"].get("stop_reason")}
                 for g, p, res in zip(gold, pred, results, strict=True)],
    }


def extraction_routing(gold: list[dict], pred: list[dict | None], results: list[dict],
                       fields: list[str]) -> dict[str, Any]:
    """Answered locally, how right the local answers are (every scored field exact), how often
    the record was closed early, and whether summaries are summaries (length, repeats)."""
    n = len(results) or 1
    local = [res["route"] == "local" for res in results]
    exact = [p is not None and all(p.get(f) == g.get(f) for f in fields)
             for g, p in zip(gold, pred, strict=True)]
    n_local = sum(local)
    summaries = [p["summary"] for p in pred if p is not None and isinstance(p.get("summary"), str)]
    out: dict[str, Any] = {
        "answered_locally": n_local / n,
        "local_all_exact": (sum(e for e, lc in zip(exact, local, strict=True) if lc) / n_local
                            if n_local else float("nan")),
        "closed_early": sum(any("closed early" in r for r in res.get("reasons", ()))
                            for res in results) / n,
    }
    out["not_closed_early"] = 1.0 - out["closed_early"]
    if summaries:
        out["summaries"] = {
            "count": len(summaries),
            "over_160_chars": sum(len(s) > 160 for s in summaries) / len(summaries),
            "repeated_phrase": sum(metrics.repeats_phrase(s) for s in summaries) / len(summaries),
            "mean_chars": sum(map(len, summaries)) / len(summaries),
        }
    return out


def scored_fields(task, gold: list[dict]) -> list[str]:
    """The record fields the gold records label (telemetry labels have no summary to compare)."""
    labelled = set().union(*(g.keys() for g in gold)) if gold else set()
    return [f for f in task.record_model.model_fields if f in labelled]


def summary_lines(report: dict) -> list[str]:
    if report.get("kind") == "extraction":
        em = report["exact_match"]
        return [
            f"{report['task']}: {report['count']:,} records",
            f"  schema-valid {report['schema_valid']:.4f}  exact match: "
            + "  ".join(f"{f} {em[f]:.4f}" for f in report["fields"]) + f"  all fields {em['all']:.4f}",
            f"  escalated {report['escalated']:.4f}  stop reasons {report['stop_reasons']}",
            f"  answered locally {report['answered_locally']:.4f}, all fields exact in "
            f"{report['local_all_exact']:.4f} of local answers; closed early "
            f"{report['closed_early']:.4f}"
            + (f"; summaries: repeated phrase {report['summaries']['repeated_phrase']:.4f}, over "
               f"160 chars {report['summaries']['over_160_chars']:.4f}"
               if report.get("summaries") else ""),
            f"  latency p50 {report['latency_ms']['p50']:.1f} ms, p95 {report['latency_ms']['p95']:.1f} ms",
        ]
    r = report["routing"]
    return [
        f"{report['task']}: {report['count']:,} records ({report['out_of_scope_count']} out of scope)",
        f"  accuracy {report['accuracy']:.4f}  in-scope {report['in_scope_accuracy']:.4f}  "
        f"macro-F1 {report['macro_f1']:.4f}  ECE {report['ece']:.4f}",
        f"  threshold {report['threshold']:.2f}: answered {r['answered']:.4f} of in-scope, "
        f"{r['local_accuracy']:.4f} of local answers correct, "
        f"out-of-scope escalated {r['oos_escalated']:.4f}",
        f"  latency p50 {report['latency_ms']['p50']:.1f} ms, p95 {report['latency_ms']['p95']:.1f} ms",
    ]


# --- the markdown report (CPython only: numpy and matplotlib are imported when it runs) ---

#: The packs `edge-triage report` scores, each with its evaluation file under the data root.
REPORT_DATA = {
    "clinc150-intent": "clinc150/dev.jsonl",
    "loghub-system": "loghub/dev.jsonl",
    "loghub-anomaly": "loghub/dev.jsonl",
}

#: Extraction packs `edge-triage report` scores on the language model: (file, --limit). The limit
#: keeps `make eval` short (about 3 s a line on two CPU cores); records are spread through the
#: held-out part.
EXTRACTION_REPORT = {
    # 120 lines each (~3 min a task here): at 40, one line is 2.5 points and the two closed-early
    # and severity rows moved across their targets between runs of the same heads.
    "loghub-fields": ("loghub/dev.jsonl", 120),
    # Lines of the held-out templates of the hand-labelled Loghub set (tasks/telemetry_labels.py).
    "telemetry-extract": ("loghub/dev.jsonl", 120),
}

#: Targets on dev: (report path, minimum) per task.
TARGETS = {
    "clinc150-intent": [
        ("in-scope top-1 accuracy", ("in_scope_accuracy",), 0.96),
        ("in-scope answered locally", ("routing", "answered"), 0.90),
        ("local answers correct", ("routing", "local_accuracy"), 0.985),
        ("out-of-scope escalated", ("routing", "oos_escalated"), 0.95),
    ],
    "loghub-system": [("accuracy", ("accuracy",), 0.99)],
    "loghub-fields": [
        ("schema-valid outputs", ("schema_valid",), 1.0),
        ("level exact match", ("exact_match", "level"), 0.95),
        ("component exact match", ("exact_match", "component"), 0.85),
        ("answered locally", ("answered_locally",), 0.80),
        ("all fields exact, of local answers", ("local_all_exact",), 0.97),
    ],
    "telemetry-extract": [
        ("schema-valid outputs", ("schema_valid",), 1.0),
        ("category exact match", ("exact_match", "category"), 0.95),
        ("severity exact match", ("exact_match", "severity"), 0.85),
        ("answered locally", ("answered_locally",), 0.70),
        ("closed early at most 5 % (1 − rate)", ("not_closed_early",), 0.95),
    ],
}


#: Why a target can be missed, printed under the targets table when it is.
WHY_MISSED = {
    ("clinc150-intent", "in-scope top-1 accuracy"): (
        "the encoder (all-MiniLM-L6-v2, frozen, 8-bit) is not fine-tuned; a linear head on its "
        "mean-pooled embeddings reaches ~97 % on held-out train and a little less on dev. "
        "Fine-tuning the encoder (BERT-base: 96.2 % in the paper) would be needed to go higher."),
    ("clinc150-intent", "local answers correct"): (
        "both routing thresholds are fitted on the held-out fifth of train, where the head is "
        "right more often (~97 % top-1) than on dev (~96 %); the precision the fit secures there "
        "(with a 95 % Wilson lower bound) does not fully carry over to dev's harder queries. "
        "A stricter bound would trade answered for precision along the same curve; a better "
        "encoder (fine-tuned) would move the curve."),
    ("clinc150-intent", "in-scope answered locally"): (
        "the thresholds are chosen (on held-out train) to keep ≥ 98.5 % of local answers correct "
        "and escalate ≥ 95 % of out-of-scope queries; coverage and precision trade against each "
        "other along the reliability curve."),
}


_TELEMETRY_WHY = (
    "dev is lines of templates no head saw (split by template), and a few large templates "
    "dominate it: Thunderbird `data_thread() got not answer …` alone is 445 of 5,010 dev lines "
    "(labelled network, predicted software), 45 % of the heads' category mistakes on all dev "
    "lines; six Android power-manager templates (227 lines, labelled power, called software) are "
    "23 %. The heads are linear on an encoder fine-tuned on ~480 training templates and 56 field "
    "reports. Labelling every template (526 → 864, so 364 → 601 training templates) did not "
    "move category: on the same 4,909 dev lines 0.806 → 0.804 per line (per template 0.820 → "
    "0.805), while severity rose 0.906 → 0.938; on all 5,010 dev lines now category 0.805 (per "
    "template 0.826) and severity 0.937 (0.887). Most category mistakes are lines worded as "
    "software (a daemon, a lock, a callback) about the subsystem the label names, which the line "
    "alone does not say.")
WHY_MISSED.update({
    ("telemetry-extract", "category exact match"): _TELEMETRY_WHY,
    ("telemetry-extract", "severity exact match"): _TELEMETRY_WHY,
    ("telemetry-extract", "answered locally"): (
        "the threshold keeps ≥ 90 % of local answers with every head field right on the template "
        "fold neither the encoder nor the heads saw (RECORD_PRECISION); only ~0.66 of those rows "
        "have all three right, so it answers 0.42 of them. On dev it holds its precision "
        "(heads alone, all 5,010 lines: answered 0.381, all three right in 0.907 of them); "
        "answering 0.70 would mean answering wrong: on the frozen encoder the same rule answered "
        "0.632 of dev lines with 0.662 right."),
    ("loghub-fields", "answered locally"): (
        "the threshold is fitted on out-of-fold confidences of 160 training lines "
        "(models/extractcal.py) to keep ≥ 97 % of local answers all right; on those lines it "
        "answered 0.81, so a dev slice a little harder than the training lines answers less. "
        "Without the build's calibration artifact (another language model, no data) the task "
        "routes at 0.85 on the uncalibrated product of choices and answers almost nothing."),
    ("loghub-fields", "all fields exact, of local answers"): (
        "the threshold was fitted for ≥ 97 % on 160 training lines (7 of them wrong); 40 dev "
        "lines leave one or two local mistakes between meeting and missing it."),
})


def _get(report: dict, path: tuple[str, ...]) -> float:
    for part in path:
        report = report[part]
    return report  # type: ignore[return-value]


def write_report(engine, out: Path, data_root: Path | None = None,
                 extraction_engine=None) -> dict[str, dict]:
    """Evaluate every pack in ``REPORT_DATA`` on its dev data, and every pack in
    ``EXTRACTION_REPORT`` on a spread of its held-out lines with ``extraction_engine`` (opened
    on the built language model beside the encoder's build when not given); write ``out``
    (markdown) and PNGs beside it. Returns the per-task reports."""
    from models.trainingdata import compare_scope_methods, compare_with_prototypes
    from models.trainingdata import data_root as default_root, read_jsonl

    root = data_root or default_root()
    out.parent.mkdir(parents=True, exist_ok=True)
    reports: dict[str, dict] = {}
    comparisons: dict[str, list[dict]] = {}
    scope_rows: dict[str, list[dict]] = {}
    for name, rel in REPORT_DATA.items():
        path = root / rel
        records = read_jsonl(path)
        task = engine.task(name)
        selected, note = select_records(task, records, file_sha256(path))
        report = evaluate(task, selected, cpython_runner(engine, name))
        report.update({"data": rel, "selection": note})
        reports[name] = report
        backend = engine.backend_for(name)
        comparisons[name] = compare_with_prototypes(task, backend, selected, root)
        scope_rows[name] = compare_scope_methods(task, backend, selected, root)
        if task.encoder:  # a fine-tuned encoder: the frozen base encoder's numbers beside it
            frozen = _frozen_engine(backend, name)
            report = evaluate(frozen.task(name), selected, cpython_runner(frozen, name))
            report.update({"data": rel, "selection": note})
            reports[f"{name} ({FROZEN})"] = report
            scope_rows[f"{name} ({FROZEN})"] = compare_scope_methods(
                frozen.task(name), frozen.backend, selected, root)
    extraction: dict[str, dict] = {}
    if EXTRACTION_REPORT:
        if extraction_engine is None and all(n in getattr(engine, "tasks", {})
                                             for n in EXTRACTION_REPORT):
            extraction_engine = engine
        if extraction_engine is None:
            from .cpython.engines import open_engine

            model_dir = getattr(getattr(engine, "encoder", None), "model_dir", None)
            build = Path(model_dir).parents[1] if model_dir else Path(__file__).parents[1] / "build"
            extraction_engine = open_engine(build, list(EXTRACTION_REPORT))
        for name, (rel, limit) in EXTRACTION_REPORT.items():
            path = root / rel
            records = read_jsonl(path)
            task = extraction_engine.task(name)
            selected, note = select_records(task, records, file_sha256(path))
            selected = spread(selected, limit)
            note += f"; {len(selected)} of them, spread through it, scored (--limit {limit})"
            report = evaluate(task, selected, cpython_runner(extraction_engine, name))
            report.update({"data": rel, "selection": note})
            extraction[name] = report
    stem = out.with_suffix("")
    _plot_reliability(reports, stem.with_name(stem.name + "-reliability.png"))
    for name, report in reports.items():
        if name in REPORT_DATA:
            _plot_confusions(report, stem.with_name(f"{stem.name}-{name}-confusions.png"))
    text = _markdown(reports, comparisons, stem.name, extraction)
    text = _insert_scope_section(text, scope_rows)
    out.write_text(_insert_encoder_section(text, reports, scope_rows), encoding="utf-8")
    return {**reports, **extraction}


def _markdown(reports: dict[str, dict], comparisons: dict[str, list[dict]], stem: str,
              extraction: dict[str, dict] | None = None) -> str:
    extraction = extraction or {}
    lines = ["# Evaluation of the trained task packs (CPython runtime)", "",
             "Generated by `edge-triage report`. Thresholds and hyperparameters were chosen on a "
             "held-out split of the training data only; these are dev numbers.", "",
             "| task | records | accuracy | in-scope acc. | macro-F1 | threshold | answered | "
             "local correct | oos escalated | ECE | p50 ms | p95 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in reports.items():
        rt = r["routing"]
        lines.append(
            f"| {name} | {r['count']:,} | {r['accuracy']:.4f} | {r['in_scope_accuracy']:.4f} | "
            f"{r['macro_f1']:.4f} | {r['threshold']:.2f} | {rt['answered']:.4f} | "
            f"{rt['local_accuracy']:.4f} | {_fmt(rt['oos_escalated'])} | {r['ece']:.4f} | "
            f"{r['latency_ms']['p50']:.1f} | {r['latency_ms']['p95']:.1f} |")
    lines += ["", "What was scored: " + "; ".join(f"**{n}** {r['data']}: {r['selection']}"
                                                 for n, r in reports.items()) + "."]
    if extraction:
        lines += ["", "## Extraction packs (language model, constrained decoding)", "",
                  "An output cut short (token limit) is not a record: it counts as schema-invalid, "
                  "wrong in every field, and is escalated.", "",
                  "| task | records | schema-valid | per-field exact match | all fields | "
                  "escalated | p50 ms | p95 ms |", "|---|---|---|---|---|---|---|---|"]
        for name, r in extraction.items():
            em = r["exact_match"]
            lines.append(
                f"| {name} | {r['count']:,} | {r['schema_valid']:.4f} | "
                + ", ".join(f"{f} {em[f]:.4f}" for f in r["fields"])
                + f" | {em['all']:.4f} | {r['escalated']:.4f} | {r['latency_ms']['p50']:.1f} | "
                f"{r['latency_ms']['p95']:.1f} |")
        lines += ["", "What was scored: " + "; ".join(f"**{n}** {r['data']}: {r['selection']}"
                                                     for n, r in extraction.items()) + "."]
        for name, r in extraction.items():
            for f in r["fields"]:
                if r["mistakes"][f]:
                    lines += ["", f"Most frequent {name} `{f}` mistakes (gold → predicted, count): "
                              + "; ".join(f"{g} → {p} ({n})" for g, p, n in r["mistakes"][f][:5])
                              + "."]
    lines += ["", "## Targets", "", "| task | target | measured | met | short by |", "|---|---|---|---|---|"]
    scored = {**reports, **extraction}
    for name, targets in TARGETS.items():
        if name not in scored:
            continue
        for label, path, minimum in targets:
            value = _get(scored[name], path)
            met = value >= minimum
            lines.append(f"| {name} | {label} ≥ {minimum:.3f} | {value:.4f} | "
                         f"{'yes' if met else '**no**'} | {'' if met else f'{minimum - value:.4f}'} |")
    missed = [(name, label) for name, targets in TARGETS.items() if name in scored
              for label, path, minimum in targets
              if _get(scored[name], path) < minimum and (name, label) in WHY_MISSED]
    if missed:
        lines += [""] + [f"- **{name}, {label}**: {WHY_MISSED[(name, label)]}" for name, label in missed]
    lines += ["", "## Linear head vs label prototypes", "",
              "Same embeddings, same data; prototypes are normalised class means scored by cosine "
              "with a temperature fitted on held-out similarities. Routing at each method's own "
              "threshold chosen on held-out train by the same rule.", "",
              "| task | method | top-1 (in scope) | macro-F1 | threshold | answered | local correct | "
              "oos escalated |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in comparisons.items():
        for c in rows:
            lines.append(f"| {name} | {c['method']} | {c['in_scope_accuracy']:.4f} | "
                         f"{c['macro_f1']:.4f} | {c['threshold']:.2f} | {c['answered']:.4f} | "
                         f"{c['local_accuracy']:.4f} | {_fmt(c['oos_escalated'])} |")
    lines += ["", "## Calibration", "", f"![reliability]({stem}-reliability.png)", "",
              "## Most confused classes", ""]
    for name, r in reports.items():
        if FROZEN in name:
            continue
        lines.append(f"### {name}")
        lines.append("")
        if not r["confusions"]:
            lines += ["No mistakes.", ""]
            continue
        lines += [f"![confusions]({stem}-{name}-confusions.png)", "",
                  "| gold | predicted | count |", "|---|---|---|"]
        lines += [f"| {g} | {p} | {n} |" for g, p, n in r["confusions"][:10]]
        lines.append("")
    return "\n".join(lines) + "\n"


FROZEN = "frozen encoder"


def _frozen_engine(backend, name: str):
    """``name`` on the base encoder of the build ``backend`` was loaded from."""
    from .cpython.engines import open_frozen_engine

    return open_frozen_engine(Path(backend.model_dir).parents[1], name, backend.dtype)


def _insert_encoder_section(markdown: str, reports: dict[str, dict],
                            scope_rows: dict[str, list[dict]]) -> str:
    """Fine-tuned encoder vs the frozen base encoder, for packs that fine-tune one, before the
    calibration section: same dev records, each with its own head, detector and thresholds."""
    pairs = [(n[: -len(FROZEN) - 3], n) for n in reports if n.endswith(f"({FROZEN})")]
    if not pairs:
        return markdown
    lines = ["## Fine-tuned vs frozen encoder", "",
             "The pack's encoder fine-tuned at build time (`models/finetune.py`, on the training "
             "rows outside the held-out fifth) against the frozen all-MiniLM-L6-v2; each with its "
             "own head, scope detector and thresholds fitted on the held-out fifth of train, "
             "scored on the same dev records. AUROC: the shipped scope score, in-scope vs "
             "out-of-scope.", "",
             "| task | encoder | in-scope top-1 | answered | local correct | oos escalated | "
             "AUROC |", "|---|---|---|---|---|---|---|"]
    for tuned, frozen in pairs:
        for name, label in ((frozen, "frozen (base)"), (tuned, "fine-tuned")):
            r, rt = reports[name], reports[name]["routing"]
            auroc = next((x["auroc"] for x in scope_rows.get(name, []) if x["shipped"]), math.nan)
            lines.append(f"| {tuned} | {label} | {r['in_scope_accuracy']:.4f} | "
                         f"{rt['answered']:.4f} | {rt['local_accuracy']:.4f} | "
                         f"{_fmt(rt['oos_escalated'])} | {_fmt(auroc)} |")
    return _before_calibration(markdown, lines)


def _before_calibration(markdown: str, lines: list[str]) -> str:
    """``lines`` as a section placed before the calibration section (or at the end)."""
    section = "\n".join(lines) + "\n\n"
    marker = "## Calibration"
    return markdown.replace(marker, section + marker, 1) if marker in markdown else markdown + section


def _insert_scope_section(markdown: str, scope_rows: dict[str, list[dict]]) -> str:
    """The out-of-scope methods table, placed before the calibration section."""
    if not any(scope_rows.values()):
        return markdown
    lines = ["## Out-of-scope detection: methods side by side", "",
             "Same embeddings and head; each method's scope score (higher = more in scope) and "
             "intent confidence are thresholded in turn, both thresholds fitted together on the "
             "held-out fifth of train (most in-scope answered with the 95 % Wilson lower bound of "
             "local precision ≥ 0.985 and ≥ 95 % of held-out out-of-scope escalated; "
             "`models/scope.py`). AUROC: the scope score (for one-threshold methods, the "
             "confidence) telling in-scope from out-of-scope dev queries. **Shipped** is what "
             "the artifact carries and the router uses; kNN is measured only (it would ship the "
             "training set).", "",
             "| task | method | scope threshold | intent threshold | answered | local correct | "
             "oos escalated | AUROC |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in scope_rows.items():
        for r in rows:
            t = r["thresholds"]
            scope_t = "–" if not t or t[0] is None else f"{t[0]:.2f}"
            intent_t = "none met" if not t else f"{t[1]:.3g}"
            method = f"**{r['method']}** (shipped)" if r["shipped"] else r["method"]
            lines.append(f"| {name} | {method} | {scope_t} | {intent_t} | {_fmt(r['answered'])} | "
                         f"{_fmt(r['local_accuracy'])} | {_fmt(r['oos_escalated'])} | "
                         f"{_fmt(r['auroc'])} |")
    return _before_calibration(markdown, lines)


def _fmt(x: float) -> str:
    return "–" if x != x else f"{x:.4f}"


def _plot_reliability(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(4.2 * len(reports), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], reports.items(), strict=True):
        bins = r["reliability"]
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=0.1, align="edge",
               edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3",
                label="mean confidence")
        ax.axvline(r["threshold"], color="C2", linewidth=1, label="threshold")
        ax.set(title=f"{name}\nECE {r['ece']:.3f}", xlabel="confidence", ylabel="accuracy",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_confusions(report: dict, path: Path, top: int = 12) -> None:
    if not report["confusions"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    for g, p, _ in report["confusions"]:
        for lb in (g, p):
            if lb not in labels and len(labels) < top:
                labels.append(lb)
    index = {lb: i for i, lb in enumerate(labels)}
    grid = [[0] * len(labels) for _ in labels]
    for row in report["rows"]:
        if row["gold"] in index and row["pred"] in index:
            grid[index[row["gold"]]][index[row["pred"]]] += 1
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(labels), 1 + 0.5 * len(labels)))
    ax.imshow([[v if i != j else 0 for j, v in enumerate(r)] for i, r in enumerate(grid)],
              cmap="Reds")
    for i, r in enumerate(grid):
        for j, v in enumerate(r):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="gold",
           title=f"{report['task']}: most-confused classes (diagonal blanked)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
