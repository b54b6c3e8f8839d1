"""The interface extraction tasks see: a tokenizer, a grammar engine and a decode loop behind one
object. ``models.cpython.lm.OnnxTextGenerator`` (CPython) and ``pyapp.backends.browser_lm`` implement it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .loop import Generation
from .prompt import Prompt


@runtime_checkable
class TextGenerator(Protocol):
    #: What ran the model: "cpython", "wasm" or "webgpu".
    name: str
    threads: int
    #: The context window (prompt + generated tokens).
    max_tokens: int
    model_key: str

    def grammar_engine(self) -> Any: ...

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]: ...

    async def count_tokens(self, text: str) -> int: ...

    async def generate(self, prompt: Prompt, grammar: Any = None, max_new_tokens: int = 128,
                       cancel: Callable[[], bool] | None = None,
                       on_token: Callable[[int], None] | None = None) -> Generation: ...
