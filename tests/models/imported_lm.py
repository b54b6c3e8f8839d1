"""A real model brought with ``edge-triage models import``, for the import tests: SmolLM2-135M as
a *Hugging Face folder* (safetensors + tokenizer.json, written once by transformers from the
built-in GGUF and kept in the cache), imported for the browser through the whole pipeline
(export → 8-bit Q8_0 blocks → checks → measured memory → manifest → shards), cached by content.

``python -m tests.models.imported_lm`` ensures it and prints its model id (the Playwright import
spec calls this; the first run takes ~5 min on two cores, later runs seconds).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from models.cache import cache_root

ROOT = Path(__file__).resolve().parents[2]
#: The page's default budget (server.settings): the import must fit it (it measures ~835 MB).
BUDGET = 1_200_000_000


def hf_folder() -> Path:
    """The Hugging Face folder, written once (transformers' own GGUF → float32 → save)."""
    folder = cache_root() / "fixtures" / "SmolLM2-135M-Instruct-hf"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.llm import GGUF, fix_tokenizer, source_dir

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source_dir(), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(source_dir(), gguf_file=GGUF,
                                                 dtype=torch.float32)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    fix_tokenizer(tmp)  # as a user's folder of the original SmolLM2 would be
    tmp.rename(folder)
    return folder


def ensure_imported(build_dir: Path = ROOT / "build", log=print):
    from models.importer import import_model

    return import_model(hf_folder(), build_dir, BUDGET, log=log, target="browser")


if __name__ == "__main__":
    manifest = ensure_imported(log=lambda line: print(line, file=sys.stderr))
    print(manifest.model_id)
