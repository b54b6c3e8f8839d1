"""Task artifacts: what a task learns at build time (label prototypes, fitted temperature),
computed once under CPython and served to the browser, keyed by model and task content."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pyapp.manifest import ModelManifest
from pyapp.tasks import TASKS, create_task


def build_task_artifacts(build_dir: Path, encoder_manifest: ModelManifest, log=print) -> dict:
    """Write ``build/tasks/<task>-<key12>.json`` for every task that has one; return name → file."""
    from pyapp.backends.cpython import OnnxEncoder

    out = build_dir / "tasks"
    out.mkdir(parents=True, exist_ok=True)
    encoder = None
    written: dict[str, str] = {}
    for name in TASKS:
        task = create_task(name)
        key = task.content_key(encoder_manifest.key) if hasattr(task, "content_key") else None
        if key is None:
            continue
        path = out / f"{name}-{key[:12]}.json"
        if not path.exists():
            if encoder is None:
                encoder = OnnxEncoder.from_dir(build_dir / "models" / encoder_manifest.model_id)
            asyncio.run(task.load(encoder))
            artifact = task.artifact(encoder_manifest.key)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(artifact))
            tmp.rename(path)
            log(f"task {name}: prototypes built ({path.name})")
        else:
            log(f"task {name}: cached ({path.name})")
        written[name] = path.name
    for stale in out.glob("*.json"):
        if stale.name not in written.values():
            stale.unlink()
    (out / "index.json").write_text(json.dumps(written, indent=1))
    return written
