"""Inference backends: one interface, one implementation per runtime.

``browser`` (encoder) and ``browser_lm`` (language model) reach transformers.js through Pyodide; they
are the only pyapp modules that import ``js``/``pyodide``. The CPython backends (onnxruntime +
tokenizers) live outside the browser's package, in ``models.cpython``. Choose one once and pass it
to ``pyapp.engine.Engine``.
"""

from .base import EncoderBackend

__all__ = ["EncoderBackend"]
