"""The ``edge-triage`` command: the top of the stack (server → models → pyapp). Subcommands
import what they need when they run, so `--help` stays fast."""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import json
import sys
from pathlib import Path

from models.cpython.engines import open_engine, open_generator

ROOT = Path(__file__).resolve().parent.parent


def _build_dir(args) -> Path:
    return Path(args.build_dir)


def cmd_models_build(args) -> int:
    from models.build import build_all
    from models.taskpacks import build_task_artifacts

    manifests = build_all(_build_dir(args) / "models", force=args.force)
    for m in manifests:
        print(f"{m.model_id}: {m.dtype}, {m.total_bytes / 2**20:.1f} MiB, "
              f"~{m.estimated_memory_bytes / 2**20:.0f} MiB at run time, checks {m.checks}")
    build_task_artifacts(_build_dir(args), manifests)
    return 0


def cmd_runtime_build(args) -> int:
    from server.runtime import build_runtime

    build_runtime(_build_dir(args) / "runtime", force=args.force)
    return 0


def cmd_build(args) -> int:
    return cmd_models_build(args) or cmd_runtime_build(args)


def cmd_serve(args) -> int:
    import uvicorn

    from server.app import BuildMissing, create_app
    from server.settings import Settings

    # EDGE_TRIAGE_* variables configure the server (queue, handler, token...); --build-dir wins.
    try:
        app = create_app(dataclasses.replace(Settings.from_env(), build_dir=_build_dir(args)))
    except BuildMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"edge-triage serving on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_export(args) -> int:
    from server.export import export_site
    from server.settings import Settings

    base = args.base_path if args.base_path.endswith("/") else args.base_path + "/"
    try:
        export_site(Settings(build_dir=_build_dir(args)), Path(args.dir), base=base,
                    api_url=args.api_url, token=args.token)
    except FileNotFoundError as e:  # no build (server/site.py says which file and what to run)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_schemabench(args) -> int:
    from models.schemabench import run_schemabench

    report = run_schemabench(open_generator(_build_dir(args), args.dtype, args.threads), args.set,
                             limit=args.limit, max_new_tokens=args.max_new_tokens,
                             log=lambda line: print(line, file=sys.stderr, flush=True),
                             sample=args.sample)
    print(json.dumps(report, indent=2))
    return 0


def cmd_lm_bench(args) -> int:
    from models.lm_benchmark import run_benchmark

    for dtype in args.dtype.split(","):
        report = run_benchmark(open_generator(_build_dir(args), dtype), args.tokens)
        print(json.dumps(report, indent=2), flush=True)
    return 0


def _encoder_dtype() -> str:
    # The same encoder file the page runs (EDGE_TRIAGE_ENCODER_DTYPE), so both answer alike.
    from server.settings import Settings

    return Settings.from_env().encoder_dtype


def cmd_bench(args) -> int:
    from server.bench import SECTIONS, run_bench

    names = args.sections.split(",") if args.sections else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    if "lm" in names:
        from server.bench.lm import bench_lm

        bench_lm(_build_dir(args))  # refused now, not after the classification sections
    run_bench(_build_dir(args), Path(args.report), {n: SECTIONS[n] for n in names},
              repeats=args.repeats)
    return 0


def cmd_run(args) -> int:
    from pyapp.tasks import UnknownTaskError, create_task
    from pyapp.textinput import InputError

    try:
        create_task(args.task)
    except UnknownTaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (args.text is None) == (args.batch is None):
        print("error: give either TEXT or --batch FILE", file=sys.stderr)
        return 2
    if args.batch:
        try:  # before the model loads: a bad file is an error in a second, not after
            texts = read_batch(Path(args.batch))
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return _run_batch(open_engine(_build_dir(args), [args.task], _encoder_dtype()),
                          args.task, texts)
    engine = open_engine(_build_dir(args), [args.task], _encoder_dtype())
    text = sys.stdin.read() if args.text == "-" else args.text
    try:
        result = asyncio.run(engine.run(args.task, text))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def read_batch(path: Path) -> list:
    """``run --batch``'s texts: a ``.json`` file's JSON array, any other file's lines. A file
    that is neither is an error naming it (a JSON object's keys are not texts to run)."""
    from models.trainingdata import DataFileError, json_kind, parse_json, read_text_file

    raw = read_text_file(path)
    if path.suffix != ".json":
        return raw.splitlines()
    texts = parse_json(raw, str(path))
    if not isinstance(texts, list):
        raise DataFileError(f"{path}: a JSON {json_kind(texts)}; a .json batch is an array of "
                            "texts")
    return texts


def _run_batch(engine, task: str, texts: list) -> int:
    """One JSON line per input, in order: its result, or ``{"error", "text"}`` for an input that
    is not one (exit status 1 then), so that nothing is dropped."""
    from pyapp.textinput import InputError

    async def go() -> int:
        failures = 0
        for text in texts:
            try:
                line = await engine.run(task, text)
            except InputError as e:
                failures += 1
                line = {"error": str(e), "text": text}
            print(json.dumps(line, ensure_ascii=False), flush=True)
        return failures

    return 1 if asyncio.run(go()) else 0


def cmd_eval(args) -> int:
    from models.evaluation import (RuntimeUnavailableError, browser_runner, cpython_runner,
                                  evaluate, file_sha256, select_records, set_browser_runner,
                                  spread, summary_lines)
    from pyapp.tasks import UnknownTaskError, create_task

    try:
        create_task(args.task)
    except UnknownTaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from models.trainingdata import read_jsonl

    data = Path(args.data)
    try:
        records = read_jsonl(data)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # The task is loaded under CPython either way: it decides which records are held out.
    engine = open_engine(_build_dir(args), [args.task], _encoder_dtype())
    task = engine.task(args.task)
    if args.runtime == "browser":
        from server.browserrun import BrowserRunner

        set_browser_runner(lambda name: BrowserRunner(_build_dir(args), name))
        try:
            runner = browser_runner(args.task)
        except RuntimeUnavailableError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    else:
        runner = cpython_runner(engine, args.task)
    selected, note = select_records(task, records, file_sha256(data))
    selected = spread(selected, args.limit)
    if not selected:
        print(f"error: nothing to evaluate ({note})", file=sys.stderr)
        return 2
    report = evaluate(task, selected, runner)
    report.update({"data": str(data), "selection": note, "runtime": args.runtime, "limit": args.limit})
    print("\n".join(summary_lines(report)))
    if args.report:
        out = Path(args.report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


def cmd_report(args) -> int:
    from models.evaluation import REPORT_DATA, write_report

    engine = open_engine(_build_dir(args), list(REPORT_DATA), _encoder_dtype())
    write_report(engine, Path(args.out), data_root=Path(args.data) if args.data else None)
    print(f"wrote {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-triage", description="Small-model triage: build the models and the browser "
        "runtime, serve or export the page, run and score tasks under CPython, and benchmark.",
        epilog="Each command has its own --help. README.md has the details.")
    p.add_argument("--build-dir", default=str(ROOT / "build"),
                   help="where built models and runtime live (default: ./build)")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build models and the browser runtime (cached)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.set_defaults(func=cmd_build)

    models = sub.add_parser("models", help="model pipeline").add_subparsers(dest="sub", required=True)
    mb = models.add_parser("build", help="export, quantise, check and write manifests (cached)")
    mb.add_argument("--force", action="store_true", help="rebuild even if cached")
    mb.set_defaults(func=cmd_models_build)

    rt = sub.add_parser("runtime", help="browser runtime").add_subparsers(dest="sub", required=True)
    rb = rt.add_parser("build", help="copy Pyodide/transformers.js/ORT, fetch wheels, write lock")
    rb.add_argument("--force", action="store_true", help="rebuild even if up to date")
    rb.set_defaults(func=cmd_runtime_build)

    s = sub.add_parser("serve", help="serve the page, runtime and models")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_serve)

    e = sub.add_parser("export", help="write the site as static files for any static host")
    e.add_argument("dir")
    e.add_argument("--base-path", default="/", help="URL path the site is served under (default /)")
    e.add_argument("--api-url", default=None,
                   help="escalation endpoint (e.g. https://host/api/escalations); without it "
                        "escalated cases wait in the browser's outbox")
    e.add_argument("--token", default=None, help="bearer token for --api-url")
    e.set_defaults(func=cmd_export)

    sb = sub.add_parser("schemabench", help="JSONSchemaBench coverage: schemas that load, "
                        "outputs that validate (SET: glaiveai2k, github_easy or a .jsonl path)")
    sb.add_argument("set")
    sb.add_argument("--limit", type=int, default=None, help="first N schemas only")
    sb.add_argument("--sample", type=int, default=None,
                    help="N schemas chosen by a hash of their id (reproducible, whole file)")
    sb.add_argument("--max-new-tokens", type=int, default=256)
    sb.add_argument("--dtype", default=None, help="model variant (default: the manifest's)")
    sb.add_argument("--threads", type=int, default=None,
                    help="onnxruntime threads (default: up to 4); 1 to run two sets side by side")
    sb.set_defaults(func=cmd_schemabench)

    lb = sub.add_parser("lm-bench", help="decode tokens/s with and without the grammar constraint")
    lb.add_argument("--dtype", default="q8", help="comma-separated variants (e.g. q8,q4)")
    lb.add_argument("--tokens", type=int, default=64, help="new tokens per measurement")
    lb.set_defaults(func=cmd_lm_bench)

    bn = sub.add_parser("bench", help="our page vs its peers in headless Chromium: prints "
                        "ratios, writes OUT.json and OUT.png")
    bn.add_argument("--report", default=str(ROOT / "reports" / "bench.json"), metavar="OUT.json")
    bn.add_argument("--repeats", type=int, default=3, help="medians over this many repeats")
    bn.add_argument("--sections", help="comma-separated subset of the registered sections")
    bn.set_defaults(func=cmd_bench)

    r = sub.add_parser("run", help='run a task under CPython: run TASK "text" (- for stdin)')
    r.add_argument("task")
    r.add_argument("text", nargs="?")
    r.add_argument("--batch", metavar="FILE",
                   help="texts from FILE (a .json file: a JSON array; any other: one text a "
                        "line); prints one JSON line per text, {\"error\", \"text\"} for one that "
                        "is not valid input (exit status 1)")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="score a task on a labelled JSON-lines file")
    e.add_argument("task")
    e.add_argument("data", help='JSON lines with "text" and the gold label')
    e.add_argument("--runtime", choices=["cpython", "browser"], default="cpython")
    e.add_argument("--limit", type=int, help="score at most N records, spread through the file")
    e.add_argument("--report", metavar="OUT.json", help="write the full report as JSON")
    e.set_defaults(func=cmd_eval)

    rp = sub.add_parser("report", help="evaluate every data-backed pack: markdown + PNG plots")
    rp.add_argument("--out", default=str(ROOT / "reports" / "eval.md"))
    rp.add_argument("--data", help="data root (default: $EDGE_TRIAGE_DATA or ../shared/data)")
    rp.set_defaults(func=cmd_report)

    # --- models import / list / escalation, escalation-bench: server/model_commands.py ---
    from server.model_commands import add_import_commands

    add_import_commands(models, sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`edge-triage run … --batch F | head`): stop quietly, as other
        # command-line tools do, and keep Python from reporting it again when stdout closes.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for such a command


if __name__ == "__main__":
    sys.exit(main())
