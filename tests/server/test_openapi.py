"""The API against its own OpenAPI spec (schemathesis), and the escalation body schema fuzzed."""

from __future__ import annotations

import json

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from pydantic import ValidationError

from server.app import create_app
from server.queue import NewCase

from .conftest import AUTH


@pytest.fixture(scope="module")
def api_app(tmp_path_factory, build_dir):
    from server.settings import Settings

    build = tmp_path_factory.mktemp("openapi") / "build"
    build.mkdir()
    for name in ("runtime", "models", "tasks"):
        (build / name).symlink_to(build_dir / name)
    # Rate limit out of reach: schemathesis sends hundreds of requests from one client.
    return create_app(Settings(build_dir=build, escalation_token=AUTH["Authorization"][7:],
                               worker=False, rate_limit_burst=10**9))


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_asgi("/api/openapi.json", api_app)


# Driven through hypothesis directly: schemathesis's pytest plugin does not load under pytest 9.
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_api_conforms_to_its_openapi_spec(api_schema, mode):
    # Every documented operation, with valid and (negative) invalid inputs: no 5xx, only
    # documented status codes and content types, responses that match their schemas.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "GET /api/health", "GET /api/manifest", "POST /api/escalations", "GET /api/escalations",
        "GET /api/escalations/{case_id}"}
    calls = 0
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=40, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=AUTH)

        try:
            check()
        except Unsatisfiable:
            # Nothing to make invalid: no body, and parameters that accept any string.
            assert mode == "negative" and not operation.body, operation.label
    assert calls >= len(operations)


any_char = st.characters(codec=None, categories=None)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(any_char),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda key, text: json.dumps({
                     "idempotency_key": key, "task": "telemetry-triage", "text": text,
                     "created_at": "2025-06-01T12:00:00Z"}, ensure_ascii=False).encode(
                         "utf-8", "surrogatepass"), st.text(any_char, max_size=80),
                     st.text(any_char, max_size=300))))
def test_the_escalation_schema_accepts_or_refuses_any_body_cleanly(body):
    try:
        case = NewCase.model_validate_json(body)
    except ValidationError as e:
        assert e.errors()
        return
    json.dumps(case.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
