"""/review: sign in with the token, see open cases, answer one (validated by the task's model)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import REVIEW_COOKIE
from server.queue.sqlite import SqliteQueue

from .conftest import AUTH, RETRY, TOKEN, new_case


@pytest.fixture
def app(settings_for):
    return create_app(settings_for(handler="review"))


@pytest.fixture
def client(app):
    return TestClient(app)


@pytest.fixture
def signed_in(client):
    r = client.post("/review/login", data={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    return client


def post(client, key="k", **overrides) -> str:
    r = client.post("/api/escalations", json=new_case(key, **overrides), headers=AUTH)
    return r.json()["id"]


def status(client, case_id):
    return client.get(f"/api/escalations/{case_id}", headers=AUTH).json()


def test_the_page_asks_for_the_token_first(client):
    post(client, text="secret case text")
    r = client.get("/review")
    assert r.status_code == 401
    assert 'action="/review/login"' in r.text and "secret case text" not in r.text
    wrong = client.post("/review/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "Wrong token." in wrong.text
    assert REVIEW_COOKIE not in client.cookies


def test_signed_in_the_page_lists_open_cases_escaped(signed_in):
    post(signed_in, text="<script>alert(1)</script> fan stalled")
    page = signed_in.get("/review")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; fan stalled" in page.text
    assert "<script>alert" not in page.text
    assert '<option value="mechanical">' in page.text
    assert "confidence 0.610 below threshold 0.85" in page.text


def test_a_bearer_token_works_instead_of_the_cookie(client):
    assert client.get("/review", headers=AUTH).status_code == 200


def test_answering_with_a_label_completes_the_case(signed_in):
    case_id = post(signed_in)
    r = signed_in.post(f"/review/{case_id}", data={"label": "power", "answer": "", "note": "PSU"},
                       follow_redirects=False)
    assert r.status_code == 303
    got = status(signed_in, case_id)
    assert got["status"] == "answered"
    assert got["answer"] == {"handler": "review", "note": "PSU", "output": {
        "label": "power", "confidence": 1.0,
        "scores": {"thermal": 0.0, "power": 1.0, "network": 0.0, "storage": 0.0,
                   "mechanical": 0.0, "sensor": 0.0, "software": 0.0}}}
    assert "Nothing to review." in signed_in.get("/review").text


def test_answering_with_json_validates_against_the_task_model(signed_in):
    case_id = post(signed_in)
    answer = {"label": "thermal", "confidence": 0.8, "scores": {"thermal": 0.8}}
    signed_in.post(f"/review/{case_id}", data={"answer": json.dumps(answer)})
    assert status(signed_in, case_id)["answer"]["output"] == answer


@pytest.mark.parametrize(("answer", "message"), [
    ("{oops", "The answer is not JSON"),
    (json.dumps({"label": "banana", "confidence": 0.5, "scores": {}}),
     "does not match the telemetry-triage schema: label: Input should be"),
    (json.dumps({"label": "power", "confidence": 7, "scores": {}}),
     "confidence: Input should be less than or equal to 1"),
])
def test_a_bad_answer_is_422_with_the_reason_and_the_case_stays_open(signed_in, answer, message):
    case_id = post(signed_in)
    r = signed_in.post(f"/review/{case_id}", data={"answer": answer})
    assert r.status_code == 422
    assert message in r.text.replace("&#39;", "'")
    assert status(signed_in, case_id)["status"] == "pending"


def test_unknown_answered_and_unauthenticated_answers_are_refused(client, signed_in):
    assert signed_in.post("/review/nope", data={"label": "power"}).status_code == 404
    case_id = post(signed_in)
    signed_in.post(f"/review/{case_id}", data={"label": "power"})
    again = signed_in.post(f"/review/{case_id}", data={"label": "thermal"})
    assert again.status_code == 409
    assert status(signed_in, case_id)["answer"]["output"]["label"] == "power"
    other = post(signed_in, "k2")
    anonymous = TestClient(client.app)
    assert anonymous.post(f"/review/{other}", data={"label": "power"}).status_code == 401
    assert status(signed_in, other)["status"] == "pending"


def test_a_case_the_handlers_gave_up_on_can_be_answered_here(signed_in, app, clock, tmp_path):
    app.state.queue.close()
    app.state.queue = queue = SqliteQueue(tmp_path / "clocked.sqlite3", retry=RETRY, clock=clock)
    case_id = post(signed_in)
    for _ in range(RETRY.max_attempts):
        queue.claim("w", lease_s=60)
        queue.fail(case_id, "service down", "w")
        clock.advance(3600)
    assert status(signed_in, case_id)["status"] == "failed"
    assert "service down" in signed_in.get("/review").text
    signed_in.post(f"/review/{case_id}", data={"label": "network"})
    assert status(signed_in, case_id)["status"] == "answered"
