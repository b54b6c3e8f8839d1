"""The model manifest: what a built model consists of, shared by the build, server and runtimes."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field


def slug(text: str) -> str:
    """A model name as the start of a model id (a folder name and URL path segment).

    >>> slug("Qwen2.5 Coder 1.5B Instruct GGUF")
    'Qwen2.5-Coder-1.5B-Instruct-GGUF'
    """
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "model"


class ModelFile(BaseModel):
    path: str  # relative to the model's folder, always with "/"
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelManifest(BaseModel):
    """Describes one built model folder.

    >>> m = ModelManifest(name="x", model_id="x-0", task="embedding", dtype="q8",
    ...                   key="0" * 64, files=[], estimated_memory_bytes=1)
    >>> m.task
    'embedding'
    """

    name: str
    # Folder name under the served models root; it carries the content key, so its files are
    # immutable and may be cached forever.
    model_id: str
    task: Literal["embedding", "text-generation"]
    dtype: str
    # Other dtypes shipped in the folder (transformers.js dtype → file), the default included.
    variants: dict[str, str] = Field(default_factory=dict)
    key: str
    files: list[ModelFile]
    estimated_memory_bytes: int = Field(gt=0)
    max_tokens: int = 256
    source: str = ""
    checks: dict[str, float] = Field(default_factory=dict)
    # Large files are also stored as fixed-size shards (file path → its shards, in order), which
    # the browser downloads in parallel, verifies one by one and can resume.
    shards: dict[str, list[ModelFile]] = Field(default_factory=dict)
    # What runs the model: onnxruntime (browser and CPython) or, for server models imported
    # from GGUF (models/importer.py), llama.cpp.
    runtime: Literal["onnxruntime", "llama.cpp"] = "onnxruntime"
    # Where the model came from: package, version, sha256, licence (models/importer.py).
    provenance: dict[str, str] = Field(default_factory=dict)
    # Imported by ``edge-triage models import`` (kept by ``build_all``, which removes stale
    # built-in models); a deployment picks one with EDGE_TRIAGE_BROWSER_LM.
    imported: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def variant_key(self, dtype: str | None = None) -> str:
        """The key of this model run as ``dtype``: the manifest's own for its default file, and a
        distinct one for another file. Embeddings differ between the files (q8 against uint8:
        head confidences up to 0.2 apart), so whatever is keyed on it (cached training
        embeddings, the heads' artifacts) is built for the file it will run on.

        >>> m = ModelManifest(name="x", model_id="x-0", task="embedding", dtype="uint8",
        ...                   key="k", files=[], estimated_memory_bytes=1)
        >>> m.variant_key("uint8"), m.variant_key("q8")
        ('k', 'k:q8')
        """
        return self.key if dtype in (None, self.dtype) else f"{self.key}:{dtype}"
