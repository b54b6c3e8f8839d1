"""The task registry: task name → factory. One plain mapping, read by CLI, server and browser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from .base import DEFAULT_THRESHOLD, Prediction, Task
from .classification import ClassificationTask, Label
from .extraction import telemetry_extract
from .telemetry import telemetry_triage

TASKS: Mapping[str, Callable[[], Task]] = MappingProxyType(
    {
        "telemetry-triage": telemetry_triage,
        "telemetry-extract": telemetry_extract,
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
    "TASKS",
    "ClassificationTask",
    "Label",
    "Prediction",
    "Task",
    "UnknownTaskError",
    "create_task",
]
