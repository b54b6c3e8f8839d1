"""Evaluation in the browser runtime: the real page in headless Chromium, through edgeTriage.run.

``BrowserRunner(build_dir, task)(texts)`` serves the build on a free loopback port (in this
process), drives system Chromium with Playwright (server/browserrun.mjs) and returns the page's
results in order, drawing a progress bar on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` (ASGI) on a free loopback port in a background thread while the block runs, for a
    headless browser to drive (`eval --runtime browser`, `edge-triage bench`); yields its origin."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the server on port {port} did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class BrowserRunner:
    def __init__(self, build_dir: Path, task: str, backend: str = "wasm"):
        self.build_dir = Path(build_dir)
        self.task = task
        self.backend = backend

    def __call__(self, texts: list[str]) -> list[dict]:
        from .app import create_app
        from .settings import Settings

        if not (ROOT / "node_modules" / "@playwright" / "test").exists():
            raise RuntimeError("node_modules is missing: run `make setup` first")
        settings = dataclasses.replace(Settings.from_env(), build_dir=self.build_dir,
                                       worker=False)
        with served(create_app(settings)) as origin:
            return self._drive(f"{origin}/?backend={self.backend}", texts)

    def _drive(self, url: str, texts: list[str]) -> list[dict]:
        with subprocess.Popen(
            ["node", str(ROOT / "server" / "browserrun.mjs"), url, self.task],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            return self._collect(proc, texts)

    def _collect(self, proc: subprocess.Popen, texts: list[str]) -> list[dict]:
        proc.stdin.write(json.dumps(texts))
        proc.stdin.close()
        errors: list[str] = []

        def progress() -> None:
            for line in proc.stderr:
                if line.startswith("progress "):
                    done, total = map(int, line.split()[1:3])
                    filled = int(30 * done / max(total, 1))
                    sys.stderr.write(f"\rbrowser [{'#' * filled}{'.' * (30 - filled)}] "
                                     f"{done}/{total}")
                    sys.stderr.flush()
                else:
                    errors.append(line)

        reader = threading.Thread(target=progress, daemon=True)
        reader.start()
        results = [json.loads(line) for line in proc.stdout]
        proc.wait()
        reader.join(timeout=5)
        sys.stderr.write("\n")
        if proc.returncode != 0 or len(results) != len(texts):
            raise RuntimeError(f"browser run failed ({proc.returncode}): {''.join(errors)[-2000:]}")
        return results
