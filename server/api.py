"""JSON API: health and the manifest of what this deployment serves."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pyapp import __version__
from pyapp.tasks import create_task

router = APIRouter(prefix="/api")


@router.get("/health")
def health(request: Request) -> dict:
    state = request.app.state
    return {
        "status": "ok",
        "version": __version__,
        "runtime": state.runtime["version"],
        "models": [m.model_id for m in state.models],
    }


@router.get("/manifest")
def manifest(request: Request) -> dict:
    state = request.app.state
    return {
        "version": __version__,
        "runtime": {"version": state.runtime["version"], "files": state.runtime["files"]},
        "models": [m.model_dump() for m in state.models],
        "tasks": [create_task(name).describe() for name in state.settings.tasks],
    }
