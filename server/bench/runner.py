"""The benchmark's orchestration: one server, one headless Chromium per section, ratios out.

``run_bench(build_dir, report, sections)`` serves the built app in this process together with the
benchmark's own files (web/bench, the reference model, a byte counter), calls each registered
section with a ``BenchContext`` and writes the JSON report and a plot. A section returns a dict;
its ``pairs`` (``Pair.as_dict``) are what gets printed and plotted: ours vs a peer, as a ratio.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
Section = Callable[["BenchContext"], dict[str, Any]]


@dataclasses.dataclass
class Pair:
    """One comparison: ``ours / peer`` (lower is better unless ``higher_is_better``)."""

    name: str
    ours: float
    peer: float
    unit: str
    peer_name: str
    target: float | None = None  # the ratio to stay under (or above, if higher is better)
    higher_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        return self.ours / self.peer if self.peer else None

    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "met": self.met()}


class ByteCounter:
    """Response body bytes the server sent, by kind of file, since the last ``take()``."""

    KINDS = (("runtime", "/runtime/"), ("model", "/models/"), ("model", "/bench/models/"),
             ("model", "/bench/wllama/model.gguf"), ("runtime", "/bench/wllama/"))

    def __init__(self, app):
        self.app = app
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _kind(self, path: str) -> str:
        return next((kind for kind, prefix in self.KINDS if path.startswith(prefix)), "other")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/bench/bytes":
            return await self.app(scope, receive, send)
        kind = self._kind(scope["path"])

        async def counting_send(message):
            if message["type"] == "http.response.body":
                with self._lock:
                    self.counts[kind] = self.counts.get(kind, 0) + len(message.get("body", b""))
            await send(message)

        return await self.app(scope, receive, counting_send)

    def take(self) -> dict[str, int]:
        with self._lock:
            counts, self.counts = self.counts, {}
        return {kind: counts.get(kind, 0) for kind in ("runtime", "model", "other")}


@dataclasses.dataclass
class BenchContext:
    """What a section gets: the running server, the repeats asked for, and a browser driver."""

    origin: str
    build_dir: Path
    repeats: int
    runtime_base: str
    reference_model: str
    log: Callable[[str], None] = print
    # Measurements sections share (one browser run can feed several sections).
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)

    def drive(self, script: Path, job: dict[str, Any]) -> dict[str, Any]:
        """Run a Playwright script (node) with ``job`` as JSON on stdin; its stdout is JSON."""
        proc = subprocess.run(["node", str(script)], input=json.dumps({**job, "origin": self.origin}),
                              cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{script.name} failed ({proc.returncode}): {proc.stderr[-3000:]}")
        for line in proc.stderr.splitlines():
            self.log(f"  {line}")
        return json.loads(proc.stdout)


def bench_app(build_dir: Path, reference_dir: Path):
    """The app as `edge-triage serve` runs it, plus /bench/static (web/bench), /bench/models (the
    reference export), /bench/wllama.html and /bench/wllama/ (wllama's files and the GGUF, staged
    by server/bench/wllama.py) and /bench/bytes (GET: bytes sent since the last call, by kind)."""
    from fastapi.responses import FileResponse, JSONResponse

    from ..app import CONTENT_SECURITY_POLICY, create_app
    from ..assets import Assets
    from ..settings import Settings

    settings = dataclasses.replace(Settings.from_env(), build_dir=build_dir, worker=False)
    app = create_app(settings)
    counter = ByteCounter(app)

    @app.get("/bench/bytes", include_in_schema=False)
    def taken() -> JSONResponse:
        return JSONResponse(counter.take())

    # wllama starts its worker and llama.cpp's threads from blob: URLs of inlined code; only this
    # bench page allows that (the app's policy allows workers from 'self' only).
    wllama_csp = CONTENT_SECURITY_POLICY.replace("worker-src 'self'", "worker-src 'self' blob:")

    @app.get("/bench/wllama.html", include_in_schema=False)
    def wllama_page() -> FileResponse:
        return FileResponse(settings.web_dir / "bench" / "wllama.html",
                            headers={"Content-Security-Policy": wllama_csp})

    app.mount("/bench/wllama", Assets(build_dir / "bench" / "wllama", immutable=False),
              name="bench-wllama")
    app.mount("/bench/static", Assets(settings.web_dir / "bench", immutable=False), name="bench")
    app.mount("/bench/models", Assets(reference_dir, immutable=True), name="bench-models")
    return counter, app.state.site


def run_bench(build_dir: Path, report: Path, sections: dict[str, Section], repeats: int = 3,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    from models.build import build_reference

    from ..browserrun import served

    if not (ROOT / "node_modules" / "@playwright" / "test").exists():
        raise RuntimeError("node_modules is missing: run `make setup` first")
    reference_dir = build_dir / "bench" / "models"
    reference = build_reference(reference_dir, log=log)
    counter, site = bench_app(build_dir, reference_dir)
    results: dict[str, Any] = {}
    with served(counter) as origin:
        context = BenchContext(origin=origin, build_dir=build_dir,
                               repeats=repeats, runtime_base=site.runtime_base,
                               reference_model=reference.model_id, log=log)
        for name, section in sections.items():
            log(f"[bench] {name}")
            started = time.monotonic()
            results[name] = section(context)
            results[name]["seconds"] = round(time.monotonic() - started, 1)
            for pair in results[name].get("pairs", []):
                log("  " + format_pair(pair))
    out = {"machine": _machine(), "repeats": repeats, "sections": results}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(out, indent=1))
    plot = report.with_suffix(".png")
    write_plot(out, plot)
    log(f"wrote {report} and {plot}")
    return out


def format_pair(pair: dict[str, Any]) -> str:
    ratio = pair["ratio"]
    target = pair["target"]
    verdict = ""
    if target is not None:
        sign = "≥" if pair["higher_is_better"] else "≤"
        verdict = f"  target {sign} {target:g}×: {'met' if pair['met'] else 'MISSED'}"
    shown = f"{ratio:.2f}×" if ratio is not None else "n/a"
    return (f"{pair['name']}: ours {pair['ours']:.1f} {pair['unit']} vs {pair['peer_name']} "
            f"{pair['peer']:.1f} {pair['unit']} = {shown}{verdict}")


def write_plot(report: dict[str, Any], path: Path) -> None:
    """One bar per pair: the ratio ours/peer on a log scale, the target as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    pairs = [p for s in report["sections"].values() for p in s.get("pairs", []) if p["ratio"]]
    names = [plot_label(p) for p in pairs]
    rows = sum(n.count("\n") + 1 for n in names)
    fig, ax = plt.subplots(figsize=(8, 0.3 * rows + 0.2 * len(pairs) + 1.2))
    colors = ["tab:gray" if p["met"] is None else "tab:green" if p["met"] else "tab:red"
              for p in pairs]
    ax.barh(names, [p["ratio"] for p in pairs], color=colors)
    for i, p in enumerate(pairs):
        if p["target"] is not None:
            ax.plot([p["target"]] * 2, [i - 0.4, i + 0.4], color="black")
    ax.axvline(1.0, color="gray", linestyle=":")
    ax.set_xscale("log")
    # Plain ratios at 1, 2 and 5 of each decade ("0.5×", "2×"), not 5×10⁻¹; minor ticks
    # unlabelled (they overlapped).
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("ours / peer (black tick: target; green met, red missed)")
    ax.invert_yaxis()
    # "tight": the figure grows to hold the labels, which were cut off at the left edge.
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


#: Characters per line of a pair's label in the plot.
LABEL_WIDTH = 44


def plot_label(pair: dict[str, Any]) -> str:
    """A pair's name and its peer, wrapped to LABEL_WIDTH (peer names run to ~90 characters).

    >>> print(plot_label({"name": "page decode", "peer_name": "wllama 3.13.0 on model.gguf, 2 thread(s), its JSON grammar"}))
    page decode (vs wllama 3.13.0 on model.gguf,
    2 thread(s), its JSON grammar)
    """
    import textwrap

    return "\n".join(textwrap.wrap(f"{pair['name']} (vs {pair['peer_name']})", LABEL_WIDTH))


def _machine() -> dict[str, Any]:
    import os
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": load,
            "python": sys.version.split()[0]}
