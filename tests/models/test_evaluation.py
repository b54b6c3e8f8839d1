import json

import pytest

from models.trainingdata import data_root
from server import cli
from models.evaluation import evaluate, select_records, spread
from pyapp.tasks import create_task

DATA = data_root()


def fake_runner(answers):
    """Runner returning canned (label, confidence, route, ms) per text."""

    def run(texts):
        return [{"output": {"label": answers[t][0]}, "confidence": answers[t][1],
                 "route": answers[t][2], "timings_ms": {"total": answers[t][3]}} for t in texts]

    return run


def test_evaluate_scores_a_fake_runner_by_hand():
    task = create_task("clinc150-intent")
    records = [{"text": "t1", "label": "balance"}, {"text": "t2", "label": "balance"},
               {"text": "t3", "label": "bill_due"}, {"text": "t4", "label": "oos"}]
    answers = {"t1": ("balance", 0.95, "local", 2.0), "t2": ("bill_due", 0.55, "escalated", 4.0),
               "t3": ("bill_due", 0.9, "local", 6.0), "t4": ("oos", 0.8, "escalated", 8.0)}
    r = evaluate(task, records, fake_runner(answers))
    assert r["accuracy"] == 0.75 and r["in_scope_accuracy"] == 2 / 3
    assert r["routing"] == {"answered": 2 / 3, "local_accuracy": 1.0, "oos_escalated": 1.0,
                            "escalated": 0.5}
    # bins: .95 → acc 1 (.05); .9 → acc 1 (.1); .8 → acc 1 (.2); .55 → acc 0 (.55); each ¼.
    assert r["ece"] == pytest.approx((0.05 + 0.1 + 0.2 + 0.55) / 4)
    assert r["latency_ms"] == {"p50": 5.0, "p95": pytest.approx(7.7)}
    assert r["confusions"] == [("balance", "bill_due", 1)]


def test_held_out_part_only_when_scoring_the_training_file():
    task = create_task("loghub-system")
    task._artifact = {"training": {"sha256": "abc", "heldout_percent": 30}}
    records = [{"text": f"line {i}", "system": "HDFS"} for i in range(100)]
    kept, note = select_records(task, records, "abc")
    assert {task.training.split_of(r["text"]) for r in kept} == {"heldout"}
    assert "held-out" in note
    assert len(select_records(task, records, "other")[0]) == 100


def test_spread_takes_evenly_spaced_records():
    assert spread([{"i": i} for i in range(10)], 3) == [{"i": 0}, {"i": 3}, {"i": 6}]


def test_browser_runner_hook_refuses_until_registered():
    from models import evaluation

    evaluation.set_browser_runner(None)
    with pytest.raises(evaluation.RuntimeUnavailableError, match="no browser runner"):
        evaluation.browser_runner("clinc150-intent")
    evaluation.set_browser_runner(lambda name: (lambda texts: [{"task": name}] * len(texts)))
    try:
        assert evaluation.browser_runner("x")(["a", "b"]) == [{"task": "x"}, {"task": "x"}]
    finally:
        evaluation.set_browser_runner(None)


@pytest.mark.slow
def test_real_eval_on_a_slice(build_dir, tmp_path, capsys):
    dev = DATA / "clinc150" / "dev.jsonl"
    if not dev.exists():
        pytest.skip("CLINC150 data not found")
    out = tmp_path / "r.json"
    assert cli.main(["--build-dir", str(build_dir), "eval", "clinc150-intent", str(dev),
                     "--limit", "60", "--report", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["count"] == 60 and report["runtime"] == "cpython"
    assert report["in_scope_accuracy"] > 0.8
    assert 0 < report["latency_ms"]["p50"] < 1000
    assert "clinc150-intent: 60 records" in capsys.readouterr().out
