"""`edge-triage escalation-bench` end to end on real models: the browser's side on held-out
loghub-fields or telemetry-extract lines, then the escalated ones on an escalation model (here the
imported ONNX model of tests/models/imported_lm.py, so it runs without llama.cpp), scored against
the labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.escalation_bench import DEV_DATA, run_escalation_bench


def test_the_bench_scores_both_models_on_the_escalated_cases(build_dir: Path):
    from models.trainingdata import data_root
    from tests.models.imported_lm import ensure_imported

    if not (data_root() / DEV_DATA["loghub-fields"]).exists():
        pytest.skip("loghub data not found")
    imported = ensure_imported(build_dir)
    report = run_escalation_bench(build_dir, "loghub-fields", limit=2, model=imported.model_id,
                                  log=lambda line: None)
    assert report["records"] == 2 and report["escalated"] == len(report["rows"])
    assert report["escalation_model"]["model"] == imported.model_id
    assert report["browser_model"]["model"] != imported.model_id
    for side in ("browser_model", "escalation_model"):
        assert 0.0 <= report[side]["exact_match"]["all"] <= 1.0
        assert report[side]["seconds_per_case"]["mean"] > 0
    for row in report["rows"]:
        assert set(row["gold"]) == {"system", "level", "component"}


def test_telemetry_extract_is_scored_on_held_out_templates_with_heads_on_the_browser_side(
        build_dir: Path):
    """The page's telemetry-extract (encoder heads + language model) against the handler's engine
    for it (the same heads, the escalation model for the rest), on the three labelled fields."""
    import json

    from models.trainingdata import data_root
    from pyapp.tasks.telemetry_labels import FIELDS, gold_record, template_split
    from tests.models.imported_lm import ensure_imported

    path = data_root() / DEV_DATA["telemetry-extract"]
    if not path.exists():
        pytest.skip("loghub data not found")
    imported = ensure_imported(build_dir)
    # Six lines spread through the held-out templates: the browser's side answers ~0.6 of
    # held-out lines locally (the heads' record calibration) and escalates the rest; one of
    # those runs on the escalation model.
    report = run_escalation_bench(build_dir, "telemetry-extract", limit=6, max_escalated=1,
                                  model=imported.model_id, log=lambda line: None)
    assert report["records"] == 6 and report["fields"] == list(FIELDS)
    assert report["escalated"] >= 1 and report["escalated"] == len(report["rows"])
    browser, server = report["browser_model"], report["escalation_model"]
    assert browser["heads_encoder"] and server["model"] == imported.model_id
    for field in FIELDS:
        assert browser["sources"][field].endswith("(encoder head)")
        assert server["sources"][field] == browser["sources"][field]  # the handler's too
    for row in report["rows"]:  # same heads, same encoder file: the page's closed-set fields
        assert row["escalation"] is not None
        assert {f: row["escalation"][f] for f in FIELDS} == {f: row["browser"][f] for f in FIELDS}
    by_text = {r["text"]: r for r in map(json.loads, path.read_text().splitlines())}
    for row in report["rows"]:
        record = by_text[row["text"]]
        assert template_split(record) == "heldout" and row["gold"] == gold_record(record)
    for name, side in (("browser", browser), ("escalation", server)):
        for field in FIELDS:
            right = [r[name] is not None and r[name][field] == r["gold"][field]
                     for r in report["rows"]]
            assert side["exact_match"][field] == sum(right) / len(right)
        assert side["seconds_per_case"]["mean"] > 0
