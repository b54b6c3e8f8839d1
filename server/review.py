"""``/review``: a page where people answer escalated cases (the ``review`` handler, or any case
an automatic handler gave up on).

Signing in posts the deployment's escalation token once; the page then keeps a cookie derived from
it (HttpOnly, SameSite=Strict, so another site cannot post answers with it). Forms are plain
``application/x-www-form-urlencoded`` posts, parsed here, so no multipart package is needed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from pyapp.tasks import create_task

from .auth import REVIEW_COOKIE, review_cookie, reviewer_ok, token_matches
from .limits import rate_limited
from .handlers import readable
from .queue import Case
from .requestbody import read_body

router = APIRouter(prefix="/review", include_in_schema=False)
OPEN_STATUSES = ("pending", "failed")  # what a person can still answer


def _templates(request: Request) -> Environment:
    state = request.app.state
    if getattr(state, "review_templates", None) is None:
        state.review_templates = Environment(loader=FileSystemLoader(state.settings.web_dir),
                                             autoescape=select_autoescape(["html"]))
    return state.review_templates


def _prefill(case: Case) -> str:
    """The local model's output as a starting point for the answer."""
    local = case.local_result or {}
    output = local.get("output", local) if isinstance(local, dict) else {}
    return json.dumps(output, indent=2, ensure_ascii=False)


def _labels(task: str) -> list[str]:
    schema = create_task(task).output_model.model_json_schema()
    return list(schema.get("properties", {}).get("label", {}).get("enum", []))


async def _page(request: Request, status_code: int = 200, errors: dict[str, str] | None = None,
                drafts: dict[str, str] | None = None, signed_in: bool = True,
                message: str = "") -> HTMLResponse:
    cases: list[Case] = []
    if signed_in:
        queue = request.app.state.queue
        for status in OPEN_STATUSES:
            cases.extend(await run_in_threadpool(queue.list, status, 200))
    html = _templates(request).get_template("review.html").render(
        signed_in=signed_in,
        message=message,
        cases=[{
            "case": c,
            "draft": (drafts or {}).get(c.id, _prefill(c)),
            "error": (errors or {}).get(c.id, ""),
            "labels": _labels(c.task),
        } for c in cases],
    )
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str]:
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


@router.get("", response_class=HTMLResponse)
async def review_page(request: Request) -> HTMLResponse:
    if not reviewer_ok(request):
        return await _page(request, 401, signed_in=False)
    return await _page(request)


@router.post("/login")
async def login(request: Request):
    rate_limited(request)  # one guess at the token per request, at the API's rate
    form = await _form(request)
    token = request.app.state.escalation_token
    if not token_matches(form.get("token", ""), token):
        return await _page(request, 401, signed_in=False, message="Wrong token.")
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(REVIEW_COOKIE, review_cookie(token), httponly=True, samesite="strict",
                        path="/review", secure=request.url.scheme == "https")
    return response


@router.post("/{case_id}")
async def answer(case_id: str, request: Request):
    if not reviewer_ok(request):
        return await _page(request, 401, signed_in=False)
    queue = request.app.state.queue
    case = await run_in_threadpool(queue.get, case_id)
    if case is None:
        raise HTTPException(404, f"No escalation with id {case_id!r}.")
    if case.status == "answered":
        return await _page(request, 409, message=f"Case {case_id} was already answered.")
    form = await _form(request)
    raw = form.get("answer", "")
    try:
        output = _output(case.task, raw, form.get("label", ""))
    except ValueError as e:
        return await _page(request, 422, errors={case_id: str(e)}, drafts={case_id: raw})
    note = form.get("note", "").strip()
    result: dict[str, Any] = {"handler": "review", "output": output}
    if note:
        result["note"] = note
    await run_in_threadpool(queue.complete, case_id, result)
    return RedirectResponse("/review", status_code=303)


def _output(task: str, raw: str, label: str) -> dict[str, Any]:
    """The answer from the form: the JSON text, or a label chosen from the list (certain)."""
    model = create_task(task).output_model
    if label:
        labels = _labels(task)
        data: Any = {"label": label, "confidence": 1.0,
                     "scores": {name: float(name == label) for name in labels}}
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"The answer is not JSON: {e.msg} (line {e.lineno}).") from e
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as e:
        raise ValueError(f"The answer does not match the {task} schema: {readable(e)}") from e
