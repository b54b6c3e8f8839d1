"""Text generation: the chat prompt, the greedy decode loop and its result.

Runtime-free: the loop drives a ``StepModel`` (``models.cpython.lm``) and a grammar
cursor (``pyapp.grammar``); in the browser the same loop runs in JS (``web/decode.js``, with
the constants of ``loop.decode_plan``) and returns the same ``Generation`` fields.
"""

from .loop import DecodeState, Generation, StopReason, decode_greedy
from .generator import TextGenerator
from .prompt import Prompt

__all__ = ["DecodeState", "Generation", "Prompt", "StopReason", "TextGenerator",
           "decode_greedy"]
