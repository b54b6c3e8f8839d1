"""The enforceable rewrite of a schema: narrower than the original, never wider, or refused.

Each rewrite is checked with ``jsonschema`` against the *original* schema: instances the rewrite
accepts must validate, and the instances that made the original keyword hard (overlapping oneOf
branches, a missing dependency) must be rejected by the rewrite.
"""

from __future__ import annotations

import jsonschema
import pytest

from pyapp.grammar import UnsupportedSchemaError, enforceable

AREA = {  # JSONSchemaBench GlaiveAI style: exactly one group of dimensions
    "type": "object",
    "properties": {"radius": {"type": "number"}, "length": {"type": "number"},
                   "width": {"type": "number"}, "base": {"type": "number"},
                   "height": {"type": "number"}},
    "oneOf": [{"required": ["radius"]}, {"required": ["length", "width"]},
              {"required": ["base", "height"]}],
}


def accepts(schema, instance) -> bool:
    # Draft 7: the last draft with ``dependencies``; oneOf/anyOf/allOf mean the same in all.
    return jsonschema.Draft7Validator(schema).is_valid(instance)


def strict(schema):
    """What strict generation can produce: objects without properties the schema does not list."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "format": "country-code"}, {"type": "string"}),
    ({"type": "string", "format": "date", "maxLength": 10}, {"type": "string", "maxLength": 10}),
    ({"type": "string", "format": "email"}, {"type": "string", "format": "email"}),
])
def test_formats_the_engine_does_not_enforce_are_dropped(schema, expected):
    assert enforceable(schema) == expected


def test_pattern_with_lengths_is_refused():
    with pytest.raises(UnsupportedSchemaError, match="pattern together with minLength"):
        enforceable({"type": "string", "pattern": "^[a-z]+$", "maxLength": 8})


@pytest.mark.parametrize("branches", [
    [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}],
    [{"type": "string"}, {"type": "integer"}],
    [{"const": "a"}, {"type": "number"}],
])
def test_one_of_with_disjoint_types_becomes_any_of(branches):
    assert enforceable({"oneOf": branches}) == {"anyOf": branches}


def test_one_of_with_a_discriminating_enum_becomes_any_of():
    schema = {"type": "object", "oneOf": [
        {"properties": {"kind": {"enum": ["code"]}, "n": {"type": "integer"}}, "required": ["kind"]},
        {"properties": {"kind": {"const": "token"}, "n": {"type": "integer"}}, "required": ["kind"]},
    ]}
    assert "anyOf" in enforceable(schema) and "oneOf" not in enforceable(schema)


@pytest.mark.parametrize("branches", [
    [{"type": "number"}, {"type": "integer"}],  # 1 matches both
    [{"type": "object"}, {"type": "object", "properties": {"a": {"type": "string"}}}],
    [{"properties": {"kind": {"enum": ["a", "b"]}}, "required": ["kind"]},
     {"properties": {"kind": {"enum": ["b"]}}, "required": ["kind"]}],
])
def test_one_of_that_may_overlap_is_refused(branches):
    with pytest.raises(UnsupportedSchemaError, match="oneOf"):
        enforceable({"oneOf": branches})


def test_one_of_required_groups_are_split_so_exactly_one_matches():
    rewritten = strict(enforceable(AREA))
    assert "oneOf" not in rewritten
    # Whatever the rewrite allows matches exactly one branch of the original.
    for instance in ({"radius": 1}, {"length": 1, "width": 2}, {"base": 1, "height": 2},
                     {"radius": 1, "base": 2}, {"length": 1, "width": 2, "base": 3}):
        if accepts(rewritten, instance):
            assert accepts(AREA, instance), instance
    assert accepts(rewritten, {"radius": 1}) and accepts(rewritten, {"base": 1, "height": 2})
    # The overlap the original forbids is now impossible to generate.
    assert not accepts(rewritten, {"radius": 1, "length": 2, "width": 3})


def test_one_of_that_cannot_hold_is_refused():
    # Every dimension required *and* exactly one group: no instance can satisfy it.
    impossible = {**AREA, "required": ["radius", "length", "width", "base", "height"]}
    with pytest.raises(UnsupportedSchemaError, match="both can match"):
        enforceable(impossible)


def test_dependencies_become_required_properties():
    schema = {"type": "object", "properties": {"card": {"type": "string"},
                                               "billing": {"type": "string"}},
              "dependencies": {"card": ["billing"], "unlisted": ["card"]}}
    rewritten = enforceable(schema)
    assert rewritten["required"] == ["billing"] and "dependencies" not in rewritten
    assert not accepts(schema, {"card": "x"}) and not accepts(rewritten, {"card": "x"})


def test_an_optional_trigger_whose_dependency_is_not_listed_is_never_generated():
    schema = {"type": "object", "properties": {"shape": {"type": "string"}},
              "dependentRequired": {"shape": ["circle"]}}
    assert enforceable(schema)["properties"] == {}


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"shape": {"type": "string"}}, "required": ["shape"],
     "dependencies": {"shape": ["circle"]}},
    {"type": "object", "properties": {"a": {"type": "string"}},
     "dependencies": {"a": {"required": ["b"]}}},
])
def test_dependencies_that_cannot_be_rewritten_are_refused(schema):
    with pytest.raises(UnsupportedSchemaError, match="dependencies"):
        enforceable(schema)


def test_all_of_plain_object_schemas_are_merged():
    schema = {"definitions": {"address": {"type": "object", "properties": {
        "street": {"type": "string"}}, "required": ["street"]}},
        "allOf": [{"$ref": "#/definitions/address"},
                  {"properties": {"kind": {"enum": ["home", "work"]}}, "required": ["kind"]}]}
    rewritten = enforceable(schema)
    assert rewritten == {"type": "object", "required": ["street", "kind"], "properties": {
        "street": {"type": "string"}, "kind": {"enum": ["home", "work"]}},
        "definitions": schema["definitions"]}
    assert accepts(schema, {"street": "x", "kind": "home"})


@pytest.mark.parametrize("schema", [
    {"definitions": {"Foo": {"properties": {"child": {"allOf": [
        {"$ref": "#/definitions/Foo"}, {"type": "object"}]}}}},
     "properties": {"foo": {"$ref": "#/definitions/Foo"}}},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
               {"type": "object", "properties": {"a": {"type": "integer"}}}]},
    {"allOf": [{"type": "object", "additionalProperties": False}, {"required": ["a"]}]},
])
def test_all_of_that_cannot_be_merged_is_refused(schema):
    with pytest.raises(UnsupportedSchemaError, match="allOf"):
        enforceable(schema)


def test_the_users_schema_is_not_modified():
    schema = {"type": "string", "format": "country-code"}
    enforceable(schema)
    assert schema == {"type": "string", "format": "country-code"}


def test_any_of_next_to_properties_is_merged_into_every_branch():
    schema = {"type": "object", "properties": {"length": {"type": "number"},
                                               "radius": {"type": "number"}},
              "anyOf": [{"required": ["length"]}, {"required": ["radius"]}]}
    rewritten = enforceable(schema)
    assert set(rewritten) == {"anyOf"}
    for branch in rewritten["anyOf"]:
        assert branch["properties"] == schema["properties"]
    # The branch alone would accept {"length": {}}; the merged one does not.
    assert not accepts(rewritten, {"length": {"description": 1}})
    assert accepts(rewritten, {"length": 2}) and accepts(schema, {"length": 2})


def test_a_required_property_that_is_not_listed_is_listed():
    schema = {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a", "b"]}
    assert enforceable(schema)["properties"] == {"a": {"type": "number"}, "b": {}}
    closed = {**schema, "additionalProperties": False}
    with pytest.raises(UnsupportedSchemaError, match="'b' is required but not listed"):
        enforceable(closed)


def test_a_property_constrained_next_to_and_inside_any_of_gets_both_constraints():
    schema = {"type": "object", "properties": {"shape": {"type": "string"}},
              "anyOf": [{"properties": {"shape": {"enum": ["circle"]}}, "required": ["shape"]},
                        {"properties": {"shape": {"enum": ["square"]}}, "required": ["shape"]}]}
    rewritten = enforceable(schema)
    assert [b["properties"]["shape"] for b in rewritten["anyOf"]] == [
        {"type": "string", "enum": ["circle"]}, {"type": "string", "enum": ["square"]}]
    conflicting = {"type": "object", "properties": {"n": {"type": "string"}},
                   "anyOf": [{"properties": {"n": {"type": "integer"}}}]}
    with pytest.raises(UnsupportedSchemaError, match="'n' has a schema here and another"):
        enforceable(conflicting)


def test_enum_values_of_another_type_are_dropped_or_refused():
    assert enforceable({"type": "number", "enum": [1, 2.5, "x"]}) == {"type": "number",
                                                                        "enum": [1, 2.5]}
    with pytest.raises(UnsupportedSchemaError, match="no enum value is of type object"):
        enforceable({"type": "object", "enum": ["AES", "3DES"]})
    algo = {"type": "object", "enum": ["AES", "3DES"]}
    optional = {"type": "object", "properties": {"algo": algo, "n": {"type": "integer"}}}
    assert enforceable(optional)["properties"] == {"n": {"type": "integer"}}
    with pytest.raises(UnsupportedSchemaError, match="required"):
        enforceable({**optional, "required": ["algo"]})
