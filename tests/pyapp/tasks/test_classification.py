import asyncio
import math

import pytest
from pydantic import ValidationError

from pyapp import vectors
from pyapp.backends.base import EncoderBackend
from pyapp.tasks import Label, create_task
from pyapp.tasks.classification import ClassificationTask, fit_temperature


class TableEncoder(EncoderBackend):
    """Looks texts up in a fixed table: for testing the classification maths in isolation."""

    name = "table"
    model_key = "table-v1"

    def __init__(self, table):
        self.table = table
        self.calls = 0

    async def embed(self, texts):
        self.calls += 1
        return [self.table[t] for t in texts]

    async def count_tokens(self, text):
        return len(text.split()) + 2


def unit(*xs):
    n = math.sqrt(sum(x * x for x in xs))
    return [x / n for x in xs]


TABLE = {
    "a1": unit(1, 0.1, 0), "a2": unit(1, -0.1, 0), "a3": unit(1, 0, 0.1),
    "b1": unit(0.1, 1, 0), "b2": unit(-0.1, 1, 0), "b3": unit(0, 1, 0.1),
    "query-a": unit(0.9, 0.2, 0), "query-mid": unit(1, 1, 0),
}


def make_task(name="t"):
    return ClassificationTask(name, [Label("a", "A", ("a1", "a2", "a3")),
                                     Label("b", "B", ("b1", "b2", "b3"))])


def test_prediction_is_schema_valid_and_calibrated_by_distance():
    task, enc = make_task("calib"), TableEncoder(TABLE)
    asyncio.run(task.load(enc))
    clear = asyncio.run(task.predict("query-a", enc))
    unsure = asyncio.run(task.predict("query-mid", enc))
    assert clear.output.label == "a" and clear.confidence > 0.9
    assert unsure.confidence < clear.confidence
    assert math.isclose(sum(clear.output.scores.values()), 1.0)
    task.output_model.model_validate(clear.output.model_dump())


def test_output_model_rejects_unknown_labels_and_bad_confidence():
    model = make_task().output_model
    with pytest.raises(ValidationError):
        model(label="c", confidence=0.5, scores={})
    with pytest.raises(ValidationError):
        model(label="a", confidence=1.5, scores={})


def test_prototypes_are_computed_once_per_model_and_labels():
    enc = TableEncoder(TABLE)
    asyncio.run(make_task("once").load(enc))
    calls = enc.calls
    asyncio.run(make_task("once").load(enc))
    assert enc.calls == calls


def test_artifact_round_trip_skips_embedding():
    enc = TableEncoder(TABLE)
    task = make_task("art")
    asyncio.run(task.load(enc))
    artifact = task.artifact(enc.model_key)
    other = TableEncoder({**TABLE})
    other.model_key = "table-v2"  # different key: nothing cached for it
    fresh = make_task("art")
    asyncio.run(fresh.load(other, {**artifact, "key": fresh.content_key(other.model_key)}))
    assert other.calls == 0
    assert fresh.probabilities(TABLE["query-a"]) == task.probabilities(TABLE["query-a"])


def test_artifact_with_wrong_key_is_ignored():
    enc = TableEncoder(TABLE)
    enc.model_key = "table-v3"
    task = make_task("wrongkey")
    asyncio.run(task.load(enc, {"key": "stale", "labels": ["x"], "vectors": [[1]], "temperature": 1}))
    assert enc.calls > 0
    assert task.probabilities(TABLE["query-a"])[0] > 0.5


def _confidence_at_fitted_temperature(by_label):
    t = fit_temperature(by_label)
    protos = [vectors.normalize(vectors.mean(vs)) for vs in by_label]
    probs = [vectors.softmax([vectors.dot(v, p) / t for p in protos])[i]
             for i, vs in enumerate(by_label) for v in vs]
    return sum(probs) / len(probs)


def test_fitted_temperature_gives_confidence_that_tracks_separability():
    separable = [[unit(1, 0.01 * i, 0) for i in range(4)], [unit(0.01 * i, 1, 0) for i in range(4)]]
    # The same directions alternately labelled: the labels carry no signal.
    directions = [unit(1, 0.2 * i, 0.1) for i in range(8)]
    noise = [directions[0::2], directions[1::2]]
    assert _confidence_at_fitted_temperature(separable) > 0.95
    assert _confidence_at_fitted_temperature(noise) < 0.65


def test_task_validation():
    with pytest.raises(ValueError):
        ClassificationTask("x", [Label("a", "", ("t",))])
    with pytest.raises(ValueError):
        ClassificationTask("x", [Label("a", "", ("t",)), Label("a", "", ("u",))])
    with pytest.raises(ValueError):
        ClassificationTask("x", [Label("a", "", ("t",)), Label("b", "", ())])


def test_unknown_task_error_names_known_tasks():
    with pytest.raises(KeyError, match="telemetry-triage"):
        create_task("nope")
