"""The schema the grammar is compiled from: a rewrite of the user's schema that accepts a subset of
the instances it accepts, in keywords the engine enforces exactly.

Generation only needs *some* valid instance, so a rewrite may narrow a schema (require more,
allow fewer properties) but never widen it: every output that matches the rewrite still
validates against the original, which is what ``jsonschema`` checks. What cannot be rewritten that
way is refused (``UnsupportedSchemaError``), as before. The grammar is compiled in strict mode —
no property the schema does not list is ever generated — and several proofs below rely on that.

Rewrites (each measured on JSONSchemaBench, where xgrammar 0.2.8 warns and relaxes instead):

* ``format`` the engine does not know → dropped. Since draft 2019-09 ``format`` is an annotation
  unless a validator opts in, and validators ignore unknown formats; the string stays a string.
* ``format`` or ``pattern`` together with ``minLength``/``maxLength``: xgrammar ignores the
  lengths. The format is dropped (lengths win); a pattern with lengths is refused.
* ``dependencies`` / ``dependentRequired`` with property lists: the dependent properties become
  required (when all are listed properties), or the trigger property is not generated (when
  it is optional), else refused.
* ``oneOf``: xgrammar enforces it as ``anyOf``, which is only right when no generated instance
  can match two branches. It becomes ``anyOf`` when that is proven here: the branches have
  disjoint types, or a property required by every branch has disjoint ``const``/``enum`` values,
  or (branches that only list ``required``) each branch is generated without the properties that
  only the other branches require. Anything else is refused.
* ``allOf`` with several schemas (xgrammar: "support is still ongoing") → merged into one object
  schema when every part is a plain object schema (``$ref``s to such followed); else refused.
* ``anyOf`` next to ``properties``/``required`` (xgrammar generates each branch alone, losing
  them, without a warning) → merged into every branch when the branches are plain object
  schemas.
* ``enum`` values of another type than ``type`` declares → dropped; when none is left an optional
  property is not generated, anything else is refused.
* a ``required`` property that ``properties`` does not list (strict generation would never
  write it; xgrammar drops it silently) → listed, with the schema unlisted properties must
  match; refused when ``additionalProperties`` is false.
"""

from __future__ import annotations

import copy
from typing import Any

from .coverage import FORMATS, UnsupportedSchemaError, check_schema

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$id",
                          "$schema", "readOnly", "writeOnly", "deprecated"})
_OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties"}) | _ANNOTATIONS


def enforceable(schema: Any) -> Any:
    """The schema to compile: ``schema`` rewritten as above, then checked by ``check_schema``.

    >>> enforceable({"type": "string", "format": "country-code"})
    {'type': 'string'}
    >>> enforceable({"oneOf": [{"type": "string"}, {"type": "null"}]})
    {'anyOf': [{'type': 'string'}, {'type': 'null'}]}
    """
    out = _Rewriter(schema).rewrite(copy.deepcopy(schema), "#")
    check_schema(out)
    return out


class _Rewriter:
    def __init__(self, root: Any):
        self.root = root
        self._resolving: set[str] = set()  # references being followed (recursion guard)

    def rewrite(self, schema: Any, path: str) -> Any:
        if not isinstance(schema, dict):
            return schema
        for key in ("properties", "patternProperties", "$defs", "definitions"):
            if isinstance(schema.get(key), dict):
                schema[key] = {k: self.rewrite(v, f"{path}/{key}/{k}") for k, v in schema[key].items()}
        if isinstance(schema.get("properties"), dict):
            self._drop_impossible(schema, path)
        for key in ("items", "additionalProperties", "not", "if", "then", "else", "contains"):
            if isinstance(schema.get(key), dict):
                schema[key] = self.rewrite(schema[key], f"{path}/{key}")
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if isinstance(schema.get(key), list):
                schema[key] = [self.rewrite(s, f"{path}/{key}/{i}") for i, s in enumerate(schema[key])]
        self._strings(schema, path)
        if not self._enum_types(schema):
            if path.rsplit("/", 2)[-2:-1] == ["properties"]:
                return _IMPOSSIBLE  # the parent leaves the property out (_drop_impossible)
            raise UnsupportedSchemaError("enum", path, f"no enum value is of type "
                                         f"{schema['type']}")
        self._dependencies(schema, path)
        if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) > 1:
            schema = self._merge_all_of(schema, path)
        if isinstance(schema.get("oneOf"), list):
            schema = self._one_of(schema, path)
        if isinstance(schema.get("anyOf"), list):
            schema = self._any_of_with_siblings(schema, path)
        self._required_unlisted(schema, path)
        return schema

    # -- required properties the schema does not list -----------------------------------------
    def _required_unlisted(self, schema: dict, path: str) -> None:
        # Strict generation writes listed properties only, so one that is required but not
        # listed would never appear (xgrammar drops it without a warning). List it, with the
        # schema an unlisted property must match.
        if not isinstance(schema.get("required"), list) or \
                ("properties" not in schema and schema.get("type") != "object"):
            return
        props = schema.setdefault("properties", {})
        missing = [name for name in schema["required"] if name not in props]
        if not missing:
            return
        extra = schema.get("additionalProperties", True)
        if extra is False or schema.get("patternProperties"):
            raise UnsupportedSchemaError("required", path, f"{missing[0]!r} is required but "
                                         "not listed in properties")
        for name in missing:
            props[name] = {} if extra is True else extra

    # -- anyOf next to properties/required ----------------------------------------------------
    def _any_of_with_siblings(self, schema: dict, path: str) -> dict:
        # xgrammar generates each branch alone: properties/required next to anyOf are lost
        # (measured: a branch {"required": ["length"]} got an object as "length"). Merge them
        # into every branch when all branches are plain object schemas; else leave it.
        shared = {k: schema[k] for k in ("properties", "required", "additionalProperties")
                  if k in schema}
        branches = schema["anyOf"]
        if not shared or not all(isinstance(b, dict) and set(b) <= _OBJECT_KEYS
                                 and b.get("type", "object") == "object" for b in branches) \
                or schema.get("type", "object") != "object" \
                or not set(schema) <= _OBJECT_KEYS | {"anyOf", "$defs", "definitions"}:
            return schema
        merged_branches = []
        for i, branch in enumerate(branches):
            merged = _merge_objects([shared, branch], "anyOf", f"{path}/anyOf/{i}", "next to anyOf")
            self._required_unlisted(merged, f"{path}/anyOf/{i}")
            merged_branches.append(merged)
        out = {k: v for k, v in schema.items() if k in _ANNOTATIONS | {"$defs", "definitions"}}
        out["anyOf"] = merged_branches
        return out

    # -- strings --------------------------------------------------------------------------
    def _strings(self, schema: dict, path: str) -> None:
        lengths = "minLength" in schema or "maxLength" in schema
        if "format" in schema and (schema["format"] not in FORMATS or lengths):
            del schema["format"]
        if "pattern" in schema and lengths:
            raise UnsupportedSchemaError("pattern", path, "a pattern together with minLength/"
                                         "maxLength: the grammar enforces only one of them")

    # -- enum next to type ------------------------------------------------------------------
    def _enum_types(self, schema: dict) -> bool:
        # xgrammar writes any enum value, whatever "type" says (measured: "AES192" for an enum
        # of strings declared type object). Keep the values of the declared type only; False
        # when none is left (no instance can match).
        if not isinstance(schema.get("enum"), list) or "type" not in schema:
            return True
        declared = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        wanted = set(declared) | ({"integer"} if "number" in declared else set())
        schema["enum"] = [v for v in schema["enum"] if _json_type(v) in wanted]
        return bool(schema["enum"])

    def _drop_impossible(self, schema: dict, path: str) -> None:
        # A property no value can match: strict generation leaves it out when it is optional.
        for name, sub in list(schema["properties"].items()):
            if sub is _IMPOSSIBLE:
                if name in schema.get("required", []):
                    raise UnsupportedSchemaError("enum", f"{path}/properties/{name}", "no enum "
                                                 "value has the declared type, and it is required")
                del schema["properties"][name]

    # -- dependencies ---------------------------------------------------------------------
    def _dependencies(self, schema: dict, path: str) -> None:
        for key in ("dependencies", "dependentRequired"):
            deps = schema.get(key)
            if not isinstance(deps, dict) or not deps:
                continue
            props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
            required = list(schema.get("required", []))
            for trigger, needed in deps.items():
                if not isinstance(needed, list):
                    raise UnsupportedSchemaError(key, path, f"the schema form of {key} "
                                                 f"(for {trigger!r})")
                if trigger not in props and not schema.get("patternProperties"):
                    continue  # strict generation never writes an unlisted property
                if all(name in props for name in needed):
                    required += [name for name in needed if name not in required]
                elif trigger not in required:
                    props = {k: v for k, v in props.items() if k != trigger}
                    schema["properties"] = props
                else:
                    raise UnsupportedSchemaError(key, path, f"{trigger!r} is required and needs "
                                                 f"{needed!r}, which the schema does not list")
            if required:
                schema["required"] = required
            del schema[key]

    # -- allOf ----------------------------------------------------------------------------
    def _merge_all_of(self, schema: dict, path: str) -> dict:
        parts = [self._resolve(part, path, set()) for part in schema["allOf"]]
        keep = {k: v for k, v in schema.items() if k in ("$defs", "definitions")}
        rest = {k: v for k, v in schema.items() if k != "allOf" and k not in keep}
        for part in [rest, *parts]:
            if not isinstance(part, dict) or not set(part) <= _OBJECT_KEYS \
                    or part.get("type", "object") != "object" \
                    or part.get("additionalProperties", True) not in (True, {}):
                raise UnsupportedSchemaError("allOf", path, "allOf of several schemas is merged "
                                             "only when each is a plain object schema")
        # additionalProperties here is true or {}: no constraint, so not carried over.
        plain = [{k: v for k, v in part.items() if k != "additionalProperties"}
                 for part in [rest, *parts]]
        merged = _merge_objects(plain, "allOf", path, "in another allOf part")
        for key in _ANNOTATIONS & set(rest):
            merged[key] = rest[key]
        merged.update(keep)  # where the parts' own references point
        return merged

    def _resolve(self, part: Any, path: str, seen: set[str]) -> Any:
        ref = part.get("$ref") if isinstance(part, dict) else None
        if ref is None:
            return part
        if set(part) - {"$ref"} - _ANNOTATIONS or not isinstance(ref, str) \
                or not ref.startswith("#/") or ref in seen or ref in self._resolving:
            raise UnsupportedSchemaError("allOf", path, f"cannot merge the reference {ref!r}")
        target: Any = self.root
        for step in ref[2:].split("/"):
            step = step.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or step not in target:
                raise UnsupportedSchemaError("$ref", path, f"{ref!r} points nowhere")
            target = target[step]
        self._resolving.add(ref)
        try:
            target = self.rewrite(copy.deepcopy(target), ref)
        finally:
            self._resolving.discard(ref)
        return self._resolve(target, path, seen | {ref})

    # -- oneOf ----------------------------------------------------------------------------
    def _one_of(self, schema: dict, path: str) -> dict:
        branches = schema["oneOf"]
        if "anyOf" in schema:
            raise UnsupportedSchemaError("oneOf", path, "oneOf next to anyOf")
        if len(branches) <= 1 or self._disjoint_types(branches, schema) \
                or self._discriminated(branches, schema):
            schema["anyOf"] = schema.pop("oneOf")
            return schema
        if all(isinstance(b, dict) and set(b) <= {"required"} | _ANNOTATIONS for b in branches) \
                and set(schema) <= _OBJECT_KEYS | {"oneOf"}:
            return self._split_required(schema, path)
        raise UnsupportedSchemaError("oneOf", path, "its branches may overlap, and the grammar "
                                     "can only enforce 'at least one' (anyOf)")

    def _types(self, branch: Any, parent: dict) -> set[str] | None:
        if isinstance(branch, dict) and "$ref" in branch and len(branch) == 1:
            try:
                branch = self._resolve(branch, "#", set())
            except UnsupportedSchemaError:
                return None
        if not isinstance(branch, dict):
            return None
        declared = branch.get("type", parent.get("type"))
        if "const" in branch:
            values = [branch["const"]]
        elif isinstance(branch.get("enum"), list):
            values = branch["enum"]
        else:
            values = None
        if values is not None:
            return {_json_type(v) for v in values}
        if declared is None:
            return None
        types = set(declared if isinstance(declared, list) else [declared])
        return types | ({"integer"} if "number" in types else set())

    def _disjoint_types(self, branches: list, parent: dict) -> bool:
        seen: set[str] = set()
        for branch in branches:
            types = self._types(branch, parent)
            if types is None or types & seen:
                return False
            seen |= types
        return True

    def _discriminated(self, branches: list, parent: dict) -> bool:
        if not all(isinstance(b, dict) and isinstance(b.get("properties"), dict) for b in branches):
            return False
        parent_required = set(parent.get("required", []))
        names = set.intersection(*(set(b["properties"]) for b in branches))
        for name in sorted(names):
            seen: list[Any] = []
            for b in branches:
                sub = b["properties"][name]
                values = [sub["const"]] if isinstance(sub, dict) and "const" in sub \
                    else sub.get("enum") if isinstance(sub, dict) else None
                required = name in parent_required or name in b.get("required", [])
                if not isinstance(values, list) or not required or any(v in seen for v in values):
                    break
                seen += values
            else:
                return True
        return False

    def _split_required(self, schema: dict, path: str) -> dict:
        props = schema.get("properties", {})
        base_required = list(schema.get("required", []))
        wanted = [list(b.get("required", [])) for b in schema["oneOf"]]
        out = []
        for i, mine in enumerate(wanted):
            excluded: set[str] = set()
            for j, theirs in enumerate(wanted):
                if j == i:
                    continue
                only_theirs = set(theirs) - set(mine) - set(base_required)
                if not only_theirs:
                    raise UnsupportedSchemaError("oneOf", path, f"branch {j} requires nothing "
                                                 f"branch {i} may leave out, so both can match")
                excluded |= only_theirs
            if any(name not in props for name in mine):
                raise UnsupportedSchemaError("oneOf", path, f"branch {i} requires a property the "
                                             "schema does not list")
            branch = {"type": "object",
                      "properties": {k: v for k, v in props.items() if k not in excluded},
                      "required": base_required + [r for r in mine if r not in base_required]}
            if "additionalProperties" in schema:
                branch["additionalProperties"] = schema["additionalProperties"]
            out.append(branch)
        result: dict[str, Any] = {k: schema[k] for k in _ANNOTATIONS & set(schema)}
        result["anyOf"] = out
        return result


#: What ``rewrite`` returns for a property schema no value can match (left out by the parent).
_IMPOSSIBLE: dict[str, Any] = {"not": {}}

#: Keywords whose meaning depends on their siblings: two schemas that both use one of them are
#: not merged key by key.
_ENTANGLED = frozenset({"properties", "additionalProperties", "patternProperties", "items",
                        "prefixItems", "anyOf", "oneOf", "allOf", "$ref", "if", "then", "else"})


def _merge_objects(parts: list[dict], keyword: str, path: str, where: str) -> dict:
    """One object schema that every instance of all ``parts`` (plain object schemas) matches:
    properties intersected by name, required united, one additionalProperties."""
    merged: dict[str, Any] = {"type": "object", "properties": {}}
    required: list[str] = []
    extras = []
    for part in parts:
        for name, sub in part.get("properties", {}).items():
            props = merged["properties"]
            both = _intersect(props[name], sub) if name in props else sub
            if both is None:
                raise UnsupportedSchemaError(keyword, path, f"property {name!r} has a schema here "
                                             f"and another {where}")
            props[name] = both
        required += [r for r in part.get("required", []) if r not in required]
        if "additionalProperties" in part and part["additionalProperties"] not in extras:
            extras.append(part["additionalProperties"])
    if len(extras) > 1:
        raise UnsupportedSchemaError(keyword, path, f"additionalProperties differs from the one "
                                     f"{where}")
    if required:
        merged["required"] = required
    if extras:
        merged["additionalProperties"] = extras[0]
    return merged


def _intersect(a: Any, b: Any) -> Any:
    """One schema meaning "both ``a`` and ``b``", when their keywords do not collide; else None.

    >>> _intersect({"type": "string", "description": "x"}, {"enum": ["a"], "description": "y"})
    {'type': 'string', 'description': 'y', 'enum': ['a']}
    """
    if a == b:
        return a
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    for key in set(a) & set(b):
        if key in _ANNOTATIONS:
            continue
        if key in _ENTANGLED or a[key] != b[key]:
            return None
    return {**a, **b}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]
