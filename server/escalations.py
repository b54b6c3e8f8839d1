"""``/api/escalations``: the browser's outbox hands over the cases its local model was unsure of.

A case is stored before the request is acknowledged and is never dropped afterwards; posting the
same ``idempotency_key`` again acknowledges the first case instead of storing a second one, so the
outbox can resend until it sees a 2xx. Handlers (server/handlers.py) answer in the background.

>>> # curl -H "Authorization: Bearer $(cat build/escalation-token)" -d @case.json \\
>>> #      http://127.0.0.1:8000/api/escalations          →  201 {"id": ..., "status": "pending"}
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from pyapp.tasks import TASKS, UnknownTaskError

from . import review
from .auth import require_bearer, resolve_token
from .escalation_runner import EscalationRunner
from .handlers import create_handler, readable
from .queue import NewCase, Status, open_queue
from .requestbody import read_body
from .settings import Settings

router = APIRouter(prefix="/api/escalations", tags=["escalations"],
                   dependencies=[Depends(require_bearer)],
                   responses={401: {"description": "Missing or wrong bearer token"},
                              429: {"description": "Over the per-client rate limit; "
                                                   "Retry-After says when to come back"}})


def install(app: FastAPI, settings: Settings) -> None:
    """Open the queue, resolve the token, build the handler and its runner (started by ``lifespan``)."""

    app.state.escalation_token, app.state.escalation_token_source = resolve_token(settings)
    app.state.queue = open_queue(settings)
    app.state.handler = create_handler(settings)
    app.state.escalation_runner = None
    app.include_router(router)
    app.include_router(review.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    print(f"escalations: {settings.queue} queue, handler {state.handler.name}, token from "
          f"{state.escalation_token_source}", flush=True)
    if settings.worker and state.handler.automatic:
        state.escalation_runner = EscalationRunner(state.queue, state.handler,
                                                   lease_s=settings.lease_s,
                                                   poll_s=settings.worker_poll_s)
        state.escalation_runner.start()
    try:
        yield
    finally:
        if state.escalation_runner is not None:
            await state.escalation_runner.stop()
            state.escalation_runner = None
        state.queue.close()


def known_tasks(settings: Settings) -> list[str]:
    return [name for name in dict.fromkeys([*settings.tasks, *settings.lm_tasks]) if name in TASKS]


def unprocessable(message: str, errors: list | None = None) -> JSONResponse:
    return JSONResponse({"detail": message, "errors": errors or []}, status_code=422)


@router.post(
    "",
    status_code=201,
    summary="Escalate a case (idempotent by idempotency_key)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": NewCase.model_json_schema()}}}},
    responses={200: {"description": "Already received: the first case's id"},
               401: {"description": "Missing or wrong bearer token"},
               413: {"description": "Body over the size limit"},
               422: {"description": "Invalid case or unknown task"}},
)
async def post_escalation(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    body = await read_body(request, settings.max_body_bytes)
    try:
        case = NewCase.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        return unprocessable(f"Invalid escalation: {readable(e)}", errors)
    tasks = known_tasks(settings)
    if case.task not in tasks:
        return unprocessable(
            f"Unknown task {case.task!r}; known tasks: {', '.join(tasks)}.",
            [{"loc": ["task"], "msg": str(UnknownTaskError(case.task)), "type": "unknown_task"}])
    enqueued = await run_in_threadpool(request.app.state.queue.enqueue, case)
    return JSONResponse(
        {"id": enqueued.case.id, "status": enqueued.case.status, "created": enqueued.created},
        status_code=201 if enqueued.created else 200,
        headers={"Location": f"/api/escalations/{enqueued.case.id}"},
    )


@router.get("", summary="Recent escalations and counts by status")
async def list_escalations(request: Request, status: Status | None = None,
                           limit: int = Query(100, ge=1, le=1000)) -> dict:
    queue = request.app.state.queue
    cases = await run_in_threadpool(queue.list, status, limit)
    stats = await run_in_threadpool(queue.stats)
    return {"stats": stats, "cases": [c.public() for c in cases]}


@router.get("/{case_id}", summary="One escalation: status, answer, attempts, last error",
            responses={404: {"description": "No escalation with this id"}})
async def get_escalation(case_id: str, request: Request) -> dict:
    case = await run_in_threadpool(request.app.state.queue.get, case_id)
    if case is None:
        raise HTTPException(404, f"No escalation with id {case_id!r}.")
    return case.public()
