"""Build-time calibration of extraction confidence (models/extractcal.py) and its use at run time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.extractcal import calibrate, calibration_records, fit_logistic
from models.trainingdata import data_root
from pyapp.tasks import create_task
from pyapp.tasks.extraction import logistic

# The build calibrates loghub-fields only when its training data is there (as the heads).
needs_loghub = pytest.mark.skipif(
    not (data_root() / "loghub" / "dev.jsonl").exists(),
    reason="loghub data not found (EDGE_TRIAGE_DATA): the build calibrates nothing")


def _synthetic(n: int = 400, seed: int = 0):
    """Records right with probability sigmoid(3·x1 − 2·x2 + 1): a known calibration to recover."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    p = 1 / (1 + np.exp(-(3 * x[:, 0] - 2 * x[:, 1] + 1)))
    return x, rng.random(n) < p


def test_fit_logistic_recovers_the_generating_coefficients():
    x, right = _synthetic(4000)
    theta = fit_logistic(x, right.astype(float), l2=0.0)
    assert theta == pytest.approx([3, -2, 1], abs=0.35)


def test_calibrate_threshold_meets_the_precision_out_of_fold():
    x, right = _synthetic()
    cal = calibrate(["a", "b"], x, right, min_precision=0.95)
    assert cal["threshold"] is not None
    assert cal["oof_local_all_right"] >= 0.95
    # Answers more than the rate of right records alone would allow at that precision.
    assert 0.2 < cal["oof_answered"] < 1.0
    # The pure-Python confidence the page computes is the fitted model's.
    row = {"a": float(x[0, 0]), "b": float(x[0, 1])}
    z = cal["coef"][0] * row["a"] + cal["coef"][1] * row["b"] + cal["bias"]
    assert logistic(cal, row) == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-9)


def test_calibrate_without_any_separable_signal_answers_nothing():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    right = rng.random(300) < 0.5  # unrelated to x: no threshold reaches 97 %
    cal = calibrate(["a", "b"], x, right)
    assert cal["threshold"] is None
    assert cal["oof_answered"] == 0.0


def test_calibration_lines_come_only_from_the_training_split():
    task = create_task("loghub-fields")
    records = [{"text": f"081109 2036{i:02d} INFO dfs.DataNode: block {i}", "system": "HDFS",
                "level": "info", "component": "dfs.DataNode"} for i in range(300)]
    picked = calibration_records(task, records, rows=50)
    assert len(picked) == 50
    assert all(task.training.split_of(r["text"]) == "train" for r in picked)
    heldout = [r for r in records if task.training.split_of(r["text"]) == "heldout"]
    assert heldout and not {r["text"] for r in heldout} & {r["text"] for r in picked}


def test_a_calibration_of_another_model_is_ignored():
    task = create_task("loghub-fields")
    cal = {"features": ["log_choices"], "coef": [1.0], "bias": 5.0, "threshold": 0.6, "rows": 9}
    task.use_calibration({"model_key": "other-model", "calibration": cal}, "this-model")
    assert task.calibration is None and task.threshold == 0.85
    assert task.describe()["confidence"].startswith("uncalibrated")
    task.use_calibration({"model_key": "this-model", "calibration": cal}, "this-model")
    assert task.calibration == cal and task.threshold == 0.6
    assert task.describe()["confidence"] == "calibrated on 9 training lines"


@needs_loghub
def test_the_build_ships_a_calibration_for_the_built_language_model(build_dir):
    """`make build` calibrated loghub-fields on the language model the page runs, and a CPython
    engine routes by it."""
    from models.cpython.engines import open_engine

    index = json.loads((build_dir / "tasks" / "index.json").read_text())
    assert "loghub-fields" in index, "the build wrote no loghub-fields calibration"
    artifact = json.loads((build_dir / "tasks" / index["loghub-fields"]).read_text())
    cal = artifact["calibration"]
    assert cal["rows"] >= 100 and len(cal["coef"]) == len(cal["features"])
    engine = open_engine(build_dir, ["loghub-fields"])
    task = engine.task("loghub-fields")
    assert task.calibration == cal
    assert engine.backend.model_key == artifact["model_key"]


@needs_loghub
def test_zero_shot_loghub_fields_does_not_use_a_few_shot_calibration(build_dir, tmp_path):
    """The page has no data file, so loghub-fields runs zero-shot there: a calibration fitted on
    few-shot outputs must not route those (it falls back to the default threshold)."""
    import asyncio

    from models.cpython.engines import load_artifacts, open_generator
    from pyapp.tasks.loghub_fields import LoghubFieldsTask

    artifact = load_artifacts(build_dir)["loghub-fields"]
    generator = open_generator(build_dir)
    with_examples = LoghubFieldsTask()
    asyncio.run(with_examples.load(generator, artifact))
    assert with_examples.calibration == artifact["calibration"]
    zero_shot = LoghubFieldsTask(data_root=tmp_path)  # no loghub/dev.jsonl there
    asyncio.run(zero_shot.load(generator, artifact))
    assert zero_shot.calibration is None and zero_shot.threshold == 0.85
