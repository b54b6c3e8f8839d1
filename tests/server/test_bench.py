"""The benchmark's plumbing (no timings): ratios, verdicts, the byte counter, the plot, the CLI."""

import asyncio

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

    assert Settings.from_env({}).encoder_dtype == "q8"
    assert Settings.from_env({"EDGE_TRIAGE_ENCODER_DTYPE": "uint8"}).encoder_dtype == "uint8"
    with pytest.raises(ValueError, match="q8 or uint8"):
        Settings.from_env({"EDGE_TRIAGE_ENCODER_DTYPE": "int4"})
