"""Text generation: the chat prompt, the greedy decode loop and its result.

Runtime-free: the one loop (``loop.decode_greedy_async``) drives a ``StepModel``, a grammar cursor
and a pick kernel: onnxruntime + numpy + xgrammar under CPython (``models.cpython``), small JS
pieces over transformers.js and web-xgrammar in the browser (``pyapp.backends.browser_decode``).
"""

from .loop import DecodeState, Generation, StopReason, decode_greedy, decode_greedy_async
from .generator import TextGenerator
from .prompt import Prompt

__all__ = ["DecodeState", "Generation", "Prompt", "StopReason", "TextGenerator",
           "decode_greedy", "decode_greedy_async"]
