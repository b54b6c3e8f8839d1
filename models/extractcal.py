"""Calibrated confidence for an extraction task, fitted at build time on its training lines only.

An extraction's raw confidence (the product of the language model's constrained choices, see
``pyapp.tasks.extraction``) ranks records but is not a probability: loghub-fields records that
are entirely right score 0.13–0.44, so no threshold answered any of them locally. Here the task
runs, under CPython on the same ONNX file the page runs, over ``ROWS`` lines of its training
split (never the held-out part ``edge-triage eval`` scores), each record is marked right when
every field equals the gold one, and a logistic regression on the task's confidence features
(``ExtractionTask.confidence_features``) is fitted to that. The routing threshold is chosen on
out-of-fold confidences (``FOLDS`` folds) by the classifiers' rule (``heads.choose_threshold``):
the lowest whose local answers are at least ``MIN_PRECISION`` all-fields right. The result is a
task artifact (``build/tasks/<task>-<key>.json``) naming the model it was fitted on; a page on
another language model ignores it and says the confidence is uncalibrated.

Running the model over the lines is the cost (~2 s a line on this 2-core machine), so the
artifact is cached by content (task recipe, model key, data file hash, this module's settings).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from .cache import cache_root, content_key, sha256_file
from .trainingdata import data_root, read_jsonl

#: Training lines the task runs over to fit its calibration.
ROWS = 160
FOLDS = 5
#: Local answers must have every field right this often (out of fold, on training lines).
MIN_PRECISION = 0.97
#: Bump when the fitting or the features change (part of the cache key).
VERSION = 1


def fit_logistic(feats: np.ndarray, target: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Weights then bias of ``P(right) = sigmoid(x·w + b)``, maximum likelihood with a small L2
    on the weights (a feature that is constant in the sample must not run away)."""
    from scipy.optimize import minimize

    n, d = feats.shape

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = feats @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        eps = 1e-12
        value = -float(np.mean(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps)))
        value += 0.5 * l2 * float(theta[:-1] @ theta[:-1])
        g = (p - target) / n
        return value, np.concatenate([feats.T @ g + l2 * theta[:-1], [g.sum()]])

    return minimize(nll, np.zeros(d + 1), jac=True, method="L-BFGS-B").x


def _sigmoid(feats: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(feats @ theta[:-1] + theta[-1], -500, 500)))


def calibrate(names: list[str], feats: np.ndarray, correct: np.ndarray,
              min_precision: float = MIN_PRECISION, folds: int = FOLDS) -> dict:
    """The calibration a task artifact carries: coefficients fitted on every row, the threshold
    chosen on out-of-fold confidences (rows assigned to folds round-robin)."""
    from .heads import choose_threshold

    target = correct.astype(np.float64)
    oof = np.zeros(len(target))
    fold = np.arange(len(target)) % folds
    for k in range(folds):
        held = fold == k
        if held.any() and (~held).any():
            oof[held] = _sigmoid(feats[held], fit_logistic(feats[~held], target[~held]))
    theta = fit_logistic(feats, target)
    threshold = choose_threshold(oof, correct, min_precision=min_precision)
    local = oof >= (threshold if threshold is not None else np.inf)
    return {"features": names, "coef": [round(float(v), 6) for v in theta[:-1]],
            "bias": round(float(theta[-1]), 6), "threshold": threshold,
            "min_precision": min_precision, "rows": int(len(target)),
            "all_fields_right": round(float(target.mean()), 5),
            "oof_answered": round(float(local.mean()), 5),
            "oof_local_all_right": round(float(correct[local].mean()), 5) if local.any() else None}


def calibration_records(task, records: list[dict], rows: int = ROWS) -> list[dict]:
    """``rows`` training-split records with gold fields, spread evenly through the file."""
    train = [r for r in records if task.training.label_of(r) is not None
             and task.training.split_of_record(r) == "train"]
    if len(train) <= rows:
        return train
    return [train[i * len(train) // rows] for i in range(rows)]


def _decode_sources(task) -> list[Path]:
    """The code that turns a line into the record and features being calibrated: a change in
    it (the decode loop, the prompt, the guard) changes the outputs, so it refits."""
    import pyapp

    root = Path(pyapp.__file__).parent
    return sorted({*(root / "generation").glob("*.py"), root / "guard.py",
                   root / "tasks" / "extraction.py",
                   Path(sys.modules[type(task).__module__].__file__)})


def build_calibration(task, generator, log=print) -> dict:
    """The task artifact ``{"model_key", "calibration", "training"}``; cached by content."""
    path = data_root() / task.training.file
    if not path.exists():
        raise FileNotFoundError(f"training data for {task.name} not found: {path} "
                                "(set EDGE_TRIAGE_DATA to the data root)")
    data_sha = sha256_file(path)
    recipe = json.dumps([task.name, task.instructions, task.schema, getattr(task, "few_shot", 0),
                         task.training.identity(), list(task.copy_fields), generator.model_key,
                         data_sha, ROWS, FOLDS, MIN_PRECISION, VERSION], sort_keys=True)
    key = content_key([recipe, *_decode_sources(task)])
    cached = cache_root() / "tasks" / f"{task.name}-calibration-{key[:12]}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    picked = calibration_records(task, read_jsonl(path))
    log(f"task {task.name}: calibrating its confidence on {len(picked)} training lines "
        f"(the language model runs on each, ~2 s a line)")
    names: list[str] | None = None
    feats, correct = [], []
    started = time.perf_counter()
    for i, record in enumerate(picked):
        prediction = asyncio.run(task.predict(record["text"], generator))
        output = prediction.output.record
        got = output.model_dump(mode="json") if output is not None else None
        features = prediction.extra.get("confidence_features")
        if features is None:  # cut short or refused: not a record, always escalated anyway
            continue
        names = names or sorted(features)
        feats.append([features[n] for n in names])
        correct.append(prediction.valid and got == task.training.label_of(record))
        if (i + 1) % 20 == 0:
            log(f"  {i + 1}/{len(picked)} lines, {sum(correct)} right, "
                f"{time.perf_counter() - started:.0f}s")
    if not names or len(set(correct)) < 2:
        raise ValueError(f"task {task.name}: cannot calibrate on {len(correct)} records "
                         f"({sum(correct)} right): need both right and wrong ones")
    cal = calibrate(names, np.array(feats, dtype=np.float64), np.array(correct))
    log(f"  calibration: all fields right {cal['all_fields_right']:.3f} of {cal['rows']}; "
        f"threshold {cal['threshold']} answers {cal['oof_answered']:.3f} out of fold with "
        f"{cal['oof_local_all_right']} right")
    artifact = {"task": task.name, "kind": "extraction-calibration",
                "model_key": generator.model_key, "calibration": cal,
                "training": {"file": task.training.file, "sha256": data_sha,
                             "heldout_percent": task.training.heldout_percent,
                             "lines": len(picked)}}
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(artifact))
    tmp.rename(cached)
    return artifact
