"""The per-deployment escalation token: where it comes from and how a request proves it."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request

from .limits import rate_limited
from .settings import Settings

REVIEW_COOKIE = "edge_triage_review"


def resolve_token(settings: Settings) -> tuple[str, str]:
    """(token, where it came from). Without a configured token, the one in the token file;
    the first process to start writes it."""
    if settings.escalation_token:
        return settings.escalation_token, "EDGE_TRIAGE_ESCALATION_TOKEN"
    path = settings.escalation_token_file
    if not path.exists():
        _create_token_file(path)
    token = path.read_text().strip()
    if not token:
        raise RuntimeError(f"{path} is empty: delete it to generate a new token")
    return token, str(path)


def _create_token_file(path: Path) -> None:
    # Written aside and hard-linked into place: link fails if another process won the race, and
    # nobody ever reads a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def bearer_ok(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(given.strip(), token)


def require_bearer(request: Request) -> None:
    """The escalation API's guard: rate limited per client first (wrong tokens count too, so
    the token cannot be guessed quickly), then the token, compared in constant time."""
    rate_limited(request)
    if not bearer_ok(request, request.app.state.escalation_token):
        raise HTTPException(
            401,
            "Missing or wrong token: send `Authorization: Bearer <token>` with this "
            "deployment's escalation token.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def review_cookie(token: str) -> str:
    """The review page's session cookie: derived from the token, so it is not the token."""
    return hmac.new(token.encode("utf-8"), b"edge-triage review", hashlib.sha256).hexdigest()


def reviewer_ok(request: Request) -> bool:
    token = request.app.state.escalation_token
    cookie = request.cookies.get(REVIEW_COOKIE, "")
    return bearer_ok(request, token) or token_matches(cookie, review_cookie(token))
