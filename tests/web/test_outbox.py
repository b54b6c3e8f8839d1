"""web/outbox.js's text for the outbox panel, on what the real server sends: ``readableDetail`` on
the bodies the escalation API refuses with (413, 422, 401), so a refused case's reason reads as
the server's sentence, not as JSON; ``answerText`` on the engine handler's answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.handlers import EngineHandler
from server.queue import Case, NewCase

from ..server.conftest import AUTH, new_case, settings_for  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]


def outbox_js(function: str, values: list) -> list:
    """``function`` of web/outbox.js applied to each of ``values`` in node."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test web/outbox.js")
    script = (f"const {{ {function} }} = await import(process.argv[1]);"
              "const values = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              f"console.log(JSON.stringify(values.map((v) => {function}(v))));")
    done = subprocess.run([node, "--input-type=commonjs", "-e",
                           f"(async () => {{ {script} }})()", str(ROOT / "web" / "outbox.js")],
                          input=json.dumps(values), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def readable(bodies: list[str]) -> list[str]:
    return outbox_js("readableDetail", bodies)


def test_a_refused_case_reads_as_the_servers_reason(settings_for):
    client = TestClient(create_app(settings_for()))  # max_body_bytes 4096 here
    too_big = client.post("/api/escalations", json=new_case(text="x" * 5000), headers=AUTH)
    invalid = client.post("/api/escalations", json=new_case(text="   ", task=""), headers=AUTH)
    no_token = client.post("/api/escalations", json=new_case())
    assert [r.status_code for r in (too_big, invalid, no_token)] == [413, 422, 401]
    said = readable([too_big.text, invalid.text, no_token.text, "<h1>502 Bad Gateway</h1>", ""])
    assert said[0] == too_big.json()["detail"] and "4,096 bytes" in said[0]
    assert "task" in said[1] and "text" in said[1] and "{" not in said[1], said[1]
    assert said[2] == no_token.json()["detail"]
    assert said[3:] == ["<h1>502 Bad Gateway</h1>", ""]  # not JSON: as it came


def test_an_answer_reads_as_its_label_or_its_records_short_fields(telemetry_heads):
    """The engine handler's real answers: a classification shows its label, an extraction its
    record's closed-set fields and component (it showed the first 60 characters of the answer's
    JSON, ``{"handler":"engine","model":"SmolLM2-…``); the summary, over 40 characters, is left
    out. A bare output and an unknown shape still read."""
    from models.cpython.engines import open_engine

    engines = {t: open_engine(telemetry_heads, [t]) for t in ("telemetry-triage", "telemetry-extract")}
    handler = EngineHandler(lambda task: engines[task])
    text = "UPS on rack 12 switched to battery after utility power loss"
    answers = [asyncio.run(handler.resolve(Case.new(NewCase.model_validate(new_case(task=t, text=text)),
                                                     now=1.0)))
               for t in engines]
    record = answers[1]["output"]["record"]
    said = outbox_js("answerText", [*answers, {"label": "power"}, {"note": "x"}, None])
    assert said[0] == answers[0]["output"]["label"]
    assert said[1].startswith(f"category: {record['category']}, severity: {record['severity']}")
    assert f"component: {record['component']}" in said[1] and "summary" not in said[1]
    assert said[2:] == ["power", '{"note":"x"}', ""]
