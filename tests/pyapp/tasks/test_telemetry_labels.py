"""The hand-labelled Loghub templates: a valid file, inherited by lines, split by template."""

from __future__ import annotations

import json

import pytest

from models.evaluation import extraction_routing, scored_fields
from models.metrics import repeats_phrase
from pyapp.tasks import create_task
from pyapp.tasks.hybrid import HybridExtractionTask, calibrated
from pyapp.tasks.telemetry_labels import (LABELS_DIGEST, LABELS_FILE, field_training, gold_record,
                                          template_labels, template_split)


def test_every_entry_is_labelled_with_known_values_once():
    entries = json.loads(LABELS_FILE.read_text(encoding="utf-8"))
    labels = template_labels()  # raises on an unknown value or a template labelled twice
    assert len(labels) == len(entries) >= 500
    assert {e["category"] for e in entries} <= {
        "thermal", "power", "network", "storage", "mechanical", "sensor", "software"}


def test_a_line_inherits_its_templates_labels():
    line = {"text": "R25-M0-N7 RAS KERNEL INFO generating core.2275", "system": "BGL",
            "event_template": "generating core.<*>"}
    assert gold_record(line) == {"category": "software", "severity": "warning",
                                 "component_kind": "job"}
    assert gold_record({**line, "event_template": "never labelled <*>"}) is None


def test_the_split_is_by_template_not_by_text():
    a = {"text": "one", "system": "HPC", "event_template": "running"}
    b = {"text": "another text entirely", "system": "HPC", "event_template": "running"}
    data = field_training("severity")
    assert data.split_of_record(a) == data.split_of_record(b) == template_split(a)
    sides = {template_split({"system": s, "event_template": t}) for s, t in template_labels()}
    assert sides == {"train", "heldout"}


def test_field_training_labels_one_field_or_the_record():
    line = {"system": "HPC", "event_template": "psu failure\\ ambient=<*>"}
    assert field_training("category").label_of(line) == "power"
    assert field_training(None).label_of(line)["severity"] == "critical"


def test_telemetry_extract_names_a_head_for_each_closed_set_field():
    task = create_task("telemetry-extract")
    assert isinstance(task, HybridExtractionTask)
    assert task.sources()["category"] == "language model"  # no heads attached yet
    for field, head in task.field_heads.items():
        assert create_task(head).labels == tuple(
            task.record_model.model_fields[field].annotation.__args__)
    schema = task.narrowed_schema({"severity": "error"})
    assert schema["properties"]["severity"]["enum"] == ["error"]
    # The engine writes the heads' values as the answer's start, in record order.
    start = task.answer_start({"severity": "error", "category": "power", "component_kind": "node"})
    assert start == '{"category":"power","severity":"error","component_kind":"node",'
    with pytest.raises(ValueError, match="first fields"):
        HybridExtractionTask("x", task.record_model, "i", field_heads={"summary": "h"})
    assert task.span_fields == ("component",)
    for wrong in (("summary",), ("action_required",), ("place",)):  # from the line, a bool, none
        with pytest.raises(ValueError, match="span_fields"):
            HybridExtractionTask("x", task.record_model, "i", field_heads=task.field_heads,
                                 line_fields=task.line_fields, span_fields=wrong)
    assert task.schema["properties"]["severity"]["enum"] == ["info", "warning", "error", "critical"]


def test_calibration_is_monotone_in_each_fields_confidence():
    cal = {"fields": ["a", "b"], "coef": [2.0, 1.0], "bias": 1.0}
    low, high = calibrated(cal, {"a": 0.5, "b": 0.9}), calibrated(cal, {"a": 0.9, "b": 0.9})
    assert 0.0 < low < high < 1.0


def test_extraction_routing_scores_local_answers_and_summaries():
    gold = [{"severity": "info"}, {"severity": "error"}, {"severity": "info"}]
    pred = [{"severity": "info", "summary": "Fan 2 stopped."},
            {"severity": "info", "summary": "disk full disk full disk full"}, None]
    results = [{"route": "local", "reasons": []}, {"route": "local", "reasons": []},
               {"route": "escalated", "reasons": ["closed early after 150 tokens (a loop)"]}]
    out = extraction_routing(gold, pred, results, ["severity"])
    assert out["answered_locally"] == pytest.approx(2 / 3)
    assert out["local_all_exact"] == pytest.approx(0.5)
    assert out["closed_early"] == pytest.approx(1 / 3)
    assert out["summaries"]["repeated_phrase"] == pytest.approx(0.5)
    assert scored_fields(create_task("telemetry-extract"), gold) == ["severity"]


def test_repeated_phrases():
    assert repeats_phrase("Crashed, implausible, stuck, Crashed, implausible, stuck")
    assert not repeats_phrase("PSU 2 failed; node 4B runs on the redundant supply")


def test_the_pinned_labels_digest_is_the_files():
    """Editing the labels must change the heads' training key (and so retrain them)."""
    import hashlib

    assert LABELS_DIGEST == hashlib.sha256(LABELS_FILE.read_bytes()).hexdigest()[:12]


def test_the_pinned_reports_digest_is_the_files():
    import hashlib

    from pyapp.tasks.telemetry_labels import REPORTS_DIGEST, REPORTS_FILE

    assert REPORTS_DIGEST == hashlib.sha256(REPORTS_FILE.read_bytes()).hexdigest()[:12]


def test_every_field_report_is_a_triage_example_with_its_category():
    from pyapp.tasks.telemetry import LABELS
    from pyapp.tasks.telemetry_labels import report_records

    reports = {r["text"]: r["category"] for r in report_records()}
    assert reports == {e: label.name for label in LABELS for e in label.examples}
