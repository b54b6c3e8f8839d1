"""``edge-triage export DIR``: the site as plain files for any static host, under any base path.

The service worker (web/sw.js) adds the isolation headers a plain host cannot send; where it
cannot, the page says so and runs single-threaded. Escalations go to ``--api-url`` when given;
otherwise they wait in the browser's outbox until one is configured.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.cache import link_tree

from .settings import Settings
from .site import SHELL, Site


def export_site(settings: Settings, dest: Path, base: str = "/", api_url: str | None = None,
                token: str | None = None, log=print) -> Path:
    site = Site(settings, base)
    dest = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise SystemExit(f"{dest} is a file, not a folder: refusing to overwrite it")
    if dest.exists() and any(dest.iterdir()) and not (dest / "precache.json").exists():
        raise SystemExit(f"{dest} exists and is not an earlier export: refusing to overwrite it")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "static").mkdir(parents=True)
    for name in SHELL:
        (dest / "static" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(settings.web_dir / name, dest / "static" / name)
    for name in ("sw.js", "manifest.webmanifest"):
        shutil.copy2(settings.web_dir / name, dest / name)
    link_tree(settings.runtime_dir, dest / "runtime" / site.runtime["version"])
    (dest / "models").mkdir()
    for m in site.models:
        link_tree(settings.models_dir / m.model_id, dest / "models" / m.model_id)
    (dest / "tasks").mkdir()
    for f in site.task_files.values():
        shutil.copy2(settings.tasks_dir / f, dest / "tasks" / f)
    config = site.page_config({"url": api_url, "token": token})
    (dest / "index.html").write_text(site.render_index(config), encoding="utf-8")
    (dest / "precache.json").write_text(site.precache_json())
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    log(f"exported site version {site.version} to {dest} ({size / 2**20:.0f} MiB), base path {base}")
    return dest
