"""Task artifacts: what a task learns at build time (label prototypes and fitted temperature, or
a trained linear head), computed once under CPython and served to the browser, keyed by model and
task content."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from models.manifest import ModelManifest
from pyapp.tasks import TASKS, LinearHeadTask, create_task
from pyapp.tasks.telemetry_labels import TemplateTrainingData


def build_task_artifacts(build_dir: Path, manifests: list[ModelManifest], log=print) -> dict:
    """Write ``build/tasks/<task>-<key12>.json`` for every task that has one; return name → file.

    Each task's artifact is built on the encoder it names (``Task.encoder``; the base encoder
    when None), among ``manifests``, once per file of that encoder the page may run: under the
    task's name for the default file (``uint8``) and under ``<task>@<dtype>`` for the others
    (``q8``, which WebGPU pages run): heads fitted on one file's embeddings are miscalibrated
    on the other's. Trained tasks are skipped with a message when their training data (or
    their fine-tuned encoder, built from it) is not available; the page then cannot offer them.
    """
    from models.cpython.encoder import OnnxEncoder

    from .build import encoder_manifest

    out = build_dir / "tasks"
    out.mkdir(parents=True, exist_ok=True)
    encoders: dict[tuple[str, str], OnnxEncoder] = {}
    written: dict[str, str] = {}
    for name in TASKS:
        task = create_task(name)
        if not hasattr(task, "content_key"):
            continue
        manifest = encoder_manifest(manifests, task.encoder)
        if manifest is None:
            log(f"task {name}: skipped, encoder {task.encoder!r} was not built")
            continue
        for dtype in [manifest.dtype, *sorted(set(manifest.variants) - {manifest.dtype})]:
            entry = name if dtype == manifest.dtype else f"{name}@{dtype}"
            key = task.content_key(manifest.variant_key(dtype))
            path = out / f"{entry}-{key[:12]}.json"
            if not path.exists() or _stale_training(task, path):
                if (manifest.model_id, dtype) not in encoders:
                    encoders[manifest.model_id, dtype] = OnnxEncoder.from_dir(
                        build_dir / "models" / manifest.model_id, dtype=dtype)
                artifact = _artifact(task, encoders[manifest.model_id, dtype], log)
                if artifact is None:
                    break
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(artifact))
                tmp.rename(path)
                log(f"task {entry}: artifact built ({path.name})")
            else:
                log(f"task {entry}: cached ({path.name})")
            written[entry] = path.name
    written.update(_calibration_artifacts(build_dir, out, log))
    for stale in out.glob("*.json"):
        if stale.name not in written.values():
            stale.unlink()
    (out / "index.json").write_text(json.dumps(written, indent=1))
    return written


def _artifact(task, encoder, log) -> dict | None:
    """``task``'s artifact on ``encoder``; None (with a message) without its training data."""
    from .trainingdata import build_head_artifact

    if isinstance(task, LinearHeadTask):
        try:
            if isinstance(task.training, TemplateTrainingData):
                return _field_heads(encoder, log)[task.name]
            return build_head_artifact(task, encoder, log=log)
        except FileNotFoundError as e:
            log(f"task {task.name}: skipped, {e}")
            return None
    asyncio.run(task.load(encoder))
    return task.artifact(encoder.model_key)


def _calibration_artifacts(build_dir: Path, out: Path, log) -> dict[str, str]:
    """Extraction tasks that calibrate their confidence at build time (``models.extractcal``),
    on the deployment's language model; skipped with a message without it or its data."""
    import hashlib
    import os

    from .build import choose_lm, load_manifests
    from .extractcal import build_calibration

    tasks = [t for t in map(create_task, TASKS) if getattr(t, "calibrate_at_build", False)]
    if not tasks:
        return {}
    # Among every model linked into the build: the deployment may run one `models import` put
    # there, not only one the build made.
    wanted = os.environ.get("EDGE_TRIAGE_BROWSER_LM", "")
    lm = choose_lm(load_manifests(build_dir / "models"), wanted)
    if lm is None:
        log(f"tasks {[t.name for t in tasks]}: not calibrated, no language model was built")
        return {}
    from .cpython.engines import open_generator

    generator = None
    written: dict[str, str] = {}
    for task in tasks:
        if generator is None:
            generator = open_generator(build_dir, model=lm.model_id)
        asyncio.run(task.load(generator))
        try:
            artifact = build_calibration(task, generator, log=log)
        except FileNotFoundError as e:
            log(f"task {task.name}: not calibrated, {e}")
            continue
        text = json.dumps(artifact)
        path = out / f"{task.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
        if not path.exists():
            path.write_text(text)
        log(f"task {task.name}: calibration ({path.name}), threshold "
            f"{artifact['calibration']['threshold']}")
        written[task.name] = path.name
    return written


def _field_heads(encoder, log) -> dict[str, dict]:
    """All template-labelled heads, trained together on the same rows (``models.fieldheads``)."""
    from .fieldheads import build_field_heads

    tasks = [t for t in map(create_task, TASKS)
             if isinstance(t, LinearHeadTask) and isinstance(t.training, TemplateTrainingData)]
    return build_field_heads(tasks, encoder, log=log)


def _stale_training(task, path: Path) -> bool:
    """A trained artifact whose training file changed since it was built."""
    if not isinstance(task, LinearHeadTask):
        return False
    from models.cache import sha256_file

    from .trainingdata import data_root

    data = data_root() / task.training.file
    if not data.exists():
        return False
    recorded = json.loads(path.read_text()).get("training", {}).get("sha256")
    return recorded != sha256_file(data)
