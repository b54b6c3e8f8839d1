"""Fixtures for the escalation tests: a real redis-server, queues on both backends, a clock."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from server.queue import RetryPolicy

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Small numbers so retry tests walk every attempt without sleeping.
RETRY = RetryPolicy(max_attempts=3, base_s=2.0, factor=2.0, max_s=60.0)


class FakeClock:
    """Wall time for the queue, moved by the test instead of by sleeping."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A redis-server of our own on a free loopback port, stopped after the session."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI has it)")
    import redis

    workdir = tmp_path_factory.mktemp("redis")
    for _ in range(3):  # the port can be taken between choosing and binding it
        port = free_port()
        proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()
        if proc.poll() is None:
            break
    else:
        pytest.fail("could not start redis-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def redis_prefix() -> str:
    # One prefix per test: the server is shared by the session, the data is not.
    return f"{{test-{uuid.uuid4().hex[:12]}}}:escalations"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def open_queue(backend, tmp_path, clock, request):
    """``open_queue()`` → a new queue object on the same store (as another process would have)."""
    opened = []
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = redis_prefix()

        def make(**kw):
            from server.queue.redis_streams import RedisQueue

            q = RedisQueue.from_url(url, prefix=prefix, retry=kw.get("retry", RETRY),
                                    clock=kw.get("clock", clock))
            opened.append(q)
            return q
    else:
        def make(**kw):
            from server.queue.sqlite import SqliteQueue

            q = SqliteQueue(tmp_path / "escalations.sqlite3", retry=kw.get("retry", RETRY),
                            clock=kw.get("clock", clock))
            opened.append(q)
            return q
    yield make
    for q in opened:
        q.close()


@pytest.fixture
def queue(open_queue):
    return open_queue()


@pytest.fixture
def settings_for(tmp_path, request):
    """Settings for an app on the real build, with the queue in tmp_path (or on redis)."""
    from server.settings import Settings

    # A build folder of our own (links to the real built files), so nothing the app writes
    # there, such as a generated token, lands in the real build/.
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    for name in ("runtime", "models", "tasks"):
        if not (build / name).exists():
            (build / name).symlink_to(request.getfixturevalue("build_dir") / name)

    def make(backend: str = "sqlite", **overrides) -> Settings:
        # A burst no test reaches unless it is about the rate limit (test_security.py).
        values = dict(build_dir=build, escalation_token=TOKEN, max_body_bytes=4096,
                      max_attempts=3, worker_poll_s=0.05, rate_limit_burst=100_000)
        if backend == "redis":
            values.update(queue="redis", redis_url=request.getfixturevalue("redis_url"),
                          redis_prefix=redis_prefix())
        values.update(overrides)
        return Settings(**values)

    return make


def new_case(key: str = "key-1", **overrides) -> dict:
    body = {
        "idempotency_key": key,
        "task": "telemetry-triage",
        "text": "Fan 2 stalled, rotor speed 0 RPM",
        "local_result": {"output": {"label": "mechanical", "confidence": 0.61,
                                    "scores": {"mechanical": 0.61, "thermal": 0.39}}},
        "reasons": ["confidence 0.610 below threshold 0.85"],
        "created_at": "2025-06-01T12:00:00Z",
    }
    body.update(overrides)
    return body
