"""create_app(settings): the ASGI app. Reads the built runtime and model manifests once."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from models.build import load_manifests
from pyapp import __version__

from . import api, escalations
from .assets import REVALIDATE, Assets
from .settings import Settings

# Cross-origin isolation: SharedArrayBuffer, hence ORT's Wasm threads, needs both headers.
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
# Weights and wasm do not shrink enough to pay for compressing tens of MB per request.
NO_GZIP = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/wasm", "application/octet-stream")


class BuildMissing(RuntimeError):
    pass


def task_artifacts(settings: Settings) -> dict[str, str]:
    index = settings.tasks_dir / "index.json"
    files = json.loads(index.read_text()) if index.exists() else {}
    return {name: f"/tasks/{file}" for name, file in files.items() if name in settings.tasks}


def page_config(settings: Settings, runtime: dict, models: list) -> dict[str, Any]:
    """What the page and its worker need to know; injected into the template as JSON."""
    encoder = next((m for m in models if m.task == "embedding"), None)
    return {
        "version": __version__,
        "runtimeBase": f"/runtime/{runtime['version']}/",
        "modelsBase": "/models/",
        "encoder": encoder.model_dump(include={"model_id", "dtype", "max_tokens", "key",
                                               "estimated_memory_bytes"}) if encoder else None,
        "tasks": list(settings.tasks),
        "taskArtifacts": task_artifacts(settings),
        "defaultTask": settings.default_task,
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    runtime_index = settings.runtime_dir / "runtime.json"
    if not runtime_index.exists():
        raise BuildMissing(f"{runtime_index} is missing: run `make` (or `edge-triage build`) first")
    runtime = json.loads(runtime_index.read_text())
    models = load_manifests(settings.models_dir)

    app = FastAPI(title="edge-triage", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=escalations.lifespan)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.models = models
    app.state.page_config = page_config(settings, runtime, models)
    templates = Environment(loader=FileSystemLoader(settings.web_dir),
                            autoescape=select_autoescape(["html"]))

    @app.middleware("http")
    async def isolation_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in ISOLATION_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.add_middleware(GZipMiddleware, minimum_size=1024, exclude_content_types=NO_GZIP)
    app.include_router(api.router)
    escalations.install(app, settings)  # /api/escalations, /review; the worker runs in lifespan

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    def index() -> HTMLResponse:
        html = templates.get_template("index.html").render(
            config_json=json.dumps(app.state.page_config).replace("<", "\\u003c"),
            version=__version__,
        )
        return HTMLResponse(html, headers={"Cache-Control": REVALIDATE})

    app.mount("/static", Assets(settings.web_dir, immutable=False), name="static")
    app.mount(f"/runtime/{runtime['version']}", Assets(settings.runtime_dir, immutable=True),
              name="runtime")
    app.mount("/models", Assets(settings.models_dir, immutable=True), name="models")
    # Artifact file names carry their content key, so they are immutable too.
    app.mount("/tasks", Assets(settings.tasks_dir, immutable=True), name="tasks")
    return app
