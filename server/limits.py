"""Limits on what one request, and one client, may ask of the server.

- ``RateLimiter``: a token bucket per client address for the escalation API and the review
  sign-in, so a client can neither flood the queue nor guess the token quickly. Over the limit a
  request gets ``429`` with ``Retry-After``; the page's outbox treats that as "send later".
- ``RequestLimits``: an ASGI middleware that refuses URLs over ``MAX_URL_BYTES`` (414) and bodies
  over ``max_request_bytes`` (413), counting the bytes actually received, not only
  Content-Length. Endpoints with a smaller limit (``/api/escalations``) check their own.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_URL_BYTES = 8 * 1024
# Buckets kept at most; the least recently seen client is forgotten first (it starts full again,
# which only ever errs towards letting a request through).
MAX_CLIENTS = 10_000


class RateLimiter:
    """``rate`` requests per second per client on average, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """0 if the client may go ahead now (and charges it one request); else seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, seen = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - seen) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return wait


def client_key(request: Request) -> str:
    # The socket's peer, never X-Forwarded-For: a client could write any address there.
    return request.client.host if request.client else "unknown"


def rate_limited(request: Request) -> None:
    """FastAPI dependency: 429 with Retry-After once this client is over the limit."""
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.wait_s(client_key(request))
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise HTTPException(
            429, f"Too many requests from this client: at most {limiter.rate:g} per second "
                 f"(bursts of {limiter.burst}). Retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)})


class RequestLimits:
    def __init__(self, app: ASGIApp, max_request_bytes: int):
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
        if url_bytes > MAX_URL_BYTES:
            return await _refuse(send, 414, f"URL is {url_bytes:,} bytes; the limit is "
                                            f"{MAX_URL_BYTES:,}.")
        limit = self.max_request_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(send, 413, f"Request body is {int(declared):,} bytes; the limit "
                                            f"is {limit:,}.")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the endpoint's read, so FastAPI answers it like any 413.
                    raise HTTPException(413, f"Request body exceeds the limit of {limit:,} bytes.")
            return message

        await self.app(scope, limited_receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
