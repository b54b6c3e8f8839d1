import json

import numpy as np
import pytest

from pyapp.backends.base import EncoderBackend
from pyapp.router import ConfidenceRouter
from pyapp.tasks import ArtifactMissingError, LinearHeadTask, TrainingData, create_task
from pyapp.tasks.linear import head_artifact
from tests.conftest import run

LABELS = ("alpha", "beta", "oos")


class FakeEncoder(EncoderBackend):
    """Embeds each known text as a fixed vector; enough to drive predict() without a model."""

    name, threads, max_tokens, model_key = "fake", 1, 256, "fake-model"

    def __init__(self, table):
        self.table = table

    async def embed(self, texts):
        return [self.table[t] for t in texts]

    async def count_tokens(self, text):
        return len(text.split()) + 2


def make_task():
    data = TrainingData("x.jsonl", lambda r: r["label"], version="test/v1", heldout_percent=30)
    return LinearHeadTask("demo-head", LABELS, data, threshold=0.6, escalate_labels=frozenset({"oos"}))


def trained(task, seed=0, dim=384):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(len(LABELS), dim)), rng.normal(size=len(LABELS))
    return head_artifact(task, FakeEncoder.model_key, w, b, 0.7, {"sha256": "s"})


def test_pure_python_head_equals_numpy():
    task = make_task()
    artifact = trained(task)
    task.load_artifact(artifact)
    rng = np.random.default_rng(1)
    w, b = np.array(artifact["weights"]), np.array(artifact["bias"])
    for _ in range(20):
        x = rng.normal(size=384)
        x /= np.linalg.norm(x)
        z = (w @ x + b) / artifact["temperature"]
        expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert np.max(np.abs(np.array(task.probabilities(x.tolist())) - expected)) < 1e-9


def test_artifact_round_trip_through_json():
    task = make_task()
    artifact = json.loads(json.dumps(trained(task)))
    run(task.load(FakeEncoder({}), artifact))
    again = make_task()
    run(again.load(FakeEncoder({}), json.loads(json.dumps(task.artifact("fake-model")))))
    x = [0.05] * 384
    assert again.probabilities(x) == task.probabilities(x)
    assert again.training_info == {"sha256": "s"}


def test_rounding_keeps_six_significant_digits():
    artifact = trained(make_task())
    assert all(float(f"{v:.6g}") == v for v in artifact["weights"][0])


def test_load_refuses_a_missing_or_foreign_artifact():
    task = make_task()
    with pytest.raises(ArtifactMissingError, match="models build"):
        run(task.load(FakeEncoder({}), None))
    artifact = trained(task)
    with pytest.raises(ArtifactMissingError):
        run(task.load(FakeEncoder({}), {**artifact, "key": "0" * 64}))


def test_escalated_label_is_routed_away_even_when_confident():
    task = make_task()
    artifact = trained(task)
    artifact["weights"] = [[0.0] * 384, [0.0] * 384, [0.0] * 384]
    artifact["bias"] = [0.0, 0.0, 5.0]  # always "oos", with confidence ≈ 0.9995
    task.load_artifact(artifact)
    prediction = run(task.predict("what is love", FakeEncoder({"what is love": [0.1] * 384})))
    assert prediction.output.label == "oos" and prediction.confidence > 0.99
    decision = ConfidenceRouter(task.threshold).decide(prediction)
    assert decision.route == "escalated"
    assert decision.reasons == ["label 'oos' is not answered locally"]


def test_split_is_deterministic_and_near_the_requested_share():
    data = make_task().training
    splits = [data.split_of(f"line {i}") for i in range(2000)]
    assert splits == [data.split_of(f"line {i}") for i in range(2000)]
    assert 0.27 < splits.count("heldout") / 2000 < 0.33


@pytest.mark.parametrize("name, n", [("clinc150-intent", 151), ("loghub-system", 16),
                                     ("loghub-anomaly", 2)])
def test_registered_packs(name, n):
    task = create_task(name)
    assert len(task.labels) == n
    assert task.describe()["schema"]["properties"]["label"]


def scoped(task, threshold):
    """A confident 'alpha' head plus a scope detector on the oos log-odds alone."""
    artifact = trained(task)
    artifact["weights"] = [[0.0] * 384, [0.0] * 384, [0.0] * 384]
    artifact["bias"] = [5.0, 0.0, 1.0]
    artifact["scope"] = {"features": ["p_not_oos"], "center": [0.0], "scale": [1.0],
                         "oos_index": 2, "projection": [], "means": [], "threshold": threshold,
                         "intent_threshold": 0.5}
    task.load_artifact(artifact)
    return run(task.predict("hi", FakeEncoder({"hi": [0.1] * 384})))


def test_scope_detector_escalates_before_the_intent_threshold():
    task = make_task()
    local = scoped(task, threshold=1.0)  # log-odds (5 − 1)/0.7 ≈ 5.7 ≥ 1: in scope
    assert task.threshold == 0.5  # the fitted intent threshold replaces the default
    assert ConfidenceRouter(task.threshold).decide(local).route == "local"
    assert local.extra["scope_score"] == pytest.approx(
        np.log(np.exp(5 / 0.7) + 1) - 1 / 0.7, rel=1e-9)
    far = scoped(make_task(), threshold=10.0)
    decision = ConfidenceRouter(task.threshold).decide(far)
    assert decision.route == "escalated" and "probably out of scope" in decision.reasons[0]


def test_scope_without_fitted_thresholds_escalates_everything():
    prediction = scoped(make_task(), threshold=None)
    assert ConfidenceRouter(0.5).decide(prediction).route == "escalated"
