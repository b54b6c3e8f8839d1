"""Embeddings of training corpora, cached by content under the model cache.

Embedding CLINC150's 15k training texts takes about a minute; a second build (or a test) reads
the cached matrix instead. The key is the encoder's content key plus the texts themselves, so a
new model or changed data never reads stale vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cache import cache_root

_BATCH = 64


def embeddings_key(model_key: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(f"model:{model_key}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def embed_cached(encoder, texts: Sequence[str], log=None) -> np.ndarray:
    """``len(texts) × dim`` float32 embeddings from ``encoder.embed_sync``, cached on disk.

    >>> embed_cached(OnnxEncoder.from_dir(model_dir), ["disk full"]).shape   # doctest: +SKIP
    (1, 384)
    """
    key = embeddings_key(encoder.model_key, texts)
    path = cache_root() / "embeddings" / f"{key[:32]}.npy"
    if path.exists():
        return np.load(path)
    if log:
        log(f"embedding {len(texts):,} texts (cached afterwards in {path.parent})")
    # Sort by length so each padded batch wastes little work on padding tokens.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), 0), dtype=np.float32)
    rows: list[np.ndarray] = []
    for start in range(0, len(order), _BATCH):
        batch = [texts[i] for i in order[start : start + _BATCH]]
        rows.append(np.asarray(encoder.embed_sync(batch), dtype=np.float32))
    if rows:
        stacked = np.concatenate(rows)
        out = np.empty_like(stacked)
        out[order] = stacked
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.{id(out)}.tmp.npy")
    np.save(tmp, out)
    tmp.rename(path)
    return out
