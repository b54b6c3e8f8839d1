"""The benchmark's plumbing (no timings): ratios, verdicts, the byte counter, the plot, the CLI."""

import asyncio

import pytest

from server.bench import SECTIONS
from server.bench.runner import ByteCounter, Pair, format_pair, write_plot


def test_pair_ratio_and_verdict_follow_the_direction_of_better():
    slower = Pair("classify p50", 30.0, 15.0, "ms", "plain", target=1.0)
    assert slower.ratio == 2.0 and slower.met() is False
    assert "2.00×" in format_pair(slower.as_dict()) and "MISSED" in format_pair(slower.as_dict())
    faster = Pair("decode", 30.0, 15.0, "tok/s", "wllama", target=1.5, higher_is_better=True)
    assert faster.met() is True and "met" in format_pair(faster.as_dict())
    assert Pair("x", 1.0, 0.0, "ms", "peer", 1.0).as_dict()["ratio"] is None
    assert Pair("x", 1.0, 2.0, "ms", "peer").met() is None  # no target, no verdict


def test_byte_counter_counts_bodies_by_kind_and_resets():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await send({"type": "http.response.body", "body": b"y" * 5})

    counter = ByteCounter(app)

    async def get(path):
        async def send(message):
            pass
        await counter({"type": "http", "path": path}, None, send)

    for path in ("/runtime/abc/pyodide/pyodide.asm.wasm", "/models/m/shards/x.000",
                 "/bench/models/ref/onnx/model_quantized.onnx", "/", "/bench/bytes"):
        asyncio.run(get(path))
    assert counter.take() == {"runtime": 15, "model": 30, "other": 15}
    assert counter.take() == {"runtime": 0, "model": 0, "other": 0}


def test_plot_is_written(tmp_path):
    report = {"sections": {"s": {"pairs": [Pair("a", 2, 1, "ms", "p", 1.0).as_dict(),
                                           Pair("b", 1, 2, "ms", "p").as_dict()]}}}
    write_plot(report, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_registry_names_the_classification_sections():
    assert {"classify-latency", "classify-start"} <= set(SECTIONS)
    assert all(callable(f) for f in SECTIONS.values())


def test_cli_rejects_unknown_sections(capsys):
    from server.cli import main

    assert main(["bench", "--sections", "nope"]) == 2
    assert "unknown section" in capsys.readouterr().err


def test_encoder_dtype_setting_is_validated():
    import pytest

    from server.settings import Settings

    assert Settings.from_env({}).encoder_dtype == "uint8"
    assert Settings.from_env({"EDGE_TRIAGE_ENCODER_DTYPE": "q8"}).encoder_dtype == "q8"
    with pytest.raises(ValueError, match="q8 or uint8"):
        Settings.from_env({"EDGE_TRIAGE_ENCODER_DTYPE": "int4"})


def test_wllama_records_use_the_pages_prompt_and_narrowed_schema():
    from pyapp.tasks.hybrid import telemetry_extract
    from server.bench import wllama

    task = telemetry_extract()
    record = {"category": task.schema["properties"]["category"]["enum"][0], "severity": "error",
              "component_kind": "node", "component": "fan", "action_required": True,
              "summary": "x"}
    narrowed, full = wllama.records(["Fan 2 stalled\x00", "Disk full"], [record, None], [40, 0])
    assert narrowed["prompt"] == task.prompt("Fan 2 stalled").render()  # cleaned as the engine does
    assert narrowed["prompt"].endswith("<|im_start|>assistant\n") and narrowed["tokens"] == 40
    assert narrowed["schema"]["properties"]["severity"]["enum"] == ["error"]
    # The summary is the line's message in our page too (written before the model runs).
    assert narrowed["schema"]["properties"]["summary"]["enum"] == ["x"]
    assert narrowed["schema"]["properties"]["component"] == task.schema["properties"]["component"]
    assert full["schema"] == task.schema and full["tokens"] == 2  # no record: the whole schema


def test_lm_ratios_compare_page_and_native_only_on_the_same_file():
    """Native onnxruntime runs the model's first variant; the page may have chosen another one
    to fit its budget, and then the two numbers are two files, not two runtimes."""
    from server.bench.lm import ratios

    nat = {"dtype": "q8", "record_s": {"median": 4.0},
           "decode": {"constrained_vs_unconstrained": 1.0,
                      "constrained": {"decode_tok_per_s": 20.0}}}
    web = {"ours": {"decode_tok_s": 30.0, "record_s": 2.0},
           "plain_transformers_js": {"decode_tok_s": 30.0},
           "memory": {"measured_bytes": None, "lm_dtype": "q8"}}
    same = ratios({"native": nat, "page": web})
    assert same["page / native onnxruntime decode (constrained)"] == 1.5
    assert same["page / native record time"] == 0.5
    other = ratios({"native": nat, "page": {**web, "memory": {**web["memory"], "lm_dtype": "q4"}}})
    assert "page / native onnxruntime decode (constrained)" not in other
    assert "page / native record time" not in other


def test_lm_ratios_compare_the_page_with_wllamas_best_thread_count():
    from server.bench.lm import ratios

    web = {"ours": {"decode_tok_s": 30.0, "record_s": 2.0},
           "plain_transformers_js": {"decode_tok_s": 30.0}, "memory": {"measured_bytes": None}}
    peer = {"best": "1", "runs": {"1": {"decode_tok_s": 20.0, "free_decode_tok_s": 25.0,
                                        "record_s": 4.0}}}
    out = ratios({"page": web, "wllama": peer})
    assert out["page / wllama decode (grammar, best threads)"] == 1.5
    assert out["page / wllama decode (unconstrained)"] == 1.2
    assert out["page / wllama record time"] == 0.5


def test_bench_serves_the_wllama_page_with_blob_workers_allowed_there_only(build_dir, tmp_path):
    from fastapi.testclient import TestClient

    from server.bench.runner import bench_app

    counter, _ = bench_app(build_dir, tmp_path)
    with TestClient(counter) as client:
        page = client.get("/bench/wllama.html")
        assert page.status_code == 200 and "/bench/static/wllama.js" in page.text
        assert "worker-src 'self' blob:" in page.headers["content-security-policy"]
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"  # isolated: threads
        assert "blob:" not in client.get("/").headers["content-security-policy"]


def test_start_pairs_are_medians_over_repeats_and_any_repeat_download_fails_the_check():
    from pathlib import Path

    from server.bench.classify import start
    from server.bench.runner import BenchContext

    def visit(cold, warm, repeat_model_bytes=0):
        return {"cold_ms": cold, "warm_ms": warm,
                "cold_bytes": {"runtime": 2**20, "model": 2**20, "other": 0},
                "warm_bytes": {"runtime": 0, "model": repeat_model_bytes, "other": 100}}

    ctx = BenchContext("http://x", Path("."), 3, "/runtime/v/", "ref")
    ctx.shared["classify"] = {"threads": 2, "latency": {}, "start": {
        "ours": [visit(9000, 3000), visit(5000, 2500), visit(6000, 2000)],
        "plain": [visit(3000, 2000), visit(2500, 1000), visit(4000, 1500)]}}
    out = start(ctx)
    cold, warm, first = out["pairs"]
    assert (cold["ours"], cold["peer"], cold["ratio"]) == (6000, 3000, 2.0)
    assert (warm["ours"], warm["peer"]) == (2500, 1500)
    assert first["ours"] == first["peer"] == 2.0
    assert out["repeat_visit_zero_bytes"] is True
    ctx.shared["classify"]["start"]["ours"][1] = visit(5000, 2500, repeat_model_bytes=4096)
    out = start(ctx)
    assert out["repeat_visit_zero_bytes"] is False and out["repeat_visit_runtime_model_bytes"] == 4096


def test_latency_profile_splits_our_p50_by_the_workers_own_timings():
    from pathlib import Path

    from server.bench.classify import latency
    from server.bench.runner import BenchContext

    logged = []
    ctx = BenchContext("http://x", Path("."), 3, "/runtime/v/", "ref", log=logged.append)
    ctx.shared["classify"] = {"threads": 2, "start": {}, "latency": {
        "ours": [{"p50": 13.0, "p95": 20.0}, {"p50": 12.0, "p95": 30.0}, {"p50": 14.0, "p95": 25.0}],
        "plain": [{"p50": 10.0, "p95": 20.0}, {"p50": 8.0, "p95": 16.0}, {"p50": 9.0, "p95": 18.0}],
        "ours_inference": [10.5, 9.0, 9.9], "ours_rest": [2.6, 2.2, 3.0]}}
    out = latency(ctx)
    p50 = out["pairs"][0]
    assert (p50["ours"], p50["peer"], p50["met"]) == (13.0, 9.0, False)
    profile = out["profile"]
    assert profile["encoder_and_head_ms"] == 9.9 and profile["plain_call_ms"] == 9.0
    assert profile["rest_ms"] == 2.6
    assert "1.10× the plain page's whole call" in logged[0] and logged[0] == "  " + profile["line"]


def _lm_manifest(models, model_id, imported, estimate=1, provenance=None):
    from models.manifest import ModelManifest

    m = ModelManifest(name=model_id, model_id=model_id, task="text-generation", dtype="q8",
                      key="0" * 64, files=[], estimated_memory_bytes=estimate, imported=imported,
                      provenance=provenance or {})
    (models / model_id).mkdir(parents=True)
    (models / model_id / "manifest.json").write_text(m.model_dump_json())
    return m


def test_the_lm_bench_runs_the_deployments_model_and_refuses_one_the_page_would_refuse(
        tmp_path, monkeypatch):
    """The bench's page runs EDGE_TRIAGE_BROWSER_LM (the server's choice), so its peers run the
    same model, built-in or imported. A model over the page's memory budget is refused before
    any section runs (the page would refuse it after minutes of the others), naming the
    setting that lets it in."""
    from server.bench.lm import bench_lm
    from server.cli import main

    _lm_manifest(tmp_path / "models", "builtin-lm", imported=False)
    _lm_manifest(tmp_path / "models", "imported-lm", imported=True, estimate=3_000_000_000)
    for var in ("EDGE_TRIAGE_BROWSER_LM", "EDGE_TRIAGE_MEMORY_BUDGET_BYTES"):
        monkeypatch.delenv(var, raising=False)
    assert bench_lm(tmp_path).model_id == "builtin-lm"
    monkeypatch.setenv("EDGE_TRIAGE_BROWSER_LM", "imported-lm")
    with pytest.raises(SystemExit, match="over the page's budget of 1,200,000,000.*"
                                         "EDGE_TRIAGE_MEMORY_BUDGET_BYTES"):
        bench_lm(tmp_path)
    with pytest.raises(SystemExit, match="EDGE_TRIAGE_MEMORY_BUDGET_BYTES"):
        main(["--build-dir", str(tmp_path), "bench", "--sections", "lm",
              "--report", str(tmp_path / "bench.json")])
    assert not (tmp_path / "bench.json").exists()
    monkeypatch.setenv("EDGE_TRIAGE_MEMORY_BUDGET_BYTES", "4000000000")
    assert bench_lm(tmp_path).model_id == "imported-lm"


def test_wllama_runs_the_gguf_an_imported_model_was_built_from_found_by_its_pinned_hash(
        tmp_path, monkeypatch):
    """The manifest pins the source's sha256, not a path: the bench finds the file among the
    downloads (`models fetch`) or at EDGE_TRIAGE_BENCH_GGUF, and takes it only if the hash
    matches; a model with none (a Hugging Face import) gets the reason, not another GGUF."""
    import hashlib

    from models.llm import GGUF, source_dir
    from server.bench.wllama import source_gguf

    monkeypatch.setenv("EDGE_TRIAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGE_TRIAGE_BENCH_GGUF", raising=False)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "a-other.gguf").write_bytes(b"GGUF another model")
    body = b"GGUF the imported model"
    digest = hashlib.sha256(body).hexdigest()
    lm = _lm_manifest(tmp_path / "models", "imported-lm", imported=True,
                      provenance={"sha256": digest})
    builtin = _lm_manifest(tmp_path / "models", "builtin-lm", imported=False)
    assert source_gguf(builtin) == source_dir() / GGUF
    with pytest.raises(LookupError, match=f"{digest}.*EDGE_TRIAGE_BENCH_GGUF"):
        source_gguf(lm)
    elsewhere = tmp_path / "mine.gguf"
    elsewhere.write_bytes(body)
    monkeypatch.setenv("EDGE_TRIAGE_BENCH_GGUF", str(elsewhere))
    assert source_gguf(lm) == elsewhere
    monkeypatch.delenv("EDGE_TRIAGE_BENCH_GGUF")
    (downloads / "b-model.gguf").write_bytes(body)
    assert source_gguf(lm) == downloads / "b-model.gguf"
    hf = _lm_manifest(tmp_path / "models", "hf-lm", imported=True)
    with pytest.raises(LookupError, match="none recorded"):
        source_gguf(hf)


def test_the_lm_bench_runs_as_a_module_without_runpys_double_import_warning():
    """``python -m server.bench.lm`` (README): the package must not have imported the module
    before runpy runs it as __main__ (a RuntimeWarning, and two copies of its globals)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "server.bench.lm",
                           "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m server.bench.lm" in done.stdout
    assert "lm" in SECTIONS  # still registered, imported when the section runs
