"""What the ``engine`` handler runs an escalated case on: per kind of task, one model, opened on
the first case of that kind (a classification case never loads a language model).

- classification tasks: the built encoder (the same model as the browser: its answers are
  escalated for low confidence, and the server has nothing bigger for them);
- extraction tasks: the *escalation model* (``EDGE_TRIAGE_ESCALATION_MODEL``): a server model
  imported from GGUF (``edge-triage models import``, ``make escalation-engine``) run natively by
  llama.cpp, chosen by name, or by default the largest one built whose measured memory fits
  ``EDGE_TRIAGE_SERVER_MEMORY_BUDGET_BYTES``; or, by name, a language model imported for the
  browser (``models import --for browser``: ONNX, run by onnxruntime); ``browser`` (or no server
  model built) runs the browser's own ONNX model, which mostly gives the same answer again, so
  the server says so in its log.

An extraction task whose closed-set fields come from encoder heads (``tasks.hybrid``,
telemetry-extract) gets those heads here too, on the same encoder files as the page, and the
escalation model writes only the rest (component, action): on the escalated dev cases the heads
were right far more often than the model writing those fields itself (README "Escalation model
and imported models": category 0.82 vs 0.45, component_kind 1.00 vs 0.27 against the 1.5B model;
the browser's 135M model, the default when no server model is imported, called a PSU, a disk,
a UPS and a link "thermal" in issue 12's examples). So an escalated record's closed-set fields are the page's again, and what the
escalation adds is the generated fields and, through the review handler, a person.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from pyapp.engine import Engine, EngineGroup
from pyapp.tasks import create_task

from .settings import Settings

log = logging.getLogger("edge_triage.escalations")


class EscalationModelError(RuntimeError):
    """The configured escalation model cannot be opened (named in the message)."""


def choose_server_model(settings: Settings):
    """The server model for extraction escalations, or None for the browser's model."""
    from models.importer import load_server_manifests

    wanted = settings.escalation_model
    if wanted == "browser":
        return None
    manifests = load_server_manifests(settings.build_dir)
    if wanted:
        for m in manifests:
            if wanted in (m.model_id, m.name):
                if m.estimated_memory_bytes > settings.server_memory_budget_bytes:
                    raise EscalationModelError(
                        f"escalation model {m.model_id} needs {m.estimated_memory_bytes:,} bytes, "
                        f"over EDGE_TRIAGE_SERVER_MEMORY_BUDGET_BYTES="
                        f"{settings.server_memory_budget_bytes:,}")
                return m
        from models.build import load_manifests

        # A language model imported for the browser (ONNX): onnxruntime runs it here too.
        for m in load_manifests(settings.models_dir):
            if m.task == "text-generation" and m.imported and wanted in (m.model_id, m.name):
                return m
        built = ", ".join(m.model_id for m in manifests) or "none"
        raise EscalationModelError(f"EDGE_TRIAGE_ESCALATION_MODEL={wanted!r} is not built under "
                                   f"{settings.build_dir / 'server-models'} (built: {built}); "
                                   "import it with `edge-triage models import`")
    fitting = [m for m in manifests
               if m.estimated_memory_bytes <= settings.server_memory_budget_bytes]
    return max(fitting, key=lambda m: m.estimated_memory_bytes, default=None)


class EscalationEngines:
    """``open(task)`` → an ``Engine`` with that task loaded, on its kind's model (opened once)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._backends: dict[str, Any] = {}
        self._lock = threading.Lock()

    def backend(self, kind: str, encoder: str | None = None):
        """``encoder``: the encoder a classification task names (``Task.encoder``), if not the
        base one; each is opened once, on its first case."""
        slot = kind if encoder is None else f"{kind}:{encoder}"
        with self._lock:
            if slot not in self._backends:
                self._backends[slot] = self._open_backend(kind, encoder)
            return self._backends[slot]

    def _open_backend(self, kind: str, encoder: str | None = None):
        try:
            return self._open_backend_of(kind, encoder)
        except SystemExit as e:  # the CLI's "not built" message, never an exit in the server
            raise EscalationModelError(str(e)) from None

    def _open_backend_of(self, kind: str, encoder: str | None = None):
        from models.cpython.engines import open_encoder, open_generator

        build = self.settings.build_dir
        if kind != "extraction":
            return open_encoder(build, self.settings.encoder_dtype, encoder)
        threads = self.settings.escalation_threads or None
        chosen = choose_server_model(self.settings)
        if chosen is None:
            log.warning("extraction escalations run on the browser's own model (no server model "
                        "imported; see `make escalation-engine`)")
            return open_generator(build, threads=threads)
        if chosen.runtime == "onnxruntime":
            log.info("extraction escalations run on %s (imported, onnxruntime)", chosen.model_id)
            return open_generator(build, threads=threads, model=chosen.model_id)
        from models.cpython.gguf import GgufTextGenerator

        log.info("extraction escalations run on %s (llama.cpp)", chosen.model_id)
        return GgufTextGenerator.from_dir(build / "server-models" / chosen.model_id,
                                          threads=threads)

    def open(self, task_name: str) -> Engine | EngineGroup:
        from models.cpython.engines import field_heads, load_artifacts

        artifacts = load_artifacts(self.settings.build_dir, self.settings.encoder_dtype)
        task = create_task(task_name)
        engine = Engine(self.backend(task.kind, task.encoder))
        asyncio.run(engine.load([task_name], artifacts=artifacts))
        heads = field_heads([task_name]) if task.kind == "extraction" else []
        if not heads:
            return engine
        # The heads' engines, one per encoder they run on (EngineGroup attaches them).
        by_encoder: dict[str | None, list[str]] = {}
        for name in heads:
            by_encoder.setdefault(create_task(name).encoder, []).append(name)
        engines = []
        for encoder, names in by_encoder.items():
            head_engine = Engine(self.backend("classification", encoder))
            asyncio.run(head_engine.load(names, artifacts=artifacts))
            engines.append(head_engine)
        return EngineGroup([*engines, engine])
