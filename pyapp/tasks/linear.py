"""Classification by a linear head trained at build time on the encoder's embeddings.

The head (``softmax((W·x + b) / T)``) is learned under CPython by ``models/heads.py`` from a
corpus named in the task's ``TrainingData`` and shipped in the task artifact; here it is only
evaluated, in pure Python, because the browser has no numpy. Labels listed in
``escalate_labels`` (CLINC150's out-of-scope class) are never answered locally.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .. import vectors
from ..backends.base import EncoderBackend
from .base import DEFAULT_THRESHOLD, Prediction, Task
from .classification import label_output_model
from .scope import ScopeDetector


class ArtifactMissingError(RuntimeError):
    """A trained task was loaded without the artifact its build produces."""


@dataclass(frozen=True)
class TrainingData:
    """Where a trained task's examples come from; read only at build time (CPython).

    ``label_of`` maps one JSON-lines record to its label, or None to skip the record.
    ``heldout_percent`` of the records, chosen by a hash of the text (``split_of``), are kept
    out of training so the same file can also evaluate the task; identical texts always land
    on the same side. ``version`` names the recipe: change it when ``label_of`` changes.
    """

    file: str
    label_of: Callable[[dict], str | None]
    version: str
    heldout_percent: int = 0

    def split_of(self, text: str) -> str:
        """``"train"`` or ``"heldout"``: a pure function of the text, stable across runs."""
        bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100
        return "heldout" if bucket < self.heldout_percent else "train"

    def split_of_record(self, record: dict) -> str:
        """The split of one record (by its text here; by template in ``telemetry_labels``)."""
        return self.split_of(record["text"])

    def identity(self) -> list:
        return [self.file, self.version, self.heldout_percent]


@dataclass(frozen=True)
class Head:
    labels: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    temperature: float

    def logits(self, embedding: list[float]) -> list[float]:
        return [vectors.dot(w, embedding) + b for w, b in zip(self.weights, self.bias, strict=True)]

    def probabilities(self, embedding: list[float]) -> list[float]:
        t = self.temperature
        return vectors.softmax([v / t for v in self.logits(embedding)])


class LinearHeadTask(Task):
    """
    >>> data = TrainingData("clinc150/train.jsonl", lambda r: r["label"], "v1")
    >>> task = LinearHeadTask("demo", ("a", "b"), data)
    >>> sorted(task.output_model.model_json_schema()["properties"])
    ['confidence', 'label', 'scores']
    """

    kind = "classification"

    def __init__(
        self,
        name: str,
        labels: tuple[str, ...],
        training: TrainingData,
        description: str = "",
        threshold: float = DEFAULT_THRESHOLD,
        escalate_labels: frozenset[str] = frozenset(),
        encoder: str | None = None,
    ):
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError("a classification task needs at least two distinct labels")
        self.name = name
        self.labels = tuple(labels)
        self.training = training
        self.description = description
        self.threshold = threshold
        self.escalate_labels = frozenset(escalate_labels)
        self.encoder = encoder
        self._output_model = label_output_model(name, self.labels)
        self._head: Head | None = None
        self._scope: ScopeDetector | None = None
        self._artifact: dict | None = None

    @property
    def output_model(self) -> type[BaseModel]:
        return self._output_model

    def content_key(self, model_key: str) -> str:
        payload = json.dumps([model_key, self.name, list(self.labels), self.training.identity()])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    async def load(self, encoder: EncoderBackend, artifact: dict | None = None) -> None:
        key = self.content_key(encoder.model_key)
        if artifact is None or artifact.get("key") != key:
            raise ArtifactMissingError(
                f"task {self.name!r} has no trained head for this model "
                f"(artifact key {key[:12]}): run `edge-triage models build`"
            )
        self.load_artifact(artifact)

    def load_artifact(self, artifact: dict) -> None:
        if tuple(artifact["labels"]) != self.labels:
            raise ValueError(f"artifact labels do not match task {self.name!r}")
        self._head = Head(
            self.labels,
            tuple(tuple(row) for row in artifact["weights"]),
            tuple(artifact["bias"]),
            float(artifact["temperature"]),
        )
        # Tasks with an out-of-scope label ship a scope detector and two thresholds fitted on
        # held-out training data (models/scope.py); the intent threshold replaces the default.
        self._scope = ScopeDetector.from_artifact(artifact["scope"]) if "scope" in artifact else None
        if self._scope is not None and artifact["scope"].get("intent_threshold") is not None:
            self.threshold = float(artifact["scope"]["intent_threshold"])
        self._artifact = artifact

    @property
    def training_info(self) -> dict:
        """What the build recorded about training (data file hash, CV results); {} if unloaded."""
        return (self._artifact or {}).get("training", {})

    def artifact(self, model_key: str) -> dict:
        if self._artifact is None:
            raise RuntimeError(f"task {self.name!r} is not loaded")
        return self._artifact

    async def predict(self, text: str, encoder: EncoderBackend) -> Prediction:
        if self._head is None:
            raise RuntimeError(f"task {self.name!r} is not loaded")
        embedding, truncated, notices = await encoder.embed_input(text)
        logits = self._head.logits(embedding)
        probs = vectors.softmax([v / self._head.temperature for v in logits])
        best = max(range(len(probs)), key=probs.__getitem__)
        label = self.labels[best]
        output = self._output_model(
            label=label, confidence=probs[best], scores=dict(zip(self.labels, probs, strict=True))
        )
        extra: dict[str, Any] = {}
        reasons = []
        if label in self.escalate_labels:
            reasons.append(f"label {label!r} is not answered locally")
        elif self._scope is not None:
            # First question: is this any of the task's intents? (the router asks the second)
            score = self._scope.score(embedding, logits, self._head.temperature)
            extra["scope_score"] = score
            if not self._scope.in_scope(score):
                reasons.append(f"scope score {score:.2f} below threshold "
                               f"{self._scope.threshold}: probably out of scope")
        if reasons:
            extra["escalate"] = reasons
        return Prediction(output, probs[best], notices, truncated, extra=extra)

    def probabilities(self, embedding: list[float]) -> list[float]:
        if self._head is None:
            raise RuntimeError(f"task {self.name!r} is not loaded")
        return self._head.probabilities(embedding)


def rounded(value, digits: int = 6):
    """``value`` (nested lists/dicts of floats) with floats to ``digits`` significant digits and
    NaN/±inf as None, so the JSON stays small and parseable by the browser's ``JSON.parse``."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def head_artifact(task: LinearHeadTask, model_key: str, weights, bias, temperature: float,
                  training: dict, digits: int = 6) -> dict:
    """The JSON artifact for a trained head; floats rounded to ``digits`` significant digits
    (the rounding error, ~1e-6 relative, is far below what changes a probability)."""

    def r(x: float) -> float:
        return float(f"{x:.{digits}g}")

    return {
        "task": task.name,
        "key": task.content_key(model_key),
        "kind": "linear-head",
        "labels": list(task.labels),
        "weights": [[r(v) for v in row] for row in weights],
        "bias": [r(v) for v in bias],
        "temperature": r(temperature),
        "training": training,
    }
