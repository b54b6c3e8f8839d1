"""Loaded CPython engines from a build directory: the factories the CLI, the server's engine
handler, evaluation and the tests share (onnxruntime + tokenizers, ``models.cpython``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path


def open_engine(build_dir: Path, tasks: list[str], encoder_dtype: str | None = None):
    """A loaded CPython engine for ``tasks`` (used by `run`, `eval` and the server): on the built
    encoder for classification (the file ``encoder_dtype`` names, default the manifest's,
    ``uint8``; the server passes the page's, EDGE_TRIAGE_ENCODER_DTYPE), on the built language
    model for extraction, or both."""
    from pyapp.engine import Engine, EngineGroup
    from pyapp.tasks import create_task

    extraction = [name for name in tasks if create_task(name).kind == "extraction"]
    classification = [name for name in tasks if name not in extraction]
    classification += [h for h in field_heads(extraction) if h not in classification]
    engines = []
    # One engine per encoder: a pack with a fine-tuned encoder (Task.encoder) runs on its own.
    by_encoder: dict[str | None, list[str]] = {}
    for name in classification:
        by_encoder.setdefault(create_task(name).encoder, []).append(name)
    for encoder_name, names in by_encoder.items():
        engines.append(_open_encoder_engine(build_dir, names, encoder_dtype, encoder_name))
    if extraction:
        engine = Engine(open_generator(build_dir))
        asyncio.run(engine.load(extraction, artifacts=load_artifacts(build_dir)))
        engines.append(engine)
    return engines[0] if len(engines) == 1 else EngineGroup(engines)


def field_heads(extraction: list[str]) -> list[str]:
    """The classification heads that fill closed-set fields of these extraction tasks."""
    from pyapp.tasks import create_task

    names: list[str] = []
    for name in extraction:
        names += [h for h in getattr(create_task(name), "field_heads", {}).values() if h not in names]
    return names


def _open_encoder_engine(build_dir: Path, tasks: list[str], dtype: str | None = None,
                         name: str | None = None):
    from pyapp.engine import Engine

    engine = Engine(open_encoder(build_dir, dtype, name))
    asyncio.run(engine.load(tasks, artifacts=load_artifacts(build_dir, dtype)))
    return engine


def open_encoder(build_dir: Path, dtype: str | None = None, name: str | None = None):
    """The built encoder called ``name`` (default: the base encoder; a task's ``encoder`` names a
    fine-tuned one) under onnxruntime (``models.cpython.encoder``); ``dtype`` picks the file
    (default the manifest's, ``uint8``; the server passes the page's EDGE_TRIAGE_ENCODER_DTYPE)."""
    from models.build import encoder_manifest, load_manifests
    from .encoder import OnnxEncoder

    manifest = encoder_manifest(load_manifests(build_dir / "models"), name)
    if manifest is None:
        raise SystemExit(f"no encoder model {name or 'all-MiniLM-L6-v2'} in "
                         f"{build_dir / 'models'}: run `make` first")
    return OnnxEncoder.from_dir(build_dir / "models" / manifest.model_id, dtype=dtype)


def open_generator(build_dir: Path, dtype: str | None = None, threads: int | None = None,
                   model: str | None = None):
    """The deployment's language model under onnxruntime (``models.cpython.lm``): ``model`` or
    EDGE_TRIAGE_BROWSER_LM (a model id or name), else the built-in one, as the page chooses."""
    from .lm import OnnxTextGenerator

    lm = lm_manifest(build_dir, model)
    return OnnxTextGenerator.from_dir(build_dir / "models" / lm.model_id, dtype, threads)


def lm_manifest(build_dir: Path, model: str | None = None):
    """The manifest of the language model ``open_generator`` opens; a clear exit when the build
    has none or not the one asked for."""
    import os

    from models.build import choose_lm, load_manifests

    wanted = os.environ.get("EDGE_TRIAGE_BROWSER_LM", "") if model is None else model
    try:
        lm = choose_lm(load_manifests(build_dir / "models"), wanted)
    except LookupError as e:
        raise SystemExit(str(e)) from e
    if lm is None:
        raise SystemExit(f"no language model in {build_dir / 'models'}: run `make` first")
    return lm


def load_artifacts(build_dir: Path, dtype: str | None = None) -> dict[str, dict]:
    """Task name → its built artifact: for the encoder's default file, or where ``dtype`` names
    another file and the build made one for it (``<task>@<dtype>``), that one
    (``models.taskpacks``)."""
    index = build_dir / "tasks" / "index.json"
    if not index.exists():
        return {}
    return {name: json.loads((build_dir / "tasks" / file).read_text())
            for name, file in artifact_files(json.loads(index.read_text()), dtype).items()}


def artifact_files(index: dict[str, str], dtype: str | None = None) -> dict[str, str]:
    """Task → artifact file out of ``index.json``: the ``<task>@<dtype>`` entry where the build
    made one for ``dtype``, else the default file's.

    >>> artifact_files({"a": "a-1.json", "a@q8": "a@q8-2.json", "b": "b-3.json"}, "q8")
    {'a': 'a@q8-2.json', 'b': 'b-3.json'}
    """
    chosen = {name: file for name, file in index.items() if "@" not in name}
    chosen.update({name.split("@")[0]: file for name, file in index.items()
                   if dtype and name.endswith(f"@{dtype}")})
    return chosen


def open_frozen_engine(build_dir: Path, task_name: str, dtype: str | None = None):
    """An engine running ``task_name`` on the *base* encoder although the task names a fine-tuned
    one: its head and scope detector trained on the base encoder's embeddings by the same build
    step (``build_head_artifact``, cached by content), so `report` can show both side by side."""
    from models.trainingdata import build_head_artifact
    from pyapp.engine import Engine
    from pyapp.tasks import create_task

    encoder = open_encoder(build_dir, dtype)
    artifact = build_head_artifact(create_task(task_name), encoder)
    engine = Engine(encoder)
    asyncio.run(engine.load([task_name], artifacts={task_name: artifact}))
    return engine
