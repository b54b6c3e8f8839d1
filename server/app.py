"""create_app(settings): the ASGI app. Reads the built runtime and model manifests once."""

from __future__ import annotations


from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from pyapp import __version__

from . import api, escalations
from .assets import REVALIDATE, Assets
from .settings import Settings
from .site import Site

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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    try:
        site = Site(settings)
    except FileNotFoundError as e:
        raise BuildMissing(str(e)) from None
    runtime = site.runtime
    models = site.models

    app = FastAPI(title="edge-triage", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=escalations.lifespan)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.models = models
    app.state.site = site

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
        # The page is this deployment's client: it gets the escalation token to send its cases.
        config = site.page_config({"url": "/api/escalations",
                                   "token": getattr(app.state, "escalation_token", None)})
        return HTMLResponse(site.render_index(config), headers={"Cache-Control": REVALIDATE})

    @app.get("/sw.js", include_in_schema=False)
    def service_worker() -> FileResponse:
        return FileResponse(settings.web_dir / "sw.js", media_type="text/javascript",
                            headers={"Cache-Control": REVALIDATE, "Service-Worker-Allowed": "/"})

    @app.get("/precache.json", include_in_schema=False)
    def precache() -> Response:
        return Response(site.precache_json(), media_type="application/json",
                        headers={"Cache-Control": REVALIDATE})

    @app.get("/manifest.webmanifest", include_in_schema=False)
    def web_manifest() -> FileResponse:
        return FileResponse(settings.web_dir / "manifest.webmanifest",
                            media_type="application/manifest+json",
                            headers={"Cache-Control": REVALIDATE})

    app.mount("/static", Assets(settings.web_dir, immutable=False), name="static")
    app.mount(f"/runtime/{runtime['version']}", Assets(settings.runtime_dir, immutable=True),
              name="runtime")
    app.mount("/models", Assets(settings.models_dir, immutable=True), name="models")
    # Artifact file names carry their content key, so they are immutable too.
    app.mount("/tasks", Assets(settings.tasks_dir, immutable=True), name="tasks")
    return app
