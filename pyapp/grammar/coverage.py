"""Which JSON Schema keywords the grammar enforces, checked before compiling.

Engines differ in what they do with a keyword they cannot turn into grammar: xgrammar 0.2.8, for
example, silently drops ``uniqueItems``, ``not``, ``if``/``then``/``else``, ``propertyNames``,
``dependentRequired``, ``contains``, ``multipleOf`` on non-integers and unknown ``format`` values
(measured: the compiled grammar is identical with and without them). Generating from such a
relaxed grammar can emit JSON the schema rejects, so those schemas are refused here instead, at
task load, with the keyword and where it is.

Keywords that are pure annotations (``title``, ``description``, ``default`` …) and keywords no
JSON Schema draft defines (validators ignore them too) are accepted.
"""

from __future__ import annotations

from typing import Any

#: Validation keywords the grammar enforces (for ``format``/``multipleOf`` see below).
ENFORCED = frozenset({
    "type", "enum", "const",
    "properties", "required", "additionalProperties", "patternProperties",
    "minProperties", "maxProperties",
    "items", "prefixItems", "minItems", "maxItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "format", "multipleOf",
    "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
})
#: Validation keywords the engine does not enforce: a schema using them is refused.
UNSUPPORTED = frozenset({
    "not", "if", "then", "else", "uniqueItems", "contains", "minContains", "maxContains",
    "propertyNames", "dependencies", "dependentRequired", "dependentSchemas",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems", "$dynamicRef",
    "$recursiveRef",
})
#: ``format`` values xgrammar turns into grammar; any other format is refused.
FORMATS = frozenset({
    "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
    "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
    "json-pointer", "relative-json-pointer", "regex",
})

# Where sub-schemas live: keyword → how its value holds them.
_SCHEMA = ("additionalProperties", "items", "not", "if", "then", "else", "contains",
           "propertyNames", "unevaluatedProperties", "unevaluatedItems", "additionalItems")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


class UnsupportedSchemaError(ValueError):
    """A schema uses a keyword the grammar engine cannot enforce.

    >>> check_schema({"type": "array", "uniqueItems": True})
    Traceback (most recent call last):
    ...
    pyapp.grammar.coverage.UnsupportedSchemaError: unsupported JSON Schema keyword 'uniqueItems' at #: the grammar cannot enforce it
    """

    def __init__(self, keyword: str, path: str, detail: str = "the grammar cannot enforce it"):
        self.keyword = keyword
        self.path = path
        super().__init__(f"unsupported JSON Schema keyword {keyword!r} at {path}: {detail}")


def check_schema(schema: Any, path: str = "#") -> None:
    """Raise ``UnsupportedSchemaError`` for the first keyword in ``schema`` that is not enforced."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise UnsupportedSchemaError("<schema>", path, f"a schema must be an object or boolean, "
                                     f"not {type(schema).__name__}")
    for key, value in schema.items():
        if key == "additionalItems" and not isinstance(schema.get("items"), list):
            continue  # validators ignore it unless items is the tuple form (refused below)
        if key in UNSUPPORTED and not _harmless(key, value):
            raise UnsupportedSchemaError(key, path)
        if key == "format" and value not in FORMATS:
            raise UnsupportedSchemaError("format", path, f"format {value!r} is not enforced")
        if key == "multipleOf" and schema.get("type") != "integer":
            raise UnsupportedSchemaError("multipleOf", path, "enforced only for integers")
        if key == "items" and isinstance(value, list):
            raise UnsupportedSchemaError("items", path, "the array (tuple) form of items; "
                                         "use prefixItems")
        if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
            raise UnsupportedSchemaError("$ref", path, f"remote reference {value!r}")
    for key in _SCHEMA:
        if key in schema and isinstance(schema[key], (dict, bool)):
            check_schema(schema[key], f"{path}/{key}")
    for key in _LIST:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                check_schema(sub, f"{path}/{key}/{i}")
    for key in _MAP:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                check_schema(sub, f"{path}/{key}/{name}")


def _harmless(key: str, value: Any) -> bool:
    # Values that constrain nothing: validators accept every instance.
    if key == "uniqueItems":
        return value is False
    if key in ("additionalItems", "unevaluatedProperties", "unevaluatedItems", "propertyNames",
               "contains", "if", "then", "else"):
        return value is True or value == {}
    if key in ("dependencies", "dependentRequired", "dependentSchemas"):
        return value == {}
    return False


def check_web_xgrammar(schema: Any, path: str = "#") -> None:
    """Refuse what web-xgrammar 0.1.27 (the newest on npm) relaxes but PyPI xgrammar 0.2.8
    enforces: a non-integer numeric bound (measured: 1.2 passes ``minimum: 1.5``)."""
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            check_web_xgrammar(sub, f"{path}/{i}")
    if not isinstance(schema, dict):
        return
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        value = schema.get(key)
        if isinstance(value, float) and not value.is_integer():
            raise UnsupportedSchemaError(key, path, "web-xgrammar 0.1.27 does not enforce a "
                                         "non-integer bound")
    for key, sub in schema.items():
        if isinstance(sub, (dict, list)) and key not in ("enum", "const", "default", "examples"):
            check_web_xgrammar(sub, f"{path}/{key}")
