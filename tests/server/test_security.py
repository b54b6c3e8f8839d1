"""Hostile requests: security headers, path traversal, size limits, token, rate limit, HEAD/Range,
streaming. In-process (TestClient) on the real build, with the queue in tmp_path."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from server.app import CONTENT_SECURITY_POLICY, SECURITY_HEADERS, create_app
from server.assets import Assets
from server.auth import bearer_ok
from server.limits import MAX_URL_BYTES, RateLimiter

from .conftest import AUTH, TOKEN, new_case

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(settings_for):
    return create_app(settings_for())


@pytest.fixture
def client(app):
    return TestClient(app)


@pytest.fixture
def runtime(client):
    return client.get("/api/manifest").json()["runtime"]


# -- headers ----------------------------------------------------------------------------------

def test_every_kind_of_response_carries_the_security_headers(client, runtime):
    # Pages, files, API, errors and refusals alike: a 404 page is still a document.
    requests = [("GET", "/"), ("HEAD", "/"), ("GET", "/sw.js"), ("GET", "/static/app.js"),
                ("GET", f"/runtime/{runtime['version']}/runtime.json"), ("GET", "/api/health"),
                ("GET", "/api/openapi.json"), ("GET", "/static/nope.js"), ("GET", "/review"),
                ("GET", "/api/escalations"), ("POST", "/api/escalations"),
                ("GET", "/x" * MAX_URL_BYTES)]
    for method, path in requests:
        r = client.request(method, path)
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (method, path[:40], r.status_code, name)


def test_the_policy_allows_only_our_origin_and_wasm_compilation():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert directives["worker-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    # Nothing off-origin, no inline or eval'd JavaScript anywhere in the policy.
    for value in directives.values():
        assert not re.search(r"https?:|\*|'unsafe-inline'|'unsafe-eval'", value), value
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


def test_the_service_worker_sends_the_same_headers_for_static_hosts():
    # A static export has no server to send them: web/sw.js adds them to what it serves.
    sw = (ROOT / "web" / "sw.js").read_text()
    block = re.search(r"const CONTENT_SECURITY_POLICY = (.*?);\n", sw, re.S).group(1)
    policy = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', block))
    assert policy == CONTENT_SECURITY_POLICY
    for name, value in SECURITY_HEADERS.items():
        if name != "Content-Security-Policy":
            assert f'"{name}": "{value}"' in sw, name


def test_no_page_loads_anything_off_origin_or_inline(client):
    # The policy forbids inline scripts; a JSON data block is data, not script.
    for path in ("/", "/review"):
        html = client.get(path).text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), path
        for attrs in re.findall(r"<script([^>]*)>", html):
            assert "src=" in attrs or 'type="application/json"' in attrs, (path, attrs)
        assert "<style" not in html, path
        for tag in re.findall(r"<[a-zA-Z][^>]*>", re.sub(r"<script.*?</script>", "", html, flags=re.S)):
            assert not re.search(r"\s(on[a-z]+|style)\s*=", tag), (path, tag)  # inline handler/style


def test_no_api_docs_page_that_would_load_swagger_from_a_cdn(client):
    assert client.get("/api/docs").status_code == 404
    assert client.get("/api/openapi.json").status_code == 200


def files_app(folder: Path) -> Starlette:
    """An app serving ``folder`` the way server/app.py mounts its folders."""
    return Starlette(routes=[Mount("/", app=Assets(folder, immutable=True))])


# -- paths ------------------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../pyproject.toml",                    # plain
    "/static/%2e%2e/pyproject.toml",                # encoded
    "/static/%2E%2E%2Fpyproject.toml",              # encoded, upper case
    "/static/%252e%252e/pyproject.toml",            # double-encoded
    "/static/%252e%252e%252fpyproject.toml",
    "/static/..%252fpyproject.toml",
    "/static/%c0%ae%c0%ae/pyproject.toml",          # overlong UTF-8 dots
    "/static//etc/passwd",                          # absolute
    "/static/%2fetc%2fpasswd",
    "/models//etc/passwd",
    "/static/..\\pyproject.toml",                   # backslash
    "/static/..%5cpyproject.toml",
    "/static/..%255cpyproject.toml",
    "/static/C:%5cWindows%5cwin.ini",
    "/static/%00app.js",                            # NUL
    "/static/app.js%00.png",
    "/runtime/../../pyproject.toml",
    "/tasks/..%2f..%2fpyproject.toml",
    "/static/./../server/app.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_every_form_is_404(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "[project]" not in r.text and "root:" not in r.text and "create_app" not in r.text


def test_a_symlink_out_of_a_served_folder_is_404(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "inside.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("secret")
    (served / "link.txt").symlink_to(tmp_path / "secret.txt")
    (served / "dir").symlink_to(tmp_path)
    client = TestClient(files_app(served))
    assert client.get("/inside.txt").text == "inside"
    for path in ("/link.txt", "/dir/secret.txt"):
        r = client.get(path)
        assert r.status_code == 404 and "secret" not in r.text, path


@pytest.mark.parametrize("path", ["/static/", "/static", "/models/", "/tasks/", "/static/icons/"])
def test_no_directory_listings(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "<ul" not in r.text and "app.js" not in r.text


# -- HEAD, Range, streaming -------------------------------------------------------------------

def test_head_has_the_get_headers_and_no_body(client):
    get = client.get("/static/app.js", headers={"Accept-Encoding": "identity"})
    head = client.head("/static/app.js", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    for name in ("content-length", "content-type", "etag", "last-modified", "cache-control",
                 "accept-ranges", "content-security-policy"):
        assert head.headers[name] == get.headers[name], name
    assert int(head.headers["content-length"]) == len(get.content)


def test_range_forms(client):
    whole = client.get("/static/app.js", headers={"Accept-Encoding": "identity"}).content
    size = len(whole)
    cases = {"bytes=0-9": whole[:10], "bytes=10-": whole[10:], "bytes=-7": whole[-7:],
             f"bytes={size - 1}-{size + 50}": whole[-1:]}
    for spec, expected in cases.items():
        # gzip would change the bytes a range refers to: ranges must arrive as stored.
        r = client.get("/static/app.js", headers={"Range": spec, "Accept-Encoding": "gzip"})
        assert r.status_code == 206, spec
        assert r.content == expected, spec
        assert "content-encoding" not in r.headers, spec
        start = size - len(expected) if spec.startswith("bytes=-") else int(spec[6:].split("-")[0])
        assert r.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{size}"
    r = client.get("/static/app.js", headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    multi = client.get("/static/app.js", headers={"Range": "bytes=0-1,5-6"})
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")
    assert whole[:2] in multi.content and whole[5:7] in multi.content
    # A stale If-Range gets the whole current file, not a range of a different version.
    stale = client.get("/static/app.js", headers={"Range": "bytes=0-9", "If-Range": '"stale"',
                                                  "Accept-Encoding": "identity"})
    assert stale.status_code == 200 and stale.content == whole


def test_files_are_streamed_not_read_whole(tmp_path):
    # A 64 MiB file (sparse: costs no disk) served through the app's file class. Reading it
    # whole would allocate 64 MiB; streaming allocates one chunk at a time.
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    client = TestClient(files_app(tmp_path))
    received = 0
    tracemalloc.start()
    try:
        with client.stream("GET", "/big.bin") as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received += len(chunk)
                tracemalloc.reset_peak()  # count what the server holds, not what we just got
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == 64 * 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while streaming"


# -- size limits ------------------------------------------------------------------------------

def test_a_url_over_the_limit_is_414(client):
    r = client.get("/static/" + "a" * MAX_URL_BYTES)
    assert r.status_code == 414 and "limit" in r.json()["detail"]


def test_any_request_body_over_the_limit_is_413(settings_for):
    client = TestClient(create_app(settings_for(max_request_bytes=1000)))
    r = client.post("/review/login", content=b"token=" + b"x" * 2000,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    # Without Content-Length too: the bytes actually received are counted.
    r = client.post("/review/login", content=iter([b"token=", b"x" * 2000]),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


# -- token and rate limit ---------------------------------------------------------------------

def test_the_token_compare_is_constant_time():
    # hmac.compare_digest, not ==: timing must not depend on how many leading bytes match.
    import inspect

    from server import auth

    assert "compare_digest" in inspect.getsource(auth.token_matches)
    assert auth.token_matches(TOKEN, TOKEN) and not auth.token_matches(TOKEN[:-1] + "x", TOKEN)
    assert not auth.token_matches("", TOKEN) and not auth.token_matches("ä" * 5, TOKEN)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", f"Basic {TOKEN}", f"bearer{TOKEN}",
                                    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"])
def test_every_wrong_authorization_is_refused(client, header):
    r = client.get("/api/escalations", headers={"Authorization": header} if header else {})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_the_rate_limiter_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.wait_s("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.wait_s("a") == pytest.approx(0.5)
    assert limiter.wait_s("b") == 0  # per client
    now[0] += 0.5
    assert limiter.wait_s("a") == 0 and limiter.wait_s("a") > 0


def test_the_escalation_api_is_rate_limited_per_client_with_retry_after(settings_for):
    app = create_app(settings_for(rate_limit_per_s=1.0, rate_limit_burst=5))
    client = TestClient(app)
    codes = [client.post("/api/escalations", json=new_case(f"k{i}"), headers=AUTH).status_code
             for i in range(8)]
    assert codes == [201] * 5 + [429] * 3
    r = client.get("/api/escalations", headers=AUTH)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "Retry after" in r.json()["detail"]
    assert app.state.queue.stats()["total"] == 5  # refused posts stored nothing
    # Wrong tokens use up the same budget: guessing is as slow as using.
    other = TestClient(app, client=("10.0.0.9", 5000))
    bad = {"Authorization": "Bearer guess"}
    assert [other.get("/api/escalations", headers=bad).status_code for _ in range(6)] == \
        [401] * 5 + [429]
    time.sleep(1.05)
    assert client.post("/api/escalations", json=new_case("k9"), headers=AUTH).status_code == 201


def test_review_sign_in_is_rate_limited(settings_for):
    client = TestClient(create_app(settings_for(rate_limit_per_s=0.5, rate_limit_burst=2)),
                        follow_redirects=False)
    codes = [client.post("/review/login", data={"token": "guess"}).status_code for _ in range(3)]
    assert codes[-1] == 429 and all(c != 429 for c in codes[:2])


def test_bearer_ok_ignores_surrounding_space_only():
    class Req:
        def __init__(self, value):
            self.headers = {"authorization": value}

    assert bearer_ok(Req(f"Bearer {TOKEN}"), TOKEN)
    assert bearer_ok(Req(f"bearer  {TOKEN} "), TOKEN)
    assert not bearer_ok(Req(f"Bearer {TOKEN} extra"), TOKEN)
