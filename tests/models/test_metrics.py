import math

import pytest

from models import metrics


def test_accuracy():
    assert metrics.accuracy(["a", "b", "c", "a"], ["a", "b", "a", "a"]) == 0.75
    assert math.isnan(metrics.accuracy([], []))
    with pytest.raises(ValueError, match="length"):
        metrics.accuracy(["a"], [])


def test_macro_f1_by_hand():
    # a: tp 1, fp 0, fn 1 → 2/3;  b: tp 1, fp 2, fn 0 → 1/2;  c: tp 0, fn 1 → 0.
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert metrics.f1_by_label(gold, pred) == {"a": 2 / 3, "b": 0.5, "c": 0.0}
    assert metrics.macro_f1(gold, pred) == pytest.approx(7 / 18, abs=1e-15)


def test_expected_calibration_error_by_hand():
    # bin 9: conf .95, acc 1 → .05·¼;  bin 8: conf .85, acc ½ → .35·½;  bin 2: .25·¼.
    ece = metrics.expected_calibration_error([0.95, 0.85, 0.85, 0.25], [True, True, False, False])
    assert ece == pytest.approx(0.0125 + 0.175 + 0.0625, abs=1e-12)


def test_reliability_bins_put_confidence_one_in_the_last_bin():
    (b,) = metrics.reliability_bins([1.0, 0.95], [True, False])
    assert (b["low"], b["count"], b["accuracy"]) == (0.9, 2, 0.5)
    assert b["confidence"] == pytest.approx(0.975)


def test_percentile_interpolates_like_numpy():
    values = [50.0, 10.0, 40.0, 20.0, 30.0]
    assert metrics.percentile(values, 50) == 30.0
    assert metrics.percentile(values, 95) == pytest.approx(48.0)  # position 3.8: 40 + .8·10
    assert metrics.percentile([7.0], 95) == 7.0


def test_routing_metrics_by_hand():
    gold = ["a", "b", "a", "oos", "oos"]
    pred = ["a", "a", "a", "a", "oos"]
    local = [True, True, False, True, False]
    r = metrics.routing_metrics(gold, pred, local, frozenset({"oos"}))
    assert r["answered"] == 2 / 3  # two of three in-scope answered
    assert r["local_accuracy"] == 1 / 3  # of 3 local answers only the first is right
    assert r["oos_escalated"] == 0.5
    assert r["escalated"] == 0.4
    assert math.isnan(metrics.routing_metrics(["a"], ["a"], [True])["oos_escalated"])


def test_confusions_most_frequent_first():
    gold = ["a", "a", "b", "b", "b", "c"]
    pred = ["b", "b", "a", "c", "b", "c"]
    assert metrics.confusions(gold, pred) == [("a", "b", 2), ("b", "a", 1), ("b", "c", 1)]
