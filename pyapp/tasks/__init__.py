"""The task registry: task name → factory. One plain mapping, read by CLI, server and browser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from .base import DEFAULT_THRESHOLD, Prediction, Task
from .classification import ClassificationTask, Label
from .hybrid import telemetry_extract
from .clinc import clinc150_intent
from .linear import ArtifactMissingError, LinearHeadTask, TrainingData
from .loghub import loghub_anomaly, loghub_system
from .loghub_fields import loghub_fields
from .telemetry import telemetry_triage
from .telemetry_labels import telemetry_category, telemetry_component_kind, telemetry_severity

TASKS: Mapping[str, Callable[[], Task]] = MappingProxyType(
    {
        "telemetry-triage": telemetry_triage,
        "clinc150-intent": clinc150_intent,
        "loghub-system": loghub_system,
        "loghub-anomaly": loghub_anomaly,
        "telemetry-category": telemetry_category,
        "telemetry-severity": telemetry_severity,
        "telemetry-component-kind": telemetry_component_kind,
        "telemetry-extract": telemetry_extract,
        "loghub-fields": loghub_fields,
    }
)


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return f"Unknown task {self.args[0]!r}; known tasks: {', '.join(sorted(TASKS))}."


def create_task(name: str) -> Task:
    try:
        factory = TASKS[name]
    except KeyError:
        raise UnknownTaskError(name) from None
    return factory()


__all__ = [
    "DEFAULT_THRESHOLD",
    "ArtifactMissingError",
    "LinearHeadTask",
    "TrainingData",
    "TASKS",
    "ClassificationTask",
    "Label",
    "Prediction",
    "Task",
    "UnknownTaskError",
    "create_task",
]
