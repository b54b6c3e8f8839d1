"""Grammar: schema coverage checks, the xgrammar engine on the model's tokenizer, constrained output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyapp.grammar import UnsupportedSchemaError, check_schema


def _llm_dir(build_dir: Path) -> Path:
    from models.build import choose_lm, load_manifests

    m = choose_lm(load_manifests(build_dir / "models"))
    return build_dir / "models" / m.model_id


@pytest.fixture(scope="module")
def generator(build_dir):
    from models.cpython.lm import OnnxTextGenerator

    return OnnxTextGenerator.from_dir(_llm_dir(build_dir))


@pytest.fixture(scope="module")
def engine(generator):
    return generator.grammar_engine()


def walk(engine, schema, text, generator) -> tuple[bool, bool]:
    """(every token accepted, finished) for ``text`` under ``schema``."""
    cursor = engine.compile_json_schema(schema).cursor()
    ok = all(cursor.accept(t) for t in generator.encode(text))
    return ok, ok and cursor.is_finished()


ENUM = {"type": "object", "properties": {"level": {"enum": ["low", "high"]}}, "required": ["level"]}
NESTED = {"type": "object", "properties": {"node": {"type": "object", "properties": {
    "id": {"type": "string"}, "rack": {"type": "integer"}}, "required": ["id", "rack"]}},
    "required": ["node"]}
ARRAY = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                                   "minItems": 1, "maxItems": 2}},
         "required": ["tags"]}
BOUNDED = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 5},
                                            "x": {"type": "number", "minimum": 0, "maximum": 1}},
           "required": ["n", "x"]}
OPTIONAL = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}},
            "required": ["a"]}


@pytest.mark.parametrize(("schema", "good", "bad"), [
    (ENUM, '{"level":"high"}', '{"level":"medium"}'),
    (NESTED, '{"node":{"id":"4B","rack":12}}', '{"node":{"id":"4B"}}'),
    (ARRAY, '{"tags":["fan","psu"]}', '{"tags":["a","b","c"]}'),
    (BOUNDED, '{"n":5,"x":0.25}', '{"n":6,"x":0.5}'),
    (OPTIONAL, '{"a":"x"}', '{"b":true}'),
    (OPTIONAL, '{"a":"x","b":false}', '{"a":"x","c":1}'),
])
def test_engine_accepts_valid_and_rejects_invalid_json(engine, generator, schema, good, bad):
    assert walk(engine, schema, good, generator) == (True, True)
    assert walk(engine, schema, bad, generator)[1] is False


def test_compiled_grammars_are_shared_and_cursors_independent(engine, generator):
    g = engine.compile_json_schema(ENUM)
    assert engine.compile_json_schema(json.loads(json.dumps(ENUM))) is g
    a, b = g.cursor(), g.cursor()
    for t in generator.encode('{"level":"low"}'):
        assert a.accept(t)
    assert a.is_finished() and not b.is_finished()


@pytest.mark.parametrize("schema", [ENUM, NESTED, ARRAY, BOUNDED, OPTIONAL])
def test_constrained_generation_validates(generator, engine, schema):
    import jsonschema

    from pyapp.generation import Prompt

    gen = generator.generate_sync(Prompt(user="Give an example object."),
                                  engine.compile_json_schema(schema), max_new_tokens=64)
    assert gen.complete, gen
    jsonschema.validate(json.loads(gen.text), schema)


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"s": {"type": "string", "not": {"const": ""}}}}, "not"),
    ({"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}}, "if"),
    ({"type": "string", "format": "credit-card"}, "format"),
    ({"type": "number", "multipleOf": 0.5}, "multipleOf"),
    ({"type": "array", "items": [{"type": "string"}]}, "items"),
    ({"$ref": "https://example.com/schema.json"}, "$ref"),
    ({"type": "object", "propertyNames": {"pattern": "^a"}}, "propertyNames"),
])
def test_unsupported_keywords_fail_with_their_name(schema, keyword):
    with pytest.raises(UnsupportedSchemaError) as e:
        check_schema(schema)
    assert e.value.keyword == keyword and repr(keyword) in str(e.value)


def test_annotations_and_harmless_values_are_accepted():
    check_schema({"type": "object", "title": "T", "description": "d", "$schema": "x",
                  "properties": {"type": {"type": "string", "default": "a", "examples": ["b"]},
                                 "l": {"type": "array", "uniqueItems": False}},
                  "x-vendor": {"not": 1}})


def test_engine_refuses_before_compiling(engine):
    with pytest.raises(UnsupportedSchemaError, match="uniqueItems"):
        engine.compile_json_schema({"type": "array", "uniqueItems": True})


def test_engine_compiles_the_enforceable_rewrite(engine, generator):
    # oneOf of required groups: xgrammar alone would allow {"radius":1,"length":2,"width":3}.
    schema = {"type": "object", "properties": {"radius": {"type": "number"},
                                               "length": {"type": "number"},
                                               "width": {"type": "number"}},
              "oneOf": [{"required": ["radius"]}, {"required": ["length", "width"]}]}
    assert walk(engine, schema, '{"radius":1}', generator) == (True, True)
    assert walk(engine, schema, '{"length":1,"width":2}', generator) == (True, True)
    assert walk(engine, schema, '{"radius":1,"length":2,"width":3}', generator)[0] is False


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "string", "pattern": "^[0-9]{4}$|^x$"}, "pattern"),  # "Anchor … is ignored"
    ({"$ref": "#node", "definitions": {}}, "$ref"),                   # not a JSON pointer
])
def test_engine_refuses_what_xgrammar_says_it_relaxed(engine, schema, keyword):
    with pytest.raises(UnsupportedSchemaError, match="xgrammar: ") as e:
        engine.compile_json_schema(schema)
    assert e.value.keyword == keyword


def test_browser_engine_refuses_bounds_web_xgrammar_does_not_enforce():
    from pyapp.grammar.coverage import check_web_xgrammar

    check_web_xgrammar({"type": "number", "minimum": 0, "maximum": 100.0, "enum": [0.5]})
    with pytest.raises(UnsupportedSchemaError, match="non-integer bound") as e:
        check_web_xgrammar({"type": "object", "properties": {"x": {"type": "number",
                                                                   "minimum": 1.5}}})
    assert e.value.keyword == "minimum" and e.value.path == "#/properties/x"
