"""loghub-fields: schema, few-shot retrieval from the training split only, metrics, eval."""

from __future__ import annotations

import asyncio
import json

import pytest

from models import metrics
from models.trainingdata import data_root
from server import cli
from models.evaluation import evaluate, select_records, summary_lines
from pyapp.tasks import TASKS, create_task
from pyapp.tasks.loghub import SYSTEMS
from pyapp.tasks.loghub_fields import FIELDS_DATA, LoghubFields, LoghubFieldsTask, shape_tokens

DEV = data_root() / "loghub" / "dev.jsonl"


def dev_records() -> list[dict]:
    if not DEV.exists():
        pytest.skip("loghub data not found")
    return [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line]


# --- metrics, checked by hand ---

def test_schema_valid_rate_by_hand():
    assert metrics.schema_valid_rate([True, False, True, True, True]) == 0.8
    assert metrics.schema_valid_rate([]) != metrics.schema_valid_rate([])  # NaN


def test_field_exact_match_by_hand():
    gold = [{"level": "info", "component": "CBS"}, {"level": None, "component": None},
            {"level": "error", "component": "x"}, {"level": "warning", "component": "y"}]
    pred = [{"level": "info", "component": "CBS"}, {"level": None, "component": "kernel"},
            None, {"level": "warning", "component": "Y"}]
    # level: right, right (null == null), invalid output, right → 3/4
    assert metrics.field_exact_match(gold, pred, "level") == 0.75
    # component: right, wrong (null vs kernel), invalid, wrong (case) → 1/4
    assert metrics.field_exact_match(gold, pred, "component") == 0.25
    assert metrics.fields_exact_match(gold, pred, ["level", "component"]) == {
        "level": 0.75, "component": 0.25, "all": 0.25}
    with pytest.raises(ValueError):
        metrics.field_exact_match(gold, pred[:2], "level")


# --- schema and prompt, no model ---

def test_registered_and_schema_is_bounded():
    assert "loghub-fields" in TASKS
    schema = LoghubFields.model_json_schema()
    assert list(schema["properties"]) == ["system", "level", "component"]
    assert set(schema["properties"]["system"]["enum"]) == set(SYSTEMS)
    level = [s for s in schema["properties"]["level"]["anyOf"] if "enum" in s][0]
    assert set(level["enum"]) == {"info", "debug", "warning", "error", "fatal"}
    comp = [s for s in schema["properties"]["component"]["anyOf"] if s.get("type") == "string"][0]
    assert comp["maxLength"] == 80


def test_every_gold_record_fits_the_schema():
    for r in dev_records():
        LoghubFields.model_validate(FIELDS_DATA.label_of(r))


def test_few_shot_examples_come_only_from_the_training_split():
    from pyapp.tasks.loghub_fields import ExampleIndex

    task = LoghubFieldsTask()  # no model needed: build the example index as load() does

    records = dev_records()
    train = [r for r in records if FIELDS_DATA.split_of(r["text"]) == "train"]
    task._index = ExampleIndex(train)
    heldout = [r for r in records if FIELDS_DATA.split_of(r["text"]) == "heldout"][:20]
    for r in heldout:
        examples = task.examples(r["text"])
        assert len(examples) == 3
        assert all(FIELDS_DATA.split_of(e["text"]) == "train" for e in examples)
        assert all(e["text"] != r["text"] for e in examples)
    prompt = task.prompt(heldout[0]["text"]).user
    assert prompt.count("Log line:") == 4 and prompt.endswith("JSON:")
    assert "0" in shape_tokens("a 123 b")


def test_eval_scores_only_held_out_lines_with_a_fake_runner():
    task = LoghubFieldsTask()
    task._training_info = {"sha256": "abc", "heldout_percent": 30}
    records = [{"text": f"line {i}", "system": "HDFS", "level": "info", "component": "dfs.X"}
               for i in range(40)]
    kept, _ = select_records(task, records, "abc")
    assert kept and {FIELDS_DATA.split_of(r["text"]) for r in kept} == {"heldout"}

    def runner(texts):
        out = []
        for i, _t in enumerate(texts):
            ok = i % 4 != 3
            rec = {"system": "HDFS", "level": "info" if i % 2 == 0 else "warning",
                   "component": "dfs.X"} if ok else None
            out.append({"output": {"record": rec, "stop_reason": "eos" if ok else "max_new_tokens"},
                        "valid": ok, "route": "local" if ok else "escalated",
                        "timings_ms": {"total": 10.0 * (i + 1)}, "confidence": 1.0 if ok else 0.0})
        return out

    four = records[:4]
    r = evaluate(task, four, runner)
    # i=0 all right; i=1 level wrong; i=2 all right; i=3 cut short → wrong everywhere.
    assert r["schema_valid"] == 0.75 and r["escalated"] == 0.25
    assert r["exact_match"] == {"system": 0.75, "level": 0.5, "component": 0.75, "all": 0.5}
    assert r["latency_ms"]["p50"] == 25.0
    assert r["stop_reasons"] == {"eos": 3, "max_new_tokens": 1}
    assert "schema-valid 0.7500" in "\n".join(summary_lines(r))


# --- the real model ---

@pytest.mark.slow
def test_real_lines_give_schema_valid_records_and_eval_runs(build_dir, tmp_path, capsys):
    dev_records()
    out = tmp_path / "r.json"
    assert cli.main(["--build-dir", str(build_dir), "eval", "loghub-fields", str(DEV),
                     "--limit", "5", "--report", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["count"] == 5 and report["schema_valid"] == 1.0
    assert "held-out" in report["selection"]
    for row in report["rows"]:
        LoghubFields.model_validate(row["pred"])
    assert 0 < report["latency_ms"]["p50"] < 30_000
    assert "loghub-fields: 5 records" in capsys.readouterr().out


@pytest.mark.slow
def test_output_cut_short_is_invalid_and_escalated(build_dir):
    from pyapp.engine import Engine

    gen = cli.open_generator(build_dir)
    task = create_task("loghub-fields")
    task.max_new_tokens = 6
    engine = Engine(gen)
    engine.tasks["loghub-fields"] = task
    asyncio.run(task.load(gen))
    r = asyncio.run(engine.run("loghub-fields", dev_records()[0]["text"]))
    assert r["valid"] is False and r["route"] == "escalated"
    assert r["output"]["record"] is None and r["output"]["stop_reason"] == "max_new_tokens"
