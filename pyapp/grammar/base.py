"""The grammar interfaces. One implementation per engine (``models.cpython.xgrammar_engine`` under CPython; the
browser applies the same engine compiled to Wasm from JS, ``web/lm.js``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class GrammarCursor(ABC):
    """One request's position in a compiled grammar. Not shared between requests."""

    @abstractmethod
    def new_bitmask(self) -> Any:
        """A buffer for ``fill_bitmask``: int32 words, bit ``i % 32`` of word ``i // 32`` = token i."""

    @abstractmethod
    def fill_bitmask(self, bitmask: Any) -> None:
        """Set the bits of the tokens the grammar allows next."""

    @abstractmethod
    def accept(self, token: int) -> bool:
        """Advance by ``token``; False (and no change) when the grammar does not allow it."""

    @abstractmethod
    def is_finished(self) -> bool:
        """The text so far is a complete sentence of the grammar and nothing else may follow."""


class CompiledGrammar(ABC):
    """Immutable result of compiling a schema for one tokenizer; safe to share."""

    schema: dict

    @abstractmethod
    def cursor(self) -> GrammarCursor:
        """A fresh cursor at the start of the grammar."""


class GrammarEngine(ABC):
    name: str

    @abstractmethod
    def compile_json_schema(self, schema: dict) -> CompiledGrammar:
        """Compile ``schema``; raises ``UnsupportedSchemaError`` for what cannot be enforced."""
