"""The server's headers, file serving and API, in-process (no socket)."""

import gzip
import json
import re

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings


@pytest.fixture(scope="module")
def client(build_dir):
    with TestClient(create_app(Settings(build_dir=build_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def runtime(client):
    return client.get("/api/manifest").json()["runtime"]


def test_page_is_cross_origin_isolated_and_carries_config(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["cross-origin-opener-policy"] == "same-origin"
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    assert r.headers["cache-control"] == "no-cache"
    config = json.loads(re.search(r'<script id="config" type="application/json">(.*?)</script>',
                                  r.text).group(1))
    assert config["runtimeBase"].startswith("/runtime/")
    assert config["encoder"]["dtype"] == "uint8"
    # The integer file embeds one text per run in the page, as under CPython; its `gpu` file batches.
    assert config["encoder"]["per_text"] is True
    assert config["encoder"]["gpu"]["per_text"] is False
    assert "telemetry-triage" in config["tasks"]


def test_each_encoder_file_gets_the_heads_made_for_it(client):
    """Wasm pages run the integer file, WebGPU pages its `gpu` entry (q8): each is given the task
    artifacts fitted on its own embeddings, and both are precached for offline use."""
    from pyapp.tasks import create_task

    config = json.loads(re.search(r'<script id="config" type="application/json">(.*?)</script>',
                                  client.get("/").text).group(1))
    precached = {e["url"] for e in json.loads(client.get("/precache.json").text)["entries"]}
    checked = 0
    for name in ("telemetry-triage", "telemetry-category", "clinc150-intent"):
        if name not in config["taskArtifacts"]:
            continue
        encoder = config["taskEncoders"].get(name, config["encoder"])
        assert encoder["key"] != encoder["gpu"]["key"]
        wasm, gpu = config["taskArtifacts"][name], config["gpuTaskArtifacts"][name]
        assert wasm != gpu and {wasm, gpu} <= precached
        task = create_task(name)
        assert client.get(wasm).json()["key"] == task.content_key(encoder["key"])
        assert client.get(gpu).json()["key"] == task.content_key(encoder["gpu"]["key"])
        checked += 1
    assert checked >= 1


def test_every_response_has_isolation_headers(client, runtime):
    for path in ("/api/health", "/static/app.js", f"/runtime/{runtime['version']}/runtime.json"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
        assert r.headers["cross-origin-resource-policy"] == "same-origin"


def test_mime_types(client, runtime):
    base = f"/runtime/{runtime['version']}"
    assert client.get(f"{base}/pyodide/pyodide.asm.wasm").headers["content-type"] == "application/wasm"
    assert client.get(f"{base}/pyodide/pyodide.mjs").headers["content-type"].startswith("text/javascript")
    ort_wasm = next(f["path"] for f in runtime["files"] if f["path"].endswith(".wasm") and "ort/" in f["path"])
    assert client.head(f"{base}/{ort_wasm}").headers["content-type"] == "application/wasm"


def test_content_hashed_paths_are_immutable_others_revalidate(client, runtime):
    r = client.get(f"/runtime/{runtime['version']}/wheels/pyodide-lock.json")
    assert "immutable" in r.headers["cache-control"]
    model = _encoder(client)
    r = client.head(f"/models/{model['model_id']}/config.json")
    assert "immutable" in r.headers["cache-control"]
    assert client.get("/static/app.js").headers["cache-control"] == "no-cache"
    # An old runtime version is simply not there.
    assert client.get("/runtime/000000000000/runtime.json").status_code == 404


def test_etag_and_304(client):
    r = client.get("/static/app.js")
    etag = r.headers["etag"]
    again = client.get("/static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304


def _encoder(client) -> dict:
    return next(m for m in client.get("/api/manifest").json()["models"] if m["task"] == "embedding")


def test_range_requests_return_exact_bytes(client):
    model = _encoder(client)
    url = f"/models/{model['model_id']}/onnx/model_quantized.onnx"
    full_size = next(f["size"] for f in model["files"] if f["path"] == "onnx/model_quantized.onnx")
    r = client.get(url, headers={"Range": "bytes=100-199", "Accept-Encoding": "gzip"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-199/{full_size}"
    assert len(r.content) == 100
    assert "content-encoding" not in r.headers
    tail = client.get(url, headers={"Range": f"bytes={full_size - 10}-"})
    assert len(tail.content) == 10


def test_text_assets_are_compressed_binaries_are_not(client, runtime):
    r = client.get("/static/app.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    w = client.get(f"/runtime/{runtime['version']}/pyodide/pyodide.asm.wasm",
                   headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in w.headers
    raw = client.get("/static/app.js", headers={"Accept-Encoding": "identity"})
    assert "window.edgeTriage" in raw.text
    assert gzip.compress(raw.content)  # sanity: the identity body is the plain file


@pytest.mark.parametrize("path", [
    "/static/../pyproject.toml",
    "/static/%2e%2e/pyproject.toml",
    "/static/%2e%2e%2fpyproject.toml",
    "/static/..%2fserver/app.py",
    "/static/..%5cpyproject.toml",
    "/static/....//pyproject.toml",
    "/models/../../pyproject.toml",
    "/models/%2e%2e/%2e%2e/pyproject.toml",
    "/static/%00app.js",
    "/static//etc/passwd",
    "/tasks/..%2f..%2fpyproject.toml",
])
def test_path_traversal_is_404(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "[project]" not in r.text


def test_health_and_manifest(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    manifest = client.get("/api/manifest").json()
    assert {m["task"] for m in manifest["models"]} >= {"embedding"}
    assert manifest["runtime"]["version"] == health["runtime"]
    task = next(t for t in manifest["tasks"] if t["name"] == "telemetry-triage")
    assert task["schema"]["properties"]["label"]["enum"] == [
        "thermal", "power", "network", "storage", "mechanical", "sensor", "software"]


def test_the_favicon_a_browser_asks_for_is_our_icon(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.content == (Settings().web_dir / "icon.svg").read_bytes()


def test_tasks_that_this_build_cannot_run_are_not_offered(tmp_path):
    from server.site import available_tasks

    bare = Settings(build_dir=tmp_path)  # no trained artifacts, no language model
    assert available_tasks(bare) == ["telemetry-triage"]
