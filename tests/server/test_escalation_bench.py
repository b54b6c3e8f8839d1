"""`edge-triage escalation-bench` end to end on real models: the browser's model on held-out
loghub-fields lines, then the escalated ones on an escalation model (here the imported ONNX
model of tests/models/imported_lm.py, so it runs without llama.cpp), scored against the labels."""

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
