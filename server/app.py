"""create_app(settings): the ASGI app. Reads the built runtime and model manifests once."""

from __future__ import annotations


from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyapp import __version__

from . import api, escalations
from .assets import REVALIDATE, Assets
from .limits import RateLimiter, RequestLimits
from .settings import Settings
from .site import Site

# Only our origin. 'wasm-unsafe-eval' lets ORT and Pyodide compile WebAssembly (and nothing
# else: no eval of JavaScript); workers (inference worker, ORT's threads) load from 'self' only.
# web/sw.js sends the same policy for static hosts; tests/server check the two agree.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
# Cross-origin isolation: SharedArrayBuffer, hence ORT's Wasm threads, needs COOP and COEP.
SECURITY_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Weights and wasm do not shrink enough to pay for compressing tens of MB per request.
NO_GZIP = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/wasm", "application/octet-stream")


class BuildMissing(RuntimeError):
    pass


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response, errors and refusals included.

    Plain ASGI rather than ``@app.middleware``: it touches only the response start, so file
    bodies stream through untouched.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def _document_known_tasks(app: FastAPI, settings: Settings) -> None:
    """The spec lists the tasks this deployment accepts, so a client generated from it (or
    schemathesis) never sends a case the server must refuse as an unknown task."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            body = schema["paths"]["/api/escalations"]["post"]["requestBody"]["content"]
            body["application/json"]["schema"]["properties"]["task"]["enum"] = \
                escalations.known_tasks(settings)
        return app.openapi_schema

    app.openapi = openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    try:
        site = Site(settings)
    except FileNotFoundError as e:
        raise BuildMissing(str(e)) from None
    runtime = site.runtime
    models = site.models

    # No /api/docs: FastAPI's docs page loads Swagger UI from a CDN, which our policy forbids.
    app = FastAPI(title="edge-triage", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=escalations.lifespan)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.models = models
    app.state.site = site
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    _document_known_tasks(app, settings)

    # Added last = outermost: the headers also go on the limits' own 413/414 refusals.
    app.add_middleware(GZipMiddleware, minimum_size=1024, exclude_content_types=NO_GZIP)
    app.add_middleware(RequestLimits, max_request_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
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

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # Browsers ask for it on any page without an icon link (/api/health, /docs): our icon,
        # not a 404 in the console and the server's log.
        return FileResponse(settings.web_dir / "icon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": REVALIDATE})

    app.mount("/static", Assets(settings.web_dir, immutable=False), name="static")
    app.mount(f"/runtime/{runtime['version']}", Assets(settings.runtime_dir, immutable=True),
              name="runtime")
    app.mount("/models", Assets(settings.models_dir, immutable=True), name="models")
    # Artifact file names carry their content key, so they are immutable too.
    app.mount("/tasks", Assets(settings.tasks_dir, immutable=True), name="tasks")
    return app
