"""Build every model into the cache (once per content key) and link it into the served folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from models.manifest import ModelManifest

from . import encoder, finetune, llm
from .cache import cache_root, link_tree
from .shards import add_shards

# The on-disk layout build_all adds to every model (shards); part of the cache folder name.
LAYOUT = "s1"

BUILDERS = {
    encoder.NAME: (encoder.build_key, encoder.build_encoder),
    llm.NAME: (llm.build_key, llm.build_llm),
}


def builders(log=print) -> dict:
    """``BUILDERS`` plus one fine-tuned encoder per task pack that names one
    (``models.finetune``); a pack whose training data is absent gets none (nor its head)."""
    from functools import partial

    out = dict(BUILDERS)
    for name, task in finetune.finetuned_packs().items():
        try:
            key = finetune.build_key(task)
        except FileNotFoundError as e:
            log(f"{name}: skipped, {e}")
            continue
        out[name] = (lambda key=key: key,
                     partial(_build_finetuned, task_name=task, encoder_name=name))
    return out


def _build_finetuned(out, key, log, task_name, encoder_name):
    return finetune.build_finetuned(out, key, task_name, encoder_name, log=log)


def build_all(models_dir: Path, force: bool = False, log=print) -> list[ModelManifest]:
    """Ensure ``models_dir/<model_id>/`` holds every model; stale model folders are removed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    manifests = []
    for name, (key_fn, build_fn) in builders(log).items():
        manifest, cached = _build_cached(name, key_fn, build_fn, force, log)
        target = models_dir / manifest.model_id
        served = target / "manifest.json"
        if not served.exists() or served.read_bytes() != (cached / "manifest.json").read_bytes():
            link_tree(cached, target)
        manifests.append(manifest)
    keep = {m.model_id for m in manifests}
    for stale in models_dir.iterdir():
        if stale.is_dir() and stale.name not in keep and not _imported(stale):
            shutil.rmtree(stale)
    return manifests


def _imported(folder: Path) -> bool:
    """A model ``edge-triage models import`` put there: the deployment's own, never stale."""
    manifest = folder / "manifest.json"
    return manifest.exists() and ModelManifest.model_validate_json(manifest.read_text()).imported


def build_imported(name: str, key: str, build_fn, models_dir: Path, log=print,
                   accept=lambda manifest: None) -> ModelManifest:
    """An imported browser model, built like the built-in ones (content key → cache folder →
    shards) and linked into ``models_dir`` once ``accept`` (which raises to refuse) passes."""
    manifest, cached = _build_cached(name, lambda: key, build_fn, False, log)
    accept(manifest)
    link_tree(cached, models_dir / manifest.model_id)
    return manifest


def choose_lm(manifests: list[ModelManifest], wanted: str = "") -> ModelManifest | None:
    """The language model a deployment runs: ``wanted`` (EDGE_TRIAGE_BROWSER_LM) is a model id
    or name; empty means the built-in one. Both runtimes choose through here."""
    lms = [m for m in manifests if m.task == "text-generation"]
    if not wanted:
        return next((m for m in lms if not m.imported), lms[0] if lms else None)
    for m in lms:
        if wanted in (m.model_id, m.name):
            return m
    raise LookupError(f"EDGE_TRIAGE_BROWSER_LM={wanted!r}: no such language model under the "
                      f"build (have: {', '.join(m.model_id for m in lms) or 'none'}); import it "
                      "with `edge-triage models import SOURCE --for browser`")


def _build_cached(name, key_fn, build_fn, force: bool, log) -> tuple[ModelManifest, Path]:
    key = key_fn()
    cached = cache_root() / "models" / f"{name}-{key[:16]}-{LAYOUT}"
    if force or not (cached / "manifest.json").exists():
        log(f"building {name} (key {key[:12]}) into {cached}")
        started = time.monotonic()
        tmp = cached.with_name(cached.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            manifest = add_shards(tmp, build_fn(tmp, key, log))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a refused or failed build leaves nothing
            raise
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
        log(f"built {name} in {time.monotonic() - started:.1f}s")
    else:
        log(f"{name}: cached ({cached})")
    return ModelManifest.model_validate_json((cached / "manifest.json").read_text()), cached


def build_reference(dest: Path, force: bool = False, log=print) -> ModelManifest:
    """The benchmark's reference encoder (``encoder.build_reference``), cached like the models and
    linked into ``dest/<model_id>/``; kept out of build/models so the app never serves it."""
    manifest, cached = _build_cached(f"{encoder.NAME}-reference", encoder.reference_key,
                                     encoder.build_reference, force, log)
    target = dest / manifest.model_id
    if not (target / "manifest.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        link_tree(cached, target)
    return manifest


def encoder_manifest(manifests: list[ModelManifest], name: str | None = None) -> ModelManifest | None:
    """The embedding model called ``name`` (default: the base encoder), or None if not built."""
    wanted = name or encoder.NAME
    return next((m for m in manifests if m.task == "embedding" and m.name == wanted), None)


def load_manifests(models_dir: Path) -> list[ModelManifest]:
    return [
        ModelManifest.model_validate_json(p.read_text())
        for p in sorted(models_dir.glob("*/manifest.json"))
    ]
