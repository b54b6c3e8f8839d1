"""Static files with the headers the browser runtime needs.

Starlette's StaticFiles already answers Range requests, ETag/If-None-Match and refuses paths that
escape its folder; we add MIME types ORT and Pyodide require and Cache-Control by URL kind.
"""

from __future__ import annotations

import mimetypes
import os

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# Browsers refuse to compile streamed wasm or import a module without the right type.
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/json", ".json")
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("application/octet-stream", ".onnx")
mimetypes.add_type("application/octet-stream", ".whl")

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class Assets(StaticFiles):
    """StaticFiles with a Cache-Control policy.

    ``immutable=True`` is for folders whose URL carries a content hash (runtime version, model key):
    such a URL never changes meaning, so browsers may keep it for a year without asking.
    """

    def __init__(self, directory: str | os.PathLike, immutable: bool):
        super().__init__(directory=directory, check_dir=False)
        self.cache_control = IMMUTABLE if immutable else REVALIDATE

    async def get_response(self, path: str, scope: Scope) -> Response:
        # Reject backslashes and encoded separators outright: they only appear in traversal
        # attempts, and some clients normalise them differently from us.
        if "\\" in path or "\x00" in path:
            return Response("Not Found", status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code in (200, 206, 304):
            response.headers["Cache-Control"] = self.cache_control
        return response
