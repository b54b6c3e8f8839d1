"""Deciding whether the local answer stands or the case is escalated. Pure: no I/O, no platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .tasks.base import Prediction

Route = Literal["local", "escalated"]


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConfidenceRouter:
    """Escalate when the model is unsure, its output is invalid, the input was cut, or the
    task asked for it (``prediction.extra["escalate"]``: a list of reasons).

    >>> from pydantic import BaseModel
    >>> class Out(BaseModel): label: str
    >>> ConfidenceRouter(0.85).decide(Prediction(Out(label="x"), 0.6)).route
    'escalated'
    """

    threshold: float = 0.85
    escalate_truncated: bool = True

    def decide(self, prediction: Prediction) -> RouteDecision:
        reasons: list[str] = []
        if not prediction.valid:
            reasons.append("invalid output")
        if prediction.confidence < self.threshold:
            reasons.append(
                f"confidence {prediction.confidence:.3f} below threshold {self.threshold:.2f}"
            )
        if self.escalate_truncated and prediction.truncated:
            reasons.append("input was truncated")
        # A task may ask for escalation whatever its confidence (e.g. an out-of-scope label).
        reasons.extend(prediction.extra.get("escalate", ()))
        return RouteDecision("escalated" if reasons else "local", reasons)
