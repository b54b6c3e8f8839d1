"""Splitting large model files into verified shards for the browser's download.

4 MiB shards: a dropped connection or a corrupted shard costs at most 4 MiB to fetch again, six
parallel requests (a browser's per-host limit over HTTP/1.1) keep a link busy, and hashing one
shard with crypto.subtle takes milliseconds, so verification never holds the download up. The
23 MB encoder becomes 6 shards; a 135 MB language model about 35.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from models.manifest import ModelFile, ModelManifest

SHARD_BYTES = 4 * 2**20
MIN_SHARDED_BYTES = 2 * 2**20  # smaller files are fetched whole (still verified by sha256)


def add_shards(model_dir: Path, manifest: ModelManifest) -> ModelManifest:
    shards: dict[str, list[ModelFile]] = {}
    for f in manifest.files:
        if f.size < MIN_SHARDED_BYTES:
            continue
        parts = []
        with open(model_dir / f.path, "rb") as src:
            index = 0
            while block := src.read(SHARD_BYTES):
                rel = f"shards/{f.path.replace('/', '__')}.{index:03d}"
                out = model_dir / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(block)
                parts.append(ModelFile(path=rel, size=len(block),
                                       sha256=hashlib.sha256(block).hexdigest()))
                index += 1
        shards[f.path] = parts
    return manifest.model_copy(update={"shards": shards})
