"""The deployable site: the page, its config, the service worker's precache list, and the files.

The FastAPI app serves it live; ``edge-triage export`` writes the same site as static files for
any host, under any base path. Everything a browser needs offline is listed in precache.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from models.build import choose_lm, load_manifests
from pyapp import __version__
from pyapp.tasks import LinearHeadTask, create_task

from .settings import Settings

# web/ files the page and worker load (the app shell).
SHELL = ("app.js", "worker.js", "encoders.js", "encoderworker.js", "env.js", "inference.js", "lm.js",
         "lmweights.js", "pick.js", "memory.js", "outbox.js", "modelstore.js", "style.css", "icon.svg", "icons/icon-192.png",
         "icons/icon-512.png")


def available_tasks(settings: Settings) -> list[str]:
    """The configured tasks this build can run: trained tasks need their artifact (their data may
    be absent), extraction tasks need the built language model."""
    index = settings.tasks_dir / "index.json"
    artifacts = json.loads(index.read_text()) if index.exists() else {}
    has_lm = choose_lm(load_manifests(settings.models_dir), settings.browser_lm) is not None
    names = []
    for name in dict.fromkeys([*settings.tasks, *settings.lm_tasks]):
        task = create_task(name)
        if isinstance(task, LinearHeadTask) and name not in artifacts:
            continue
        if task.kind == "extraction" and not has_lm:
            continue
        names.append(name)
    return names


class Site:
    """Everything about one build that the page, service worker and export need."""

    def __init__(self, settings: Settings, base: str = "/"):
        if not base.startswith("/") or not base.endswith("/"):
            raise ValueError(f"base path must start and end with '/': {base!r}")
        self.settings = settings
        self.base = base
        index = settings.runtime_dir / "runtime.json"
        if not index.exists():
            raise FileNotFoundError(f"{index} is missing: run `make` (or `edge-triage build`) first")
        self.runtime = json.loads(index.read_text())
        # The models this deployment runs: the encoders and the chosen language model (other
        # imported language models stay in the build, unserved, unlisted, not exported).
        built = load_manifests(settings.models_dir)
        lm = choose_lm(built, settings.browser_lm)
        self.models = [m for m in built if m.task == "embedding"] + ([lm] if lm else [])
        artifacts = settings.tasks_dir / "index.json"
        files = json.loads(artifacts.read_text()) if artifacts.exists() else {}
        self.tasks = available_tasks(settings)
        # Task → artifact file, and `<task>@<dtype>` → the artifact for an encoder file other
        # than the default (models/taskpacks.py): all are served, precached and exported.
        self.task_files = {name: f for name, f in files.items() if name.split("@")[0] in self.tasks}
        self._templates = Environment(loader=FileSystemLoader(settings.web_dir),
                                      autoescape=select_autoescape(["html"]))

    @property
    def lm_tasks(self) -> list[str]:
        """Extraction tasks: the page runs them on the language model, loaded on first use."""
        return [n for n in self.tasks if create_task(n).kind == "extraction"]

    @property
    def runtime_base(self) -> str:
        return f"{self.base}runtime/{self.runtime['version']}/"

    def page_config(self, escalation: dict | None = None) -> dict[str, Any]:
        from models.build import encoder_manifest

        encoder = encoder_manifest(self.models)
        lm = choose_lm(self.models, self.settings.browser_lm)
        return {
            "version": __version__,
            "siteVersion": self.version,
            "base": self.base,
            "runtimeBase": self.runtime_base,
            "modelsBase": f"{self.base}models/",
            "encoder": self._encoder_config(encoder) if encoder else None,
            # Tasks on an encoder of their own (a fine-tuned one, Task.encoder): the worker
            # downloads and loads it the first time one of them is run, never at boot.
            "taskEncoders": self.task_encoders(),
            # The language model for extraction tasks (loaded by the worker on first use).
            "lm": self._lm_config(lm) if lm else None,
            "lmTasks": self.lm_tasks,
            # Extraction task → the classification heads that fill its closed-set fields.
            "fieldHeads": self.field_heads(),
            "memoryBudgetBytes": self.settings.memory_budget_bytes,
            "tasks": self.tasks,
            # The heads for the encoder file the page runs: on Wasm the configured one, on
            # WebGPU the `gpu` entry's (web/worker.js).
            "taskArtifacts": self.task_artifacts(self.settings.encoder_dtype),
            "gpuTaskArtifacts": self.task_artifacts("q8"),
            "defaultTask": self.settings.default_task,
            "escalation": escalation or {"url": None, "token": None},
        }

    def task_artifacts(self, dtype: str) -> dict[str, str]:
        """Task → URL of its artifact for encoders running their ``dtype`` file: the
        ``<task>@<dtype>`` one where the build made it, else the default file's."""
        from models.cpython.engines import artifact_files

        return {n: f"{self.base}tasks/{f}" for n, f in artifact_files(self.task_files, dtype).items()}

    def field_heads(self) -> dict[str, list[str]]:
        """Each extraction task's heads (``tasks/hybrid.py``) this build can run."""
        from models.cpython.engines import field_heads

        out = {}
        for name in self.lm_tasks:
            heads = [h for h in field_heads([name]) if h in self.tasks]
            if heads:
                out[name] = heads
        return out

    def task_encoders(self) -> dict[str, dict[str, Any]]:
        """Task → the config of the encoder it names, for available tasks not on the base one."""
        from models.build import encoder_manifest

        out = {}
        for name in self.tasks:
            wanted = create_task(name).encoder
            manifest = encoder_manifest(self.models, wanted) if wanted else None
            if manifest is not None:
                out[name] = self._encoder_config(manifest)
        return out

    def _encoder_config(self, encoder) -> dict[str, Any]:
        """The encoder in the configured dtype; ``skipFiles`` are the other dtypes' files, which
        the page does not download."""
        from models.cpython.encoder import PER_TEXT_DTYPES
        from models.encoder import added_memory, variant_memory

        dtype = self.settings.encoder_dtype if self.settings.encoder_dtype in encoder.variants \
            else encoder.dtype
        config = encoder.model_dump(include={"model_id", "max_tokens"})
        config["dtype"] = dtype
        # One text per onnxruntime run, as CPython embeds it (PER_TEXT_DTYPES says why).
        config["per_text"] = dtype in PER_TEXT_DTYPES
        config["key"] = encoder.variant_key(dtype)  # names the heads made for this file
        config["estimated_memory_bytes"] = variant_memory(encoder, dtype) if encoder.variants \
            else encoder.estimated_memory_bytes
        # Loaded beside the base encoder (a task's own), it shares onnxruntime's runtime.
        config["added_memory_bytes"] = added_memory(config["estimated_memory_bytes"])
        config["skipFiles"] = sorted(p for d, p in encoder.variants.items() if d != dtype)
        if dtype == "uint8" and "q8" in encoder.variants:
            # On WebGPU the page runs the float-arithmetic file instead (web/worker.js onDevice):
            # the integer file's float64 ops have no WebGPU kernel (models/weightquant.py).
            gpu = variant_memory(encoder, "q8")
            config["gpu"] = {"dtype": "q8", "per_text": "q8" in PER_TEXT_DTYPES,
                             "key": encoder.variant_key("q8"),
                             "estimated_memory_bytes": gpu, "added_memory_bytes": added_memory(gpu),
                             "skipFiles": sorted(p for d, p in encoder.variants.items() if d != "q8")}
        return config

    def _lm_config(self, lm) -> dict[str, Any]:
        """The language model and its variants in order of preference, each with its memory
        estimate, so the page can take the first that fits the budget (or refuse)."""
        config = lm.model_dump(include={"model_id", "dtype", "max_tokens", "key",
                                        "estimated_memory_bytes"})
        config["variants"] = lm_variants(lm, self.settings.models_dir)
        return config

    def render_index(self, config: dict) -> str:
        return self._templates.get_template("index.html").render(
            config_json=json.dumps(config).replace("<", "\\u003c"),
            version=__version__,
            base=self.base,
        )

    def precache(self) -> list[dict]:
        """URL + sha256 of every file the app needs offline, except model weights (those are
        sharded, verified and cached by web/modelstore.js)."""
        entries = [{"url": self.base, "sha256": None},
                   {"url": f"{self.base}manifest.webmanifest", "sha256": _sha(self.settings.web_dir / "manifest.webmanifest")}]
        for name in SHELL:
            entries.append({"url": f"{self.base}static/{name}",
                            "sha256": _sha(self.settings.web_dir / name)})
        for f in self.runtime["files"]:
            entries.append({"url": f"{self.runtime_base}{f['path']}", "sha256": f["sha256"]})
        for m in self.models:
            entries.append({"url": f"{self.base}models/{m.model_id}/manifest.json",
                            "sha256": _sha(self.settings.models_dir / m.model_id / "manifest.json")})
        for f in self.task_files.values():
            entries.append({"url": f"{self.base}tasks/{f}", "sha256": _sha(self.settings.tasks_dir / f)})
        return entries

    @property
    def version(self) -> str:
        """Changes whenever anything the page runs changes: the service worker's cache name."""
        digest = hashlib.sha256(__version__.encode())
        for name in (*SHELL, "index.html", "sw.js", "manifest.webmanifest"):
            digest.update(_sha(self.settings.web_dir / name).encode())
        digest.update(self.runtime["version"].encode())
        for m in self.models:
            digest.update(m.key.encode())
        for f in sorted(self.task_files.values()):
            digest.update(f.encode())
        return digest.hexdigest()[:12]

    def precache_json(self) -> str:
        return json.dumps({"version": self.version, "entries": self.precache()})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lm_variants(lm, models_dir: Path) -> list[dict[str, Any]]:
    """``lm``'s variants in order of preference (its own dtype first), each with the memory the
    page's extraction needs in it: ``[{"dtype", "estimated_memory_bytes"}]``."""
    from models.llm import variant_memory
    from pyapp.tasks.extraction import MAX_INPUT_TOKENS, MAX_NEW_TOKENS

    # The page's extraction never holds more context than input + answer + the prompt's
    # instructions and examples (~512 tokens), not the model's full 2,048.
    context = MAX_INPUT_TOKENS + MAX_NEW_TOKENS + 512
    sizes = {f.path: f.size for f in lm.files}
    order = [lm.dtype, *(d for d in lm.variants if d != lm.dtype)]
    shape = models_dir / lm.model_id / "config.json"
    shape = json.loads(shape.read_text()) if shape.exists() else None
    return [{"dtype": d, "estimated_memory_bytes": variant_memory(lm, d, context, config=shape)}
            for d in order if lm.variants.get(d) in sizes]
