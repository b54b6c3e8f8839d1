"""Grammar-constrained decoding: a JSON schema compiled once into an immutable grammar, walked per
request by a cheap cursor (accept a token, fill the next-token bitmask, finished?).

``coverage.check_schema`` decides, before any engine sees a schema, whether every validation
keyword in it is one the engine enforces; anything else fails at task load with
``UnsupportedSchemaError`` naming the keyword, so the engine never silently relaxes a schema.
``normal_form.enforceable`` first rewrites what can be narrowed into enforced keywords; that
rewrite, not the user's schema, is what both runtimes compile.
"""

from .base import CompiledGrammar, GrammarCursor, GrammarEngine
from .coverage import UnsupportedSchemaError, check_schema
from .normal_form import enforceable

__all__ = [
    "CompiledGrammar",
    "GrammarCursor",
    "GrammarEngine",
    "UnsupportedSchemaError",
    "check_schema",
    "enforceable",
]
