"""Content-keyed cache of built models, outside the checkout so fresh clones reuse it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("EDGE_TRIAGE_CACHE") or Path.home() / ".cache" / "edge-triage"
    return Path(root)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_key(parts: Iterable[str | Path]) -> str:
    """Hash of strings and file contents: the identity of a build's inputs."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            digest.update(f"file:{part.name}:{sha256_file(part)}".encode())
        else:
            digest.update(f"str:{part}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def link_tree(src: Path, dst: Path) -> None:
    """Mirror ``src`` into ``dst`` with hard links (copies across file systems), atomically."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for path in sorted(src.rglob("*")):
        target = tmp / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def list_files(folder: Path):
    """Every file under ``folder`` but manifest.json, as manifest entries (path, size, sha256)."""
    from models.manifest import ModelFile

    return [
        ModelFile(path=p.relative_to(folder).as_posix(), size=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    ]
