"""Load on loopback with wrk (Debian): model-shard downloads and escalation posts at once.

    .venv/bin/python -m tests.load.run [--port 8790] [--seconds 20] [--connections 32] [--out FILE]

Starts `edge-triage serve` on a fresh SQLite queue (no worker: this measures the server, not
inference), runs two wrk processes side by side (shards.lua, escalations.lua), then checks that
every acknowledged escalation is stored, and reads the server's RSS before and after. A second,
short run with the default per-client rate limit shows refusals are 429s, never errors.
Prints a Markdown table (and writes it with --out). The machine's load is reported with it:
numbers from a shared machine are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOKEN = "load-test-token"


def rss_kib(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+) kB", status, re.M).group(1))  # noqa: E731
    return field("VmRSS"), field("VmHWM")


def get_json(url: str, token: str | None = None) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    for _ in range(10):
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code != 429:  # over the rate limit ourselves after a run: wait as told
                raise
            time.sleep(float(e.headers.get("Retry-After", 1)))
    raise SystemExit(f"{url}: still 429 after 10 tries")


class Server:
    def __init__(self, port: int, db: Path, **env: str):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/edge-triage"), "serve", "--port", str(port), "--log-level",
             "warning"], cwd=ROOT, stdout=subprocess.DEVNULL,
            env={**os.environ, "EDGE_TRIAGE_SQLITE_PATH": str(db), "EDGE_TRIAGE_WORKER": "0",
                 "EDGE_TRIAGE_ESCALATION_TOKEN": TOKEN, **env})
        for _ in range(600):
            try:
                get_json(f"{self.base}/api/health")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited with {self.proc.returncode}") from None
                time.sleep(0.1)
        raise SystemExit("server did not start in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def wrk(script: str, url: str, seconds: int, connections: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s",
         str(HERE / script), url], stdout=subprocess.PIPE, text=True, env={**os.environ, **env})


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"wrk failed ({proc.returncode}):\n{out}")
    data = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))
    data["codes"] = json.loads(re.search(r"^COUNTS (.*)$", out, re.M).group(1))
    data["errors"] = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors",
                                           "timeouts")) + data["codes"]["4xx"] + data["codes"]["5xx"]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("E2E_PORT", 8790)))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32, help="per wrk process")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="edge-triage-load-"))
    server = Server(args.port, tmp / "load.sqlite3", EDGE_TRIAGE_RATE_LIMIT_PER_S="1000000",
                    EDGE_TRIAGE_RATE_LIMIT_BURST="1000000")
    try:
        manifest = get_json(f"{server.base}/api/manifest")
        shards = [f"/models/{m['model_id']}/{piece['path']}" for m in manifest["models"]
                  for pieces in (m.get("shards") or {}).values() for piece in pieces]
        if not shards:
            raise SystemExit("no model shards in this build")
        get_json(f"{server.base}/api/escalations?limit=1", TOKEN)  # warm: first request paths
        rss_before, _ = rss_kib(server.proc.pid)
        load_before = os.getloadavg()[0]
        runs = {
            "shard downloads (4 MiB GET)": wrk("shards.lua", server.base, args.seconds,
                                              args.connections, {"SHARDS": " ".join(shards)}),
            "escalation posts": wrk("escalations.lua", f"{server.base}/api/escalations",
                                    args.seconds, args.connections, {"TOKEN": TOKEN, "RUN": "a"}),
        }
        results = {name: result(proc) for name, proc in runs.items()}
        rss_after, rss_peak = rss_kib(server.proc.pid)
        load_after = os.getloadavg()[0]
        stats = get_json(f"{server.base}/api/escalations?limit=1", TOKEN)["stats"]
        acknowledged = results["escalation posts"]["codes"]["2xx"]
        lost = max(0, acknowledged - stats["total"])
    finally:
        server.stop()

    # The default per-client limit, one client posting as fast as it can: 429s, no errors.
    limited = Server(args.port, tmp / "limited.sqlite3")
    try:
        throttled = result(wrk("escalations.lua", f"{limited.base}/api/escalations", 5, 8,
                               {"TOKEN": TOKEN, "RUN": "b"}))
        limited_rows = get_json(f"{limited.base}/api/escalations?limit=1", TOKEN)["stats"]["total"]
    finally:
        limited.stop()

    lines = [
        f"Loopback, {args.seconds} s, 2 wrk threads × {args.connections} connections per kind, both "
        f"kinds at once; load average {load_before:.1f} → {load_after:.1f} on {os.cpu_count()} "
        "cores (shared machine).", "",
        "| traffic | requests | req/s | MiB/s | p50 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        seconds = r["duration_us"] / 1e6
        lines.append(f"| {name} | {r['requests']:,} | {r['requests'] / seconds:,.0f} | "
                     f"{r['bytes'] / seconds / 2**20:,.1f} | {r['p50_us'] / 1000:.1f} | "
                     f"{r['p99_us'] / 1000:.1f} | {r['max_us'] / 1000:.1f} | {r['errors']} |")
    lines += [
        "",
        f"Server RSS: {rss_before / 1024:.0f} MiB before, {rss_after / 1024:.0f} MiB after "
        f"(peak {rss_peak / 1024:.0f} MiB). Escalations acknowledged (2xx): {acknowledged:,}; "
        f"rows stored: {stats['total']:,}; lost: {lost}.",
        f"Rate limit (defaults, one client, 8 connections, 5 s): {throttled['codes']['2xx']:,} "
        f"accepted, {throttled['codes']['429']:,} refused with 429, "
        f"{throttled['codes']['5xx']} server errors; rows stored {limited_rows:,}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Load on loopback (`make load`)\n\n" + text + "\n")
    failed = (any(r["errors"] for r in results.values()) or lost or throttled["codes"]["5xx"]
              or limited_rows < throttled["codes"]["2xx"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
