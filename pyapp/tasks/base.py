"""What every task shares: a name, a pydantic output model and a routing threshold."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..backends.base import EncoderBackend

DEFAULT_THRESHOLD = 0.85


@dataclass
class Prediction:
    """A task's answer before routing: the validated output and how sure the model is."""

    output: BaseModel
    confidence: float
    notices: list[str] = field(default_factory=list)
    truncated: bool = False
    valid: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    name: str
    kind: str
    description: str = ""
    threshold: float = DEFAULT_THRESHOLD
    #: Name of the encoder model the task runs on (a manifest ``name``); None: the base encoder.
    #: A pack with a fine-tuned encoder (``clinc150-intent``) names it; the page loads it only
    #: when such a task is first run.
    encoder: str | None = None

    @property
    @abstractmethod
    def output_model(self) -> type[BaseModel]:
        """The pydantic model every output of this task validates against."""

    @abstractmethod
    async def load(self, encoder: EncoderBackend, artifact: dict | None = None) -> None:
        """Prepare everything that does not depend on the input (compile once).

        ``artifact`` is what ``artifact()`` returned at build time; used when its key matches.
        """

    def artifact(self, model_key: str) -> dict | None:
        """Build-time state worth shipping to the browser (None: nothing to ship)."""
        return None

    @abstractmethod
    async def predict(self, text: str, encoder: EncoderBackend) -> Prediction:
        """Answer for one cleaned input text."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "threshold": self.threshold,
            "schema": self.output_model.model_json_schema(),
        }
