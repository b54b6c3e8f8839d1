"""Inference backends: one interface, one implementation per runtime.

``cpython`` (onnxruntime + tokenizers) and ``browser`` (transformers.js through Pyodide) are the only
modules that import a runtime; choose one once and pass it to ``pyapp.engine.Engine``.
"""

from .base import EncoderBackend

__all__ = ["EncoderBackend"]
