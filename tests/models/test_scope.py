"""Out-of-scope detectors fitted on synthetic blobs: the fit, the threshold rule, and that the
pure-Python detector the browser runs gives the numpy score."""

import json

import numpy as np
import pytest

from models.scope import (METHODS, SHIPPED, auroc, features, fit_mahalanobis, fit_scope,
                          fit_thresholds, scope_score, wilson_lower)
from pyapp.tasks.linear import rounded
from pyapp.tasks.scope import ScopeDetector


def blobs(seed=0, classes=4, per_class=60, dim=6):
    """In-scope classes as tight blobs; the last class (out of scope) scattered far around."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes + 1), per_class)
    x = np.where(y[:, None] < classes, centres[np.minimum(y, classes - 1)], 0.0)
    x = x + rng.normal(size=(len(y), dim)) * np.where(y[:, None] < classes, 0.4, 6.0)
    return x, y, classes


def test_mahalanobis_ranks_far_points_as_out_of_scope():
    x, y, oos = blobs()
    p, means = fit_mahalanobis(x, y, list(range(oos)))
    score = features(x, np.zeros((len(y), oos + 1)), 1.0, oos, (p, means))["maha"]
    assert auroc(score, y != oos) > 0.95


def test_auroc_counts_ties_half():
    assert auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert auroc(np.array([2.0, 1.0]), np.array([True, False])) == 1.0


def test_wilson_lower_bound_is_below_the_rate_and_tightens_with_n():
    small, large = wilson_lower(np.array([99, 990]), np.array([100, 1000]))
    assert small < large < 0.99


def test_thresholds_meet_both_constraints_or_none():
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.integers(0, 5, n)
    y[:100] = 5  # out of scope
    pred = np.where(rng.random(n) < 0.97, y, (y + 1) % 5)
    pred[:100] = rng.integers(0, 5, 100)
    confidence = np.where(pred == y, rng.uniform(0.5, 1, n), rng.uniform(0.2, 0.8, n))
    scope = np.where(y == 5, rng.normal(-2, 1, n), rng.normal(1, 1, n))
    a, b = fit_thresholds(scope, confidence, pred, y, 5)
    local = (pred != 5) & (scope >= a) & (confidence >= b)
    assert (pred[local] == y[local]).mean() >= 0.985
    assert (~local[y == 5]).mean() >= 0.95
    assert fit_thresholds(scope, confidence, pred, y, 5, min_precision=1.01) is None


def test_fit_scope_ships_a_detector_the_pure_python_runtime_reproduces():
    x, y, oos = blobs(seed=1)
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(oos + 1, x.shape[1]))
    logits = x @ weights.T
    heldout = rng.random(len(y)) < 0.3
    fitted = fit_scope(x, y, oos, oos + 1, heldout, logits[heldout], 0.7)
    assert set(fitted["methods"]) == set(METHODS)
    artifact = rounded(fitted["detector"])
    json.loads(json.dumps(artifact, allow_nan=False))  # the browser's JSON.parse must read it
    detector = ScopeDetector.from_artifact(artifact)
    stats = {k: tuple(v) for k, v in artifact["stats"].items()}
    p, means = fit_mahalanobis(x, y, list(range(oos)))
    numpy_scores = scope_score(features(x, logits, 0.7, oos, (p, means)), METHODS[SHIPPED][0], stats)
    python_scores = [detector.score(list(map(float, xi)), list(map(float, li)), 0.7)
                     for xi, li in zip(x, logits, strict=True)]
    assert python_scores == pytest.approx(numpy_scores, rel=1e-4, abs=1e-4)


def test_detector_refuses_unknown_features():
    with pytest.raises(ValueError, match="unknown scope features"):
        ScopeDetector.from_artifact({"features": ["knn"], "center": [0], "scale": [1],
                                     "oos_index": 0, "projection": [], "means": []})
