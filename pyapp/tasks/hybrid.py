"""Extraction where each field comes from the part that does it best.

A ``HybridExtractionTask`` names, per closed-set field, the classification head that fills it
(``field_heads``: field → task name, e.g. ``category`` → ``telemetry-category``); the language
model fills the rest (free text such as a component name or a summary). At run time the heads
answer first, and their labels are written as the start of the language model's answer
(``Prompt.answer_start``: ``{"category":"power",…,``, accepted by the task's grammar like any
output), so the generated fields are conditioned on them and the record always validates. The
grammar is the task's own, compiled once: narrowing it to each record's head values (one enum
value per field) meant compiling a new grammar for every new combination, ~4 s in the page.
The result says which part filled each field (``output.sources``) and each head field's
confidence (``output.field_confidence``).

A field may also come from the line itself (``line_fields``: field → a ``LINE_SOURCES`` name):
telemetry-extract's ``summary`` is the line's message (``pyapp.message``), written into the
answer's start after the heads' values, so the model writes only ``component`` and
``action_required``, conditioned on both. Chosen by reading the 135M model's own summaries line
by line: few were about their line (README "Extraction").

Confidence: the record's confidence is the probability that every head field is right, from a
logistic calibration of the heads' log-probabilities fitted at build time on template-grouped
held-out predictions of the training split (``models/fieldheads.py``), and the routing threshold
is the one fitted there, as for the classifiers. Both travel in the heads' artifacts
(``training.record_calibration``). Without attached heads (an engine with only a language model)
the task falls back to the language model for every field, as ``ExtractionTask`` does, and says so.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from typing import Any

from ..message import line_message
from .base import Prediction
from .extraction import (COMPONENT_KINDS, SEVERITIES, ExtractionTask, logistic,
                         telemetry_record_model)


def calibrated(calibration: dict, confidences: dict[str, float]) -> float:
    """``sigmoid(bias + Σ coef_f · log p_f)`` over the head fields, in pure Python.

    >>> round(calibrated({"fields": ["a"], "coef": [1.0], "bias": 0.0}, {"a": 0.5}), 3)
    0.333
    """
    logs = {f: math.log(max(confidences[f], 1e-12)) for f in calibration["fields"]}
    return logistic({**calibration, "features": calibration["fields"]}, logs)


#: What a ``line_fields`` entry may name: a function of the (guarded) input text, and how
#: ``output.sources`` names it.
LINE_SOURCES = {"message": (line_message, "the line's message (its header removed)")}


class HybridExtractionTask(ExtractionTask):
    def __init__(self, *args, field_heads: dict[str, str],
                 line_fields: dict[str, str] | None = None, span_fields: tuple[str, ...] = (),
                 **kwargs):
        super().__init__(*args, **kwargs)
        line_fields = dict(line_fields or {})
        model_fields = self.record_model.model_fields
        fields = list(model_fields)
        unknown = (set(field_heads) | set(line_fields) | set(span_fields)) - set(fields)
        if unknown:
            raise ValueError(f"field_heads / line_fields / span_fields name fields the record "
                             f"does not have: {sorted(unknown)}")
        if set(line_fields.values()) - set(LINE_SOURCES):
            raise ValueError(f"line_fields: unknown source(s), known: {sorted(LINE_SOURCES)}")
        # A span field is a string the language model writes (generation.spans).
        not_written = [f for f in span_fields if f in field_heads or f in line_fields
                       or model_fields[f].annotation is not str]
        if not_written:
            raise ValueError(f"span_fields must be string fields the language model writes: "
                             f"{not_written}")
        self.field_heads = dict(field_heads)
        self.line_fields = line_fields
        self.span_fields = tuple(span_fields)
        if fields[:len(self.fixed_fields)] != self.fixed_fields:
            raise ValueError("field_heads, then line_fields, must be the record's first fields "
                             "in its order (their values are written as the start of the answer)")
        self._heads: dict[str, tuple[Any, Any]] = {}
        self._calibration: dict | None = None

    def attach_heads(self, tasks: dict[str, Any], backend: Any) -> list[str]:
        """Use the loaded classification ``tasks`` (on the encoder ``backend``) for the fields
        they fill. Returns the fields still left to the language model (heads not loaded)."""
        self._heads = {f: (tasks[name], backend) for f, name in self.field_heads.items()
                       if name in tasks}
        self._calibration = None
        if len(self._heads) == len(self.field_heads):
            info = getattr(tasks[next(iter(self.field_heads.values()))], "training_info", {})
            cal = info.get("record_calibration")
            # The calibration names the heads (task names), as models/fieldheads.py fits it.
            if cal and sorted(cal["fields"]) == sorted(self.field_heads.values()):
                self._calibration = cal
                if cal.get("threshold") is not None:
                    self.threshold = float(cal["threshold"])
        return [f for f in self.field_heads if f not in self._heads]

    @property
    def training_info(self) -> dict:
        """The heads' training record (data file hash, split): eval scores only held-out lines."""
        if not self._heads:
            return {}
        task, _ = next(iter(self._heads.values()))
        return getattr(task, "training_info", {})

    @property
    def training(self):
        """The gold records and their split, for evaluation (``telemetry_labels``)."""
        from .telemetry_labels import field_training

        return field_training(None)

    @property
    def fixed_fields(self) -> list[str]:
        """The fields written before the language model runs, in record order."""
        return list(self.field_heads) + list(self.line_fields)

    def sources(self) -> dict[str, str]:
        out = super().sources()
        for field, (task, _) in self._heads.items():
            out[field] = f"{task.name} (encoder head)"
        if self._heads:  # without heads the language model writes every field (predict)
            for field, source in self.line_fields.items():
                out[field] = LINE_SOURCES[source][1]
        return out

    def narrowed_schema(self, fixed: dict[str, str]) -> dict:
        """The schema with each fixed field's enum narrowed to its value: how a plain library
        (the bench's wllama) is given the heads' values; the engine uses ``answer_start``."""
        schema = copy.deepcopy(self.schema)
        for field, value in fixed.items():
            schema["properties"][field]["enum"] = [value]
        return schema

    def answer_start(self, fixed: dict[str, str]) -> str:
        """The record's opening with the heads' values, as the grammar writes JSON (no spaces).

        >>> telemetry_extract().answer_start(
        ...     {"category": "power", "severity": "error", "component_kind": "hardware"})
        '{"category":"power","severity":"error","component_kind":"hardware",'
        """
        fields = list(self.record_model.model_fields)[:len(fixed)]
        return json.dumps({f: fixed[f] for f in fields}, separators=(",", ":"),
                          ensure_ascii=False)[:-1] + ","

    async def predict(self, text: str, backend: Any, cancel=None, on_token=None) -> Prediction:
        if not self._heads:
            prediction = await super().predict(text, backend, cancel, on_token)
            prediction.notices.append("No encoder heads loaded: the language model filled "
                                      "every field.")
            return prediction
        # Instructions in the input are masked from both parts (ExtractionTask.guard): they are
        # not telemetry, for the heads either. Text without any is passed on unchanged.
        guarded = self.guard(text)
        if not guarded.text:
            return self.refused(guarded)
        text = guarded.text
        fixed: dict[str, str] = {}
        confidence: dict[str, float] = {}
        # The heads share one encoder: one embedding of the text serves them all (not one
        # encoder pass per field).
        _, encoder = next(iter(self._heads.values()))
        embedding, _, _ = await encoder.embed_input(text)
        for field, (task, _) in self._heads.items():
            probs = task.probabilities(embedding)
            best = max(range(len(probs)), key=probs.__getitem__)
            fixed[field] = task.labels[best]
            confidence[field] = float(probs[best])
        for field, source in self.line_fields.items():
            # Empty only for a line without words; the language model then writes the field.
            if value := LINE_SOURCES[source][0](text):
                fixed[field] = value
        engine = backend.grammar_engine()
        if hasattr(engine, "prepare"):  # the browser's engine compiles asynchronously, ahead
            await engine.prepare(self.schema)  # at task load: a no-op here
        grammar = engine.compile_json_schema(self.schema)
        notices: list[str] = []
        cut, truncated = backend.truncate(text, self.max_input_tokens)
        if truncated:
            notices.append(f"Input truncated to {self.max_input_tokens} model tokens "
                           f"(it has {len(text):,} characters).")
        prompt = replace(self.prompt(cut), answer_start=self.answer_start(fixed))
        gen = await backend.generate(prompt, grammar, self.max_new_tokens,
                                     cancel=cancel, on_token=on_token)
        prediction = self.result(gen, notices, truncated, cut)
        prediction.output.field_confidence = {f: round(c, 6) for f, c in confidence.items()}
        if prediction.valid:
            by_head = {self.field_heads[f]: c for f, c in confidence.items()}
            prediction.confidence = (calibrated(self._calibration, by_head)
                                     if self._calibration else math.prod(confidence.values()))
        prediction.extra["heads"] = {f: [fixed[f], round(c, 6)] for f, c in confidence.items()}
        return self.checked(prediction, guarded)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["sources"] = self.sources()
        return out


# telemetry-extract is defined here, beside the hybrid task it is (extraction.py would otherwise
# import this module, which imports it).
#: Which encoder head fills each closed-set field of telemetry-extract (chosen by measurement on
#: the labelled Loghub templates, README "Extraction"); the language model writes the rest.
TELEMETRY_FIELD_HEADS = {"category": "telemetry-category", "severity": "telemetry-severity",
                         "component_kind": "telemetry-component-kind"}
#: Fields taken from the line itself: SmolLM2-135M's summaries were about their line in few of
#: 40 dev lines read one by one; the line's message is right by construction (README "Extraction").
TELEMETRY_LINE_FIELDS = {"summary": "message"}
#: Fields the language model copies from the line (``ExtractionTask.span_fields``): asked for
#: "the affected part, as the line names it", SmolLM2-135M wrote a kind word of its own
#: ("node", "storage") for half of 60 dev lines (README "Extraction").
TELEMETRY_SPAN_FIELDS = ("component",)


def telemetry_extract() -> ExtractionTask:
    from .telemetry import LABELS

    categories = tuple(label.name for label in LABELS)
    instructions = (
        "Read the telemetry line below and fill in a JSON object with: category (one of "
        f"{', '.join(categories)}), severity ({', '.join(SEVERITIES)}), component_kind (one of "
        f"{', '.join(COMPONENT_KINDS)}), summary (what the line says), component (the affected "
        "part, as the line names it) and action_required (true if someone must act)."
    )
    return HybridExtractionTask(
        "telemetry-extract",
        telemetry_record_model(categories),
        instructions,
        description="Structured fields of a telemetry line: closed-set fields from encoder "
                    "heads, the summary from the line's message, component and action from a "
                    "small language model.",
        system="You are a careful assistant that extracts fields from telemetry into JSON.",
        field_heads=TELEMETRY_FIELD_HEADS,
        line_fields=TELEMETRY_LINE_FIELDS,
        span_fields=TELEMETRY_SPAN_FIELDS,
    )
