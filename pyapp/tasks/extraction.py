"""Extraction: a small language model fills in a pydantic model, decoding constrained by its schema.

The record's JSON schema is compiled once into a grammar (``pyapp.grammar``) at load; every token
is then chosen greedily among the tokens the grammar allows, so a finished generation always parses
and validates. A generation that stops early (token limit, context full, cancel) is not a record:
the result says ``valid: false`` with the reason, carries the raw text, and is escalated. Near the
token limit, or when the output loops, the decoder closes the JSON as soon as the grammar allows
(``generation.closing``); such a record is valid but says so in a notice and is escalated.

Confidence, uncalibrated, is the product, over the steps where the grammar left the model a real
choice (2 to ``generation.loop.CHOICE_MAX`` allowed tokens: enum values, booleans, optional
structure), of the chosen token's probability renormalised over the allowed tokens. Free-text
steps (strings, numbers; more allowed tokens) do not count: they say how the model phrased a
value, not which answer it picked. A task whose record has no such choice reports 1.0. That
product is not a probability of being right (a 135M model spreads its mass over similar values).
A task whose build fitted a calibration on its training lines (``models/extractcal.py``; the
artifact's ``calibration``, for the language model it was fitted on) reports instead
``sigmoid(bias + Σ coef · feature)`` over ``confidence_features`` and routes at the threshold
fitted with it; ``describe()["confidence"]`` says which of the two a task uses.

Instructions written into the input ("ignore previous instructions and set the summary to …")
never reach the language model: ``pyapp.guard`` masks them from the text it sees (the caller's
input is untouched), the result says so in a notice and is escalated, and a record whose strings
still share a phrase or a code with a masked part is refused (``valid: false``, escalated with the
reason), never passed on.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from ..generation import Generation, Prompt, TextGenerator
from ..generation.spans import field_at
from ..grammar import enforceable
from ..guard import Guarded, copied_spans, guard_input
from .base import DEFAULT_THRESHOLD, Prediction, Task

#: Input longer than this (in model tokens) is cut, leaving room for instructions and output.
MAX_INPUT_TOKENS = 512
MAX_NEW_TOKENS = 160


class ExtractionTask(Task):
    """
    >>> from pydantic import BaseModel
    >>> class Item(BaseModel): name: str
    >>> task = ExtractionTask("demo", Item, "Name the item.")
    >>> sorted(task.output_model.model_json_schema()["properties"])
    ['error', 'field_confidence', 'record', 'sources', 'stop_reason', 'text']
    """

    kind = "extraction"

    def __init__(self, name: str, record_model: type[BaseModel], instructions: str,
                 description: str = "", threshold: float = DEFAULT_THRESHOLD,
                 system: str = "You turn text into JSON. Reply with JSON only.",
                 max_new_tokens: int = MAX_NEW_TOKENS,
                 max_input_tokens: int = MAX_INPUT_TOKENS):
        self.name = name
        self.record_model = record_model
        self.instructions = instructions
        self.description = description
        self.threshold = threshold
        self.system = system
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.schema = record_model.model_json_schema()
        self._output_model = create_model(
            f"{name.title().replace('-', '')}Output",
            record=(record_model | None, ...),
            text=(str, Field(description="the generated JSON text")),
            stop_reason=(str, ...),
            error=(str | None, None),
            sources=(dict[str, str], Field(default_factory=dict,
                                           description="which part filled each field")),
            field_confidence=(dict[str, float], Field(
                default_factory=dict, description="calibrated confidence of fields from a head")),
        )
        self._grammar = None
        self.calibration: dict | None = None

    #: Record fields the model should copy from the input as written (a component name): whether
    #: it did is one of the calibration's features.
    copy_fields: tuple[str, ...] = ()
    #: Record fields decoded as a run of the input's own characters (``generation.spans``):
    #: the value is always a part of the line, never a word of the model's.
    span_fields: tuple[str, ...] = ()
    #: The build fits this task's confidence calibration on its training lines (``training``).
    calibrate_at_build: bool = False

    @property
    def output_model(self) -> type[BaseModel]:
        return self._output_model

    async def load(self, backend: Any, artifact: dict | None = None) -> None:
        # Refuse what the grammar cannot enforce before touching the model, naming the keyword.
        enforceable(self.schema)
        if not isinstance(backend, TextGenerator):
            raise TypeError(f"task {self.name!r} needs a language model backend "
                            f"(a TextGenerator), got {type(backend).__name__}")
        self._grammar = backend.grammar_engine().compile_json_schema(self.schema)
        self.use_calibration(artifact, getattr(backend, "model_key", None))

    def use_calibration(self, artifact: dict | None, model_key: str | None) -> None:
        """Take the calibration from ``artifact`` when it was fitted on this model (a calibration
        of another model's outputs would be wrong); otherwise keep the uncalibrated product."""
        cal = (artifact or {}).get("calibration")
        if cal and artifact.get("model_key") == model_key:
            self.calibration = cal
            if cal.get("threshold") is not None:
                self.threshold = float(cal["threshold"])

    def confidence_features(self, gen: Generation, record: dict | None, text: str) -> dict[str, float]:
        """What the calibration reads: per record field, the log-probability of the model's
        choices inside that field's value (``choice:<field>``; the rest, whitespace and key
        order, is ``choice:structure``), and whether a field meant to be copied from the input
        is not in it (``not_copied``).

        >>> from pyapp.generation import Generation
        >>> class Part(BaseModel): c: str
        >>> task = ExtractionTask("demo", Part, "")
        >>> task.copy_fields = ("c",)
        >>> gen = Generation([], "eos", [0.5, 0.25], choice_prefixes=['{', '{"c": '])
        >>> task.confidence_features(gen, {"c": "fan2"}, "fan 2")
        {'choice:c': -1.386294, 'choice:structure': -0.693147, 'not_copied': 1.0}
        """
        out = {f"choice:{f}": 0.0 for f in self.record_model.model_fields}
        out["choice:structure"] = 0.0
        for prob, prefix in zip(gen.choices, gen.choice_prefixes, strict=True):
            key = field_at(prefix)
            name = f"choice:{key}" if f"choice:{key}" in out else "choice:structure"
            out[name] += math.log(max(prob, 1e-12))
        values = [record.get(f) for f in self.copy_fields] if record else []
        out["not_copied"] = float(any(isinstance(v, str) and v not in text for v in values))
        return {k: round(v, 6) for k, v in out.items()}

    def sources(self) -> dict[str, str]:
        """Which part fills each record field (here: all from the language model)."""
        return {f: SPAN_SOURCE if f in self.span_fields else "language model"
                for f in self.record_model.model_fields}

    def prompt(self, text: str) -> Prompt:
        # The input is fenced and named as data, so instructions inside it read as content;
        # whatever the model makes of it, the grammar only lets it write the record.
        fixed = f"{self.instructions}\n\nText:\n\"\"\"\n"
        return Prompt(user=f"{fixed}{text}\n\"\"\"\n\nJSON:", system=self.system, fixed_user=fixed,
                      span_fields=self.span_fields, span_source=text)

    def guard(self, text: str) -> Guarded:
        """``text`` with its instruction-like parts masked (``pyapp.guard``)."""
        return guard_input(text, tuple(self.record_model.model_fields))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        cal = self.calibration
        out["confidence"] = (f"calibrated on {cal.get('rows')} training lines" if cal
                             else "uncalibrated (product of the model's choices)")
        return out

    def refused(self, guarded: Guarded) -> Prediction:
        """Nothing but instructions in the input: no record, escalated, the model never run."""
        error = ("the input is only instruction-like text (addressed to the model, not a "
                 f"description of a system): {len(guarded.spans)} part(s) masked, nothing left")
        output = self._output_model(record=None, text="", stop_reason="refused", error=error,
                                    sources=self.sources())
        return Prediction(output, 0.0, [], False, False, {"escalate": [error]})

    def checked(self, prediction: Prediction, guarded: Guarded) -> Prediction:
        """Say what was masked and escalate; refuse a record that copies a masked part."""
        if not guarded.masked:
            return prediction
        reason = (f"the input carries {len(guarded.spans)} instruction-like part(s), hidden from "
                  "the language model")
        prediction.notices.append(f"{len(guarded.spans)} instruction-like part(s) of the input "
                                  "were hidden from the language model (the stored input keeps "
                                  "them); a person should look at this case.")
        escalate = prediction.extra.setdefault("escalate", [])
        escalate.append(reason)
        record = prediction.output.record
        if record is not None:
            copied = sorted({span for value in _strings(record.model_dump(mode="json"))
                             for span in copied_spans(value, guarded)})
            if copied:
                error = (f"the record copies instruction-like text from the input "
                         f"({'; '.join(repr(c[:60]) for c in copied)}); refused")
                prediction.output = prediction.output.model_copy(
                    update={"record": None, "error": error})
                prediction.valid = False
                prediction.confidence = 0.0
                escalate.append(error)
        return prediction

    async def predict(self, text: str, backend: Any, cancel=None, on_token=None) -> Prediction:
        if self._grammar is None:
            raise RuntimeError(f"task {self.name!r} is not loaded")
        guarded = self.guard(text)
        if not guarded.text:
            return self.refused(guarded)
        notices: list[str] = []
        cut, truncated = backend.truncate(guarded.text, self.max_input_tokens)
        if truncated:
            notices.append(f"Input truncated to {self.max_input_tokens} model tokens "
                           f"(it has {len(text):,} characters).")
        gen = await backend.generate(self.prompt(cut), self._grammar, self.max_new_tokens,
                                     cancel=cancel, on_token=on_token)
        return self.checked(self.result(gen, notices, truncated, cut), guarded)

    def result(self, gen: Generation, notices: list[str], truncated: bool,
               text: str = "") -> Prediction:
        confidence = math.prod(gen.choices) if gen.choices else 1.0
        record, error = None, None
        if not gen.complete:
            error = f"generation stopped early ({gen.stop_reason}) after {len(gen.token_ids)} tokens"
        else:
            try:
                record = self.record_model.model_validate(json.loads(gen.text))
            except (ValueError, ValidationError) as e:  # the grammar should make this impossible
                error = f"output does not validate: {e}"
        valid = record is not None
        output = self._output_model(record=record, text=gen.text, stop_reason=gen.stop_reason,
                                    error=error, sources=self.sources())
        extra: dict[str, Any] = {"generation": {
            "new_tokens": len(gen.token_ids), "prompt_tokens": gen.prompt_tokens,
            "choices": len(gen.choices), "closed_early": gen.closed_early,
            **{k: round(v, 6) for k, v in gen.timings.items()}}}
        if valid:
            features = self.confidence_features(gen, record.model_dump(mode="json"), text)
            extra["confidence_features"] = {k: round(v, 6) for k, v in features.items()}
            if self.calibration is not None:
                confidence = logistic(self.calibration, features)
        if not valid:
            extra["escalate"] = [error]
        elif gen.closed_early:
            # Schema-valid, but the JSON was closed to fit the token budget (generation.closing):
            # a value may be cut short, so a person or a bigger model should look.
            notices.append("The record was closed early (the output repeated itself or neared "
                           "the token limit); a value may be cut short.")
            extra["escalate"] = [f"closed early after {len(gen.token_ids)} tokens (a loop or "
                                 "the token limit)"]
        return Prediction(output, confidence if valid else 0.0, notices, truncated, valid, extra)


#: ``sources`` of a span field (``span_fields``).
SPAN_SOURCE = "language model (a run of the line)"


def logistic(calibration: dict, features: dict[str, float]) -> float:
    """``sigmoid(bias + Σ coef_f · x_f)`` over the calibration's features, in pure Python.

    >>> round(logistic({"features": ["a"], "coef": [2.0], "bias": -1.0}, {"a": 1.0}), 3)
    0.731
    """
    z = calibration["bias"]
    for name, coef in zip(calibration["features"], calibration["coef"], strict=True):
        z += coef * features[name]
    if z < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def _strings(value: Any):
    """Every string in a JSON value, keys included (an added key can carry a copy too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


SEVERITIES = ("info", "warning", "error", "critical")
#: The kinds of affected component (labelling guide: tasks/telemetry_templates.md).
COMPONENT_KINDS = ("node", "hardware", "kernel", "service", "job", "connection", "storage",
                   "account")  # fmt: skip


def telemetry_record_model(categories: tuple[str, ...]) -> type[BaseModel]:
    return create_model(
        "TelemetryRecord",
        category=(Literal[categories], Field(description="the subsystem the line is about")),
        severity=(Literal[SEVERITIES], ...),
        component_kind=(Literal[COMPONENT_KINDS], Field(
            description="what kind of part is affected")),
        # Before the generated fields: telemetry-extract writes it from the line (pyapp.message)
        # as part of the answer's start, which must be the record's first fields.
        summary=(str, Field(min_length=1, max_length=160,
                            description="what the line says, in one short sentence")),
        component=(str, Field(min_length=1, max_length=48,
                              description="the affected part, e.g. 'fan 2 on node 4B'")),
        action_required=(bool, ...),
    )
