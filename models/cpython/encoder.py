"""Encoder under CPython: onnxruntime + tokenizers on the same files the browser loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..manifest import ModelManifest
from pyapp.backends.base import EncoderBackend

# transformers.js names quantised variants by a file suffix; we load the same file it does.
DTYPE_FILES = {"fp32": "onnx/model.onnx", "q8": "onnx/model_quantized.onnx",
               "uint8": "onnx/model_uint8.onnx"}
# The integer file quantises activations with one scale per tensor (DynamicQuantizeLinear), so a
# text in a padded batch would get other scales, hence another embedding, than alone, and than in
# the page, which embeds one text per call: one text per run (models/weightquant.py).
PER_TEXT_DTYPES = {"uint8"}


class OnnxEncoder(EncoderBackend):
    """
    >>> enc = OnnxEncoder.from_dir("build/models/all-MiniLM-L6-v2-<key>")   # doctest: +SKIP
    >>> import asyncio; len(asyncio.run(enc.embed(["disk full"]))[0])          # doctest: +SKIP
    384
    """

    name = "cpython"

    def __init__(self, model_dir: Path, manifest: ModelManifest, threads: int | None = None,
                 dtype: str | None = None):
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._np = np
        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.dtype = dtype or manifest.dtype
        # Names the heads' artifacts and cached embeddings: each file has its own (the heads
        # of one file's embeddings are miscalibrated on the other's).
        self.model_key = manifest.variant_key(self.dtype)
        if self.dtype not in DTYPE_FILES:
            raise ValueError(f"unknown encoder dtype {self.dtype!r}: one of {sorted(DTYPE_FILES)}")
        config = json.loads((self.model_dir / "tokenizer_config.json").read_text())
        self.max_tokens = int(config.get("model_max_length", manifest.max_tokens))
        self._counter = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.enable_padding()
        options = ort.SessionOptions()
        self.threads = threads or min(4, os.cpu_count() or 1)
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Keep int8 weights dequantised to float at load (constant folding) instead of letting
        # the QDQ fusions re-quantise activations at run time: that rounds differently from
        # onnxruntime-web and would break browser/CPython parity (models/weightquant.py).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        self._session = ort.InferenceSession(
            str(self.model_dir / manifest.variants.get(self.dtype, DTYPE_FILES[self.dtype])),
            options,
            providers=["CPUExecutionProvider"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    @classmethod
    def from_dir(cls, model_dir: str | Path, threads: int | None = None,
                 dtype: str | None = None) -> OnnxEncoder:
        model_dir = Path(model_dir)
        manifest = ModelManifest.model_validate_json((model_dir / "manifest.json").read_text())
        return cls(model_dir, manifest, threads, dtype)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embed_sync(texts)

    def embed_sync(self, texts: list[str]) -> list[list[float]]:
        if self.dtype in PER_TEXT_DTYPES and len(texts) > 1:
            return [row for text in texts for row in self._embed([text])]
        return self._embed(texts)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        np = self._np
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        # Mean pooling over real tokens, then L2 normalisation: what sentence-transformers and
        # transformers.js' feature-extraction pipeline (pooling "mean", normalize) compute.
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float64).tolist()

    async def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text).ids)
