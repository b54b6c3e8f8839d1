"""Classification by nearest label prototype in the encoder's embedding space.

Each label's prototype is the normalised mean embedding of its example texts. Scores are cosine
similarities turned into probabilities by a softmax whose temperature is fitted on the examples
themselves (leave-one-out), so ``confidence`` means something a router can threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, create_model

from .. import vectors
from ..backends.base import EncoderBackend
from .base import DEFAULT_THRESHOLD, Prediction, Task

_BATCH = 16


@dataclass(frozen=True)
class Label:
    name: str
    description: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Prototypes:
    labels: tuple[str, ...]
    vectors: tuple[tuple[float, ...], ...]
    temperature: float


# Prototypes are a pure function of (model, labels); both are content-keyed, so a process that
# loads the same task twice (tests, several engines) embeds the examples once.
_PROTOTYPE_CACHE: dict[str, Prototypes] = {}


def label_output_model(task_name: str, labels: tuple[str, ...]) -> type[BaseModel]:
    """The output every classification task returns: one of its labels, a confidence in [0, 1]
    and the probability of each label."""
    return create_model(
        f"{task_name.title().replace('-', '')}Output",
        label=(Literal[labels], ...),
        confidence=(float, Field(ge=0.0, le=1.0)),
        scores=(dict[str, float], ...),
    )


class ClassificationTask(Task):
    """
    >>> task = ClassificationTask("demo", [Label("a", "A", ("x",)), Label("b", "B", ("y",))])
    >>> sorted(task.output_model.model_json_schema()["properties"])
    ['confidence', 'label', 'scores']
    """

    kind = "classification"

    def __init__(
        self,
        name: str,
        labels: list[Label],
        description: str = "",
        threshold: float = DEFAULT_THRESHOLD,
    ):
        if len(labels) < 2:
            raise ValueError("a classification task needs at least two labels")
        if len({label.name for label in labels}) != len(labels):
            raise ValueError("label names must be unique")
        for label in labels:
            if not label.examples:
                raise ValueError(f"label {label.name!r} has no example texts")
        self.name = name
        self.labels = labels
        self.description = description
        self.threshold = threshold
        self._output_model = label_output_model(name, tuple(label.name for label in labels))
        self._prototypes: Prototypes | None = None

    @property
    def output_model(self) -> type[BaseModel]:
        return self._output_model

    def content_key(self, model_key: str) -> str:
        payload = json.dumps(
            [model_key, [(lb.name, lb.examples) for lb in self.labels]], ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    async def load(self, encoder: EncoderBackend, artifact: dict | None = None) -> None:
        key = self.content_key(encoder.model_key)
        cached = _PROTOTYPE_CACHE.get(key)
        if cached is None and artifact is not None and artifact.get("key") == key:
            cached = Prototypes(
                tuple(artifact["labels"]),
                tuple(tuple(v) for v in artifact["vectors"]),
                float(artifact["temperature"]),
            )
        if cached is None:
            cached = await self._build_prototypes(encoder)
        _PROTOTYPE_CACHE[key] = cached
        self._prototypes = cached

    def artifact(self, model_key: str) -> dict:
        """What ``load`` computed, to ship with the build so the browser skips embedding examples.

        The browser computes the same numbers (parity tests hold it to 1e-6); on WebGPU under
        software rendering embedding the examples would take minutes.
        """
        if self._prototypes is None:
            raise RuntimeError(f"task {self.name!r} is not loaded")
        return {
            "task": self.name,
            "key": self.content_key(model_key),
            "labels": list(self._prototypes.labels),
            "vectors": [list(v) for v in self._prototypes.vectors],
            "temperature": self._prototypes.temperature,
        }

    async def _build_prototypes(self, encoder: EncoderBackend) -> Prototypes:
        texts = [ex for label in self.labels for ex in label.examples]
        embedded: list[list[float]] = []
        for start in range(0, len(texts), _BATCH):
            embedded.extend(await encoder.embed(texts[start : start + _BATCH]))
        by_label: list[list[list[float]]] = []
        i = 0
        for label in self.labels:
            by_label.append(embedded[i : i + len(label.examples)])
            i += len(label.examples)
        protos = [vectors.normalize(vectors.mean(vs)) for vs in by_label]
        temperature = fit_temperature(by_label)
        return Prototypes(
            tuple(lb.name for lb in self.labels),
            tuple(tuple(p) for p in protos),
            temperature,
        )

    async def predict(self, text: str, encoder: EncoderBackend) -> Prediction:
        if self._prototypes is None:
            raise RuntimeError(f"task {self.name!r} is not loaded")
        embedding, truncated, notices = await encoder.embed_input(text)
        probs = self.probabilities(embedding)
        best = max(range(len(probs)), key=probs.__getitem__)
        output = self._output_model(
            label=self._prototypes.labels[best],
            confidence=probs[best],
            scores=dict(zip(self._prototypes.labels, probs, strict=True)),
        )
        return Prediction(output, probs[best], notices, truncated)

    def probabilities(self, embedding: list[float]) -> list[float]:
        assert self._prototypes is not None
        t = self._prototypes.temperature
        return vectors.softmax([vectors.dot(embedding, p) / t for p in self._prototypes.vectors])


def fit_temperature(by_label: list[list[list[float]]]) -> float:
    """Temperature minimising leave-one-out negative log-likelihood of the examples.

    Each example is scored against prototypes built without it, so the fit sees the kind of
    similarity an unseen input gets rather than the inflated one of a training point.
    """
    sums = [[math.fsum(col) for col in zip(*vs, strict=True)] for vs in by_label]
    items: list[tuple[list[float], int]] = []
    for li, vs in enumerate(by_label):
        for v in vs:
            sims = []
            for lj, total in enumerate(sums):
                count = len(by_label[lj])
                if lj == li:
                    if count == 1:
                        sims.append(0.0)  # no other example: no evidence for this label
                        continue
                    proto = [s - x for s, x in zip(total, v, strict=True)]
                else:
                    proto = total
                sims.append(vectors.dot(v, vectors.normalize(proto)))
            items.append((sims, li))

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return -math.fsum(vectors.log_softmax_at([s / t for s in sims], li) for sims, li in items)

    # NLL is unimodal in T for this model; search log T over [0.002, 1].
    return math.exp(vectors.golden_section_min(nll, math.log(0.002), 0.0))
