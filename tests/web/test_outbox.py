"""web/outbox.js ``readableDetail`` on the bodies the real escalation API refuses with (413, 422,
401), so the outbox shows a refused case's reason as the server's sentence, not as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app

from ..server.conftest import AUTH, new_case, settings_for  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]


def readable(bodies: list[str]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test web/outbox.js")
    script = ("const { readableDetail } = await import(process.argv[1]);"
              "const bodies = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(bodies.map(readableDetail)));")
    done = subprocess.run([node, "--input-type=commonjs", "-e",
                           f"(async () => {{ {script} }})()", str(ROOT / "web" / "outbox.js")],
                          input=json.dumps(bodies), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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
