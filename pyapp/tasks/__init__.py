"""The task registry: task name → factory. One plain mapping, read by CLI, server and browser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from .base import DEFAULT_THRESHOLD, Prediction, Task
from .classification import ClassificationTask, Label
from .linear import ArtifactMissingError, LinearHeadTask, TrainingData


# Each factory imports its task's module on first use: a page that only classifies never imports
# the extraction tasks (the language model's prompt, grammar and decode loop), which under
# Pyodide is a large part of the boot before the first result. Plain functions with their import
# inside, so the import graph (tests/test_layout.py) still sees every edge.
def _telemetry_triage() -> Task:
    from .telemetry import telemetry_triage
    return telemetry_triage()


def _clinc150_intent() -> Task:
    from .clinc import clinc150_intent
    return clinc150_intent()


def _loghub_system() -> Task:
    from .loghub import loghub_system
    return loghub_system()


def _loghub_anomaly() -> Task:
    from .loghub import loghub_anomaly
    return loghub_anomaly()


def _telemetry_category() -> Task:
    from .telemetry_labels import telemetry_category
    return telemetry_category()


def _telemetry_severity() -> Task:
    from .telemetry_labels import telemetry_severity
    return telemetry_severity()


def _telemetry_component_kind() -> Task:
    from .telemetry_labels import telemetry_component_kind
    return telemetry_component_kind()


def _telemetry_extract() -> Task:
    from .hybrid import telemetry_extract
    return telemetry_extract()


def _loghub_fields() -> Task:
    from .loghub_fields import loghub_fields
    return loghub_fields()


TASKS: Mapping[str, Callable[[], Task]] = MappingProxyType(
    {
        "telemetry-triage": _telemetry_triage,
        "clinc150-intent": _clinc150_intent,
        "loghub-system": _loghub_system,
        "loghub-anomaly": _loghub_anomaly,
        "telemetry-category": _telemetry_category,
        "telemetry-severity": _telemetry_severity,
        "telemetry-component-kind": _telemetry_component_kind,
        "telemetry-extract": _telemetry_extract,
        "loghub-fields": _loghub_fields,
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
