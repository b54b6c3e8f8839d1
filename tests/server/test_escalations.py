"""POST/GET /api/escalations: token, size limit, validation, idempotency, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import resolve_token
from server.settings import Settings

from .conftest import AUTH, TOKEN, new_case


@pytest.fixture
def app(settings_for, backend):
    return create_app(settings_for(backend))


@pytest.fixture
def client(app):
    return TestClient(app)  # no lifespan: no worker, cases stay pending


def rows(app) -> int:
    return app.state.queue.stats()["total"]


def test_post_stores_a_case_and_get_shows_it(client, app):
    r = client.post("/api/escalations", json=new_case(), headers=AUTH)
    assert r.status_code == 201
    body = r.json()
    assert body["created"] is True and body["status"] == "pending"
    assert r.headers["location"] == f"/api/escalations/{body['id']}"
    got = client.get(f"/api/escalations/{body['id']}", headers=AUTH).json()
    assert got["status"] == "pending"
    assert (got["answer"], got["attempts"], got["last_error"]) == (None, 0, None)
    assert got["task"] == "telemetry-triage" and got["reasons"] == new_case()["reasons"]
    assert "claimed_by" not in got
    assert rows(app) == 1


def test_a_duplicate_key_is_acknowledged_with_the_same_id_and_no_second_row(client, app):
    first = client.post("/api/escalations", json=new_case("same"), headers=AUTH)
    again = client.post("/api/escalations", json=new_case("same"), headers=AUTH)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "created": False}
    assert rows(app) == 1


def test_list_shows_counts_and_cases(client):
    client.post("/api/escalations", json=new_case("a"), headers=AUTH)
    client.post("/api/escalations", json=new_case("b"), headers=AUTH)
    listed = client.get("/api/escalations?status=pending", headers=AUTH).json()
    assert listed["stats"]["pending"] == 2
    assert [c["idempotency_key"] for c in listed["cases"]] == ["a", "b"]
    assert client.get("/api/escalations?status=nope", headers=AUTH).status_code == 422


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": "Bearer"},
])
def test_missing_or_wrong_token_is_401_and_writes_nothing(client, app, headers):
    r = client.post("/api/escalations", json=new_case(), headers=headers)
    assert r.status_code == 401
    assert "Bearer" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/escalations/anything", headers=headers).status_code == 401
    assert client.get("/api/escalations", headers=headers).status_code == 401
    assert rows(app) == 0


def test_a_body_over_the_limit_is_413_by_content_length(client, app):
    r = client.post("/api/escalations", json=new_case(text="x" * 5000), headers=AUTH)
    assert r.status_code == 413
    assert "4,096 bytes" in r.json()["detail"]
    assert rows(app) == 0


def test_the_default_limits_take_the_largest_case_the_page_sends(settings_for):
    """A text as long as the page accepts, of the characters JSON writes longest (``\\u0001``,
    6 bytes each), is escalated, not refused: a 413 would end the case ``failed`` for good."""
    from pyapp.textinput import MAX_INPUT_CHARS

    defaults = Settings()
    app = create_app(settings_for(max_body_bytes=defaults.max_body_bytes,
                                  max_request_bytes=defaults.max_request_bytes))
    scores = {f"intent_{i}": 1 / 151 for i in range(151)}  # clinc150's, the widest local result
    case = new_case(text="\u0001" * MAX_INPUT_CHARS,
                    local_result={"output": {"label": "oos", "confidence": 0.2, "scores": scores}})
    body = json.dumps(case).encode()
    assert len(body) > 6 * MAX_INPUT_CHARS
    r = TestClient(app).post("/api/escalations", content=body,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text[:300]
    assert rows(app) == 1


def test_a_body_over_the_limit_is_413_by_actual_bytes(client, app):
    # Chunked upload: no Content-Length to trust, the bytes themselves are counted.
    payload = json.dumps(new_case(text="x" * 5000)).encode()
    chunks = (payload[i:i + 1000] for i in range(0, len(payload), 1000))
    r = client.post("/api/escalations", content=chunks,
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "limit of 4,096 bytes" in r.json()["detail"]
    assert rows(app) == 0


def test_a_small_chunked_body_is_accepted(client, app):
    payload = json.dumps(new_case()).encode()
    r = client.post("/api/escalations", content=iter([payload[:50], payload[50:]]), headers=AUTH)
    assert r.status_code == 201
    assert rows(app) == 1


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", "Invalid JSON"),
    (json.dumps({k: v for k, v in new_case().items() if k != "text"}), "text: Field required"),
    (json.dumps(new_case(text="   \n ")), "text: Value error, text is blank"),
    (json.dumps(new_case(text="")), "text: String should have at least 1 character"),
    (json.dumps(new_case(created_at="yesterday")), "created_at: Input should be a valid datetime"),
    (json.dumps(new_case(reasons="low confidence")), "reasons: Input should be a valid array"),
    (json.dumps(new_case(local_result=[1, 2])), "local_result: Input should be an object"),
    (json.dumps(new_case(idempotency_key="")), "idempotency_key: String should have at least"),
    (b"[]", "Input should be an object"),
])
def test_invalid_cases_are_422_with_a_readable_message_and_write_nothing(client, app, body,
                                                                          expected):
    r = client.post("/api/escalations", content=body,
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("Invalid escalation: ")
    assert expected in r.json()["detail"]
    assert rows(app) == 0


def test_an_unknown_task_is_422_and_writes_nothing(client, app):
    r = client.post("/api/escalations", json=new_case(task="no-such-task"), headers=AUTH)
    assert r.status_code == 422
    settings = app.state.settings
    known = ", ".join(dict.fromkeys([*settings.tasks, *settings.lm_tasks]))
    assert r.json()["detail"] == f"Unknown task 'no-such-task'; known tasks: {known}."
    assert r.json()["errors"][0]["loc"] == ["task"]
    assert rows(app) == 0


def test_an_unknown_id_is_404(client):
    r = client.get("/api/escalations/nope", headers=AUTH)
    assert r.status_code == 404
    assert r.json()["detail"] == "No escalation with id 'nope'."


def test_200_concurrent_posts_with_50_duplicated_keys_store_150_rows(app):
    keys = [f"key-{i}" for i in range(150)] + [f"key-{i}" for i in range(50)]

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(
                c.post("/api/escalations", json=new_case(k), headers=AUTH) for k in keys))

    responses = asyncio.run(go())
    assert sorted({r.status_code for r in responses}) == [200, 201]
    assert sum(r.status_code == 201 for r in responses) == 150
    ids: dict[str, set[str]] = {}
    for key, r in zip(keys, responses, strict=True):
        ids.setdefault(key, set()).add(r.json()["id"])
    assert all(len(v) == 1 for v in ids.values())
    assert rows(app) == 150
    assert app.state.queue.stats()["pending"] == 150


def test_the_openapi_schema_documents_the_body(client):
    spec = client.get("/api/openapi.json").json()
    body = spec["paths"]["/api/escalations"]["post"]["requestBody"]
    assert "idempotency_key" in body["content"]["application/json"]["schema"]["properties"]


# -- token ------------------------------------------------------------------------------------

def test_without_a_configured_token_one_is_generated_once_and_kept_private(tmp_path):
    settings = Settings(build_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:  # several processes starting at once agree on one token
        tokens = set(pool.map(lambda _: resolve_token(settings), range(16)))
    assert len(tokens) == 1
    token, where = tokens.pop()
    assert len(token) >= 40 and where == str(tmp_path / "escalation-token")
    assert stat.S_IMODE(os.stat(tmp_path / "escalation-token").st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escalation-token"]


def test_a_configured_token_wins_over_the_file(tmp_path):
    assert resolve_token(Settings(build_dir=tmp_path, escalation_token="abc")) == (
        "abc", "EDGE_TRIAGE_ESCALATION_TOKEN")
    assert not (tmp_path / "escalation-token").exists()


def test_serve_start_says_where_the_token_is(settings_for, capsys):
    app = create_app(settings_for(escalation_token=None, worker=False))
    with TestClient(app):
        pass
    assert f"token from {app.state.settings.build_dir / 'escalation-token'}" in \
        capsys.readouterr().out


# -- settings ---------------------------------------------------------------------------------

def test_settings_come_from_edge_triage_environment_variables(tmp_path):
    s = Settings.from_env({
        "EDGE_TRIAGE_BUILD_DIR": str(tmp_path), "EDGE_TRIAGE_QUEUE": "redis",
        "EDGE_TRIAGE_REDIS_URL": "redis://10.0.0.5:6379/2", "EDGE_TRIAGE_HANDLER": "openai",
        "EDGE_TRIAGE_OPENAI_URL": "http://llm:8080/v1", "EDGE_TRIAGE_OPENAI_KEY": "sk",
        "EDGE_TRIAGE_OPENAI_MODEL": "m", "EDGE_TRIAGE_MAX_BODY_BYTES": "1000",
        "EDGE_TRIAGE_MAX_ATTEMPTS": "7", "EDGE_TRIAGE_ESCALATION_TOKEN": "t",
        "EDGE_TRIAGE_WORKER": "0", "EDGE_TRIAGE_SQLITE_PATH": "/var/lib/q.sqlite3",
    })
    assert (s.build_dir, s.queue, s.redis_url, s.handler) == (
        tmp_path, "redis", "redis://10.0.0.5:6379/2", "openai")
    assert (s.openai_url, s.openai_key, s.openai_model) == ("http://llm:8080/v1", "sk", "m")
    assert (s.max_body_bytes, s.max_attempts, s.escalation_token, s.worker) == (1000, 7, "t", False)
    assert str(s.escalation_db) == "/var/lib/q.sqlite3"
    assert Settings.from_env({}).escalation_db == Settings().build_dir / "escalations.sqlite3"


@pytest.mark.parametrize(("env", "message"), [
    ({"EDGE_TRIAGE_QUEUE": "kafka"}, "EDGE_TRIAGE_QUEUE must be sqlite or redis"),
    ({"EDGE_TRIAGE_HANDLER": "magic"}, "EDGE_TRIAGE_HANDLER must be engine, openai or review"),
])
def test_bad_settings_say_which_variable(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_every_escalation_setting_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in ("ESCALATION_TOKEN", "QUEUE", "SQLITE_PATH", "REDIS_URL", "HANDLER",
                 "OPENAI_URL", "OPENAI_KEY", "OPENAI_MODEL", "MAX_BODY_BYTES", "MAX_ATTEMPTS",
                 "WORKER"):
        assert f"EDGE_TRIAGE_{name}" in readme, name
