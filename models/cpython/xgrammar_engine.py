"""XGrammar (PyPI ``xgrammar``) as the grammar engine under CPython.

The browser runs the same engine compiled to Wasm (npm ``@mlc-ai/web-xgrammar``); both read the
vocabulary from the model's tokenizer.json and compile with the same options, so the masks, and
with greedy decoding the outputs, are the same. Compiled grammars are cached by schema text.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyapp.grammar.base import CompiledGrammar, GrammarCursor, GrammarEngine
from pyapp.grammar.coverage import UnsupportedSchemaError
from pyapp.grammar.normal_form import enforceable

#: Compact JSON (no free whitespace): fewer tokens to generate, and a model cannot stall by
#: emitting whitespace forever.
COMPILE_OPTIONS: dict[str, Any] = {"any_whitespace": False, "separators": (",", ":"),
                                   "strict_mode": True}


class XGrammarCursor(GrammarCursor):
    def __init__(self, matcher, vocab_size: int):
        self._matcher = matcher
        self._vocab_size = vocab_size

    def new_bitmask(self):
        import xgrammar as xgr

        return xgr.allocate_token_bitmask(1, self._vocab_size).numpy()[0]

    def fill_bitmask(self, bitmask) -> None:
        self._matcher.fill_next_token_bitmask(bitmask[None, :])

    def accept(self, token: int) -> bool:
        return bool(self._matcher.accept_token(token))

    def is_finished(self) -> bool:
        # Completed: the JSON value is closed and only a stop token may follow.
        return bool(self._matcher.is_completed())


class XGrammarCompiled(CompiledGrammar):
    def __init__(self, compiled, schema: dict, vocab_size: int):
        self._compiled = compiled
        self.schema = schema
        self._vocab_size = vocab_size

    def cursor(self) -> XGrammarCursor:
        import xgrammar as xgr

        return XGrammarCursor(xgr.GrammarMatcher(self._compiled), self._vocab_size)


class XGrammarEngine(GrammarEngine):
    """
    >>> engine = XGrammarEngine.from_tokenizer_json("…/tokenizer.json", 49152, [2])  # doctest: +SKIP
    >>> cursor = engine.compile_json_schema({"enum": ["a", "b"]}).cursor()          # doctest: +SKIP
    """

    name = "xgrammar"

    def __init__(self, tokenizer_info, vocab_size: int):
        import xgrammar as xgr

        self._compiler = xgr.GrammarCompiler(tokenizer_info, max_threads=1)
        self.vocab_size = vocab_size
        self._cache: dict[str, XGrammarCompiled] = {}

    @classmethod
    def from_tokenizer_json(cls, path: str | Path, vocab_size: int,
                            stop_token_ids: list[int]) -> XGrammarEngine:
        try:
            import xgrammar as xgr
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("constrained decoding needs xgrammar: pip install xgrammar==0.2.8 "
                              "apache-tvm-ffi") from e
        tok = json.loads(Path(path).read_text(encoding="utf-8"))
        vocab = tok["model"]["vocab"]
        for added in tok.get("added_tokens", []):
            vocab.setdefault(added["content"], added["id"])
        encoded = [""] * vocab_size
        for text, i in vocab.items():
            if i < vocab_size:
                encoded[i] = text
        # Special tokens (<|im_start|> …) as empty strings: xgrammar then never allows them inside
        # the JSON (they would be text the grammar saw but decoding drops).
        for added in tok.get("added_tokens", []):
            if added.get("special") and added["id"] < vocab_size:
                encoded[added["id"]] = ""
        info = xgr.TokenizerInfo(encoded, xgr.VocabType.BYTE_LEVEL, vocab_size=vocab_size,
                                 stop_token_ids=stop_token_ids, add_prefix_space=False)
        return cls(info, vocab_size)

    def compile_json_schema(self, schema: dict) -> XGrammarCompiled:
        # Not sort_keys: properties are generated in the order the schema lists them.
        key = json.dumps(schema)
        if key in self._cache:
            return self._cache[key]
        generation_schema = enforceable(schema)
        try:
            with _native_warnings() as warnings:
                compiled = self._compiler.compile_json_schema(json.dumps(generation_schema),
                                                              **COMPILE_OPTIONS)
        except Exception as e:  # xgrammar raises RuntimeError with its C++ message
            raise UnsupportedSchemaError(_keyword_in(str(e)), "#", _first_line(e)) from e
        # A safety net behind normal_form: xgrammar says (on stderr, from C++) when it relaxes a
        # schema; a relaxed grammar could write JSON the schema rejects, so refuse it.
        relaxed = [w for w in warnings if "Warning:" in w]
        if relaxed:
            message = relaxed[0].split("Warning:", 1)[1].strip()
            raise UnsupportedSchemaError(_keyword_in(message), "#", f"xgrammar: {message}")
        self._cache[key] = XGrammarCompiled(compiled, schema, self.vocab_size)
        return self._cache[key]


@contextlib.contextmanager
def _native_warnings():
    """Collect what native code writes to file descriptor 2 meanwhile (lines of text)."""
    lines: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += sink.read().decode("utf-8", "replace").splitlines()


def _first_line(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"^\[[\d:]+\] \S+: ", "", msg)


def _keyword_in(message: str) -> str:
    aliases = {"regex": "pattern", "URI": "$ref"}
    for word in re.findall(r"[$A-Za-z]+", message):
        if word in aliases:
            return aliases[word]
        if word in ("pattern", "format", "items", "$ref", "enum", "const", "type", "minimum",
                    "maximum", "minItems", "maxItems", "minLength", "maxLength", "allOf",
                    "oneOf", "anyOf", "properties", "required", "additionalProperties"):
            return word
    return "<schema>"
