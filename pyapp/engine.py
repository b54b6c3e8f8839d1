"""The engine: tasks + a backend → results in the shape the page, the JS API and the CLI return."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .backends.base import EncoderBackend
from .router import ConfidenceRouter
from .tasks import Task, create_task
from .textinput import InputError, clean

if TYPE_CHECKING:  # the decode loop is imported only where a language model runs
    from .generation import TextGenerator

Progress = Callable[[str, float], None]


class Engine:
    """Runs tasks on one backend: an encoder (classification) or a text generator (extraction).

    >>> engine = Engine(OnnxEncoder.from_dir(model_dir))          # doctest: +SKIP
    >>> await engine.load(["telemetry-triage"])                     # doctest: +SKIP
    >>> (await engine.run("telemetry-triage", "Fan 3 stalled"))["output"]["label"]  # doctest: +SKIP
    'mechanical'
    """

    def __init__(self, backend: EncoderBackend | TextGenerator,
                 clock: Callable[[], float] = time.perf_counter):
        self.backend = backend
        self._clock = clock
        self.tasks: dict[str, Task] = {}

    async def load(
        self,
        names: list[str],
        progress: Progress | None = None,
        artifacts: dict[str, dict] | None = None,
    ) -> None:
        for i, name in enumerate(names):
            if progress:
                progress(f"Preparing task {name}", i / max(1, len(names)))
            task = create_task(name)
            await task.load(self.backend, (artifacts or {}).get(name))
            self.tasks[name] = task
        if progress:
            progress("Ready", 1.0)

    def backend_for(self, name: str) -> EncoderBackend | TextGenerator:
        """The backend ``name`` runs on (one backend here; ``EngineGroup`` has several)."""
        return self.backend

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            # Raises UnknownTaskError for names that do not exist at all.
            create_task(name)
            raise KeyError(f"Task {name!r} is not loaded")
        return self.tasks[name]

    async def run(self, task_name: str, text: Any,
                  cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
        """``cancel`` (polled before each generated token) reaches tasks that generate."""
        started = self._clock()
        task = self.task(task_name)
        cleaned = clean(text)
        infer_start = self._clock()
        if cancel is not None and task.kind == "extraction":
            prediction = await task.predict(cleaned.text, self.backend, cancel=cancel)
        else:
            prediction = await task.predict(cleaned.text, self.backend)
        inference_ms = (self._clock() - infer_start) * 1000
        # Revalidate: whatever a task built, what leaves the engine matches its schema.
        output = task.output_model.model_validate(prediction.output.model_dump())
        decision = ConfidenceRouter(task.threshold).decide(prediction)
        return {
            "task": task.name,
            "output": output.model_dump(mode="json"),
            "confidence": prediction.confidence,
            "route": decision.route,
            "reasons": decision.reasons,
            "valid": prediction.valid,
            "truncated": prediction.truncated,
            "notices": cleaned.notices + prediction.notices,
            "backend": self.backend.name,
            "threads": self.backend.threads,
            "timings_ms": {
                "total": (self._clock() - started) * 1000,
                "inference": inference_ms,
            },
        }


class EngineGroup:
    """Engines on different models (encoder, language model) behind one ``run``: each task goes
    to the engine that loaded it.

    >>> group = EngineGroup([classification_engine, extraction_engine])   # doctest: +SKIP
    >>> await group.run("telemetry-extract", "Fan 2 stalled")             # doctest: +SKIP
    """

    def __init__(self, engines: list[Engine]):
        self.engines = engines
        self.tasks = {name: task for engine in engines for name, task in engine.tasks.items()}
        attach_heads(engines)

    def _engine_for(self, name: str) -> Engine:
        for engine in self.engines:
            if name in engine.tasks:
                return engine
        return self.engines[0]  # its task() raises the unknown / not-loaded error

    def task(self, name: str) -> Task:
        return self._engine_for(name).task(name)

    def backend_for(self, name: str):
        return self._engine_for(name).backend

    async def run(self, task_name: str, text: Any,
                  cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
        return await self._engine_for(task_name).run(task_name, text, cancel)


def attach_heads(engines: list[Engine]) -> None:
    """Give each hybrid extraction task (``tasks.hybrid``) the classification heads another
    engine loaded for its closed-set fields."""
    for engine in engines:
        for task in engine.tasks.values():
            wanted = set(getattr(task, "field_heads", {}).values())
            for other in engines:
                if other is not engine and wanted & set(other.tasks):
                    task.attach_heads(other.tasks, other.backend)


async def run_as_json(engine: Engine | EngineGroup, task_name: str, text: Any) -> str:
    """``engine.run`` as a JSON reply for the browser worker: ``{"ok": true, "result": …}`` or
    ``{"ok": false, "error": {"type", "message"}}`` for bad input and unknown tasks."""
    try:
        result = await engine.run(task_name, text)
    except InputError as e:
        return json.dumps({"ok": False, "error": {"type": "InputError", "message": str(e)}})
    except KeyError as e:
        return json.dumps({"ok": False, "error": {"type": "TaskError", "message": str(e)}})
    return json.dumps({"ok": True, "result": result})
