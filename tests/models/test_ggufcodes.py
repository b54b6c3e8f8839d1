"""models/ggufcodes.py (numpy, CPython) and web/lmweights.js (the page) build the same external
data from GGUF codes: ggml's Q8_0 / Q4_1 values, as rows or transposed. Runs node once."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models import ggufcodes

HARNESS = Path(__file__).with_name("lmweights_harness.mjs")


def _codes(tmp_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A plan with one Q8_0 and one Q4_1 tensor, each as rows and transposed, and the float
    values ggml defines for them (d * q, d * q + m, float32)."""
    rng = np.random.default_rng(11)
    writer = ggufcodes.CodesWriter()
    want = {}
    rows, cols = 6, 64
    q8 = rng.integers(-127, 128, (rows, cols), dtype=np.int8)
    d8 = rng.normal(0, 0.02, (rows, cols // 32)).astype(np.float32)
    writer.add("q8", "q8_0", q8, d8, None, rows, cols)
    want["q8"] = (q8.reshape(rows, -1, 32).astype(np.float32) * d8[..., None]).reshape(rows, cols)
    q4 = rng.integers(0, 16, (rows, cols), dtype=np.uint8)
    d4 = rng.normal(0, 0.02, (rows, cols // 32)).astype(np.float32)
    m4 = rng.normal(0, 0.1, (rows, cols // 32)).astype(np.float32)
    blocks = q4.reshape(rows, -1, 32)
    writer.add("q4", "q4_1", blocks[..., :16] | (blocks[..., 16:] << 4), d4, m4, rows, cols)
    want["q4"] = (blocks.astype(np.float32) * d4[..., None] + m4[..., None]).reshape(rows, cols)
    weights = [{"name": f"{s}{'_t' if t else ''}", "source": s, "transpose": t}
               for s in ("q8", "q4") for t in (False, True)]
    graph = tmp_path / "model.onnx"
    plan = writer.write(graph, weights, "model.onnx_data")
    assert ggufcodes.plan_path(graph).exists() and ggufcodes.codes_path(graph).exists()
    return plan, want


def _weights(plan: dict, data: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for w in plan["weights"]:
        t = plan["tensors"][w["source"]]
        shape = (t["cols"], t["rows"]) if w["transpose"] else (t["rows"], t["cols"])
        n = t["rows"] * t["cols"]
        out[w["name"]] = data[w["offset"]:w["offset"] + 4 * n].view(np.float32).reshape(shape)
    return out


def test_numpy_fold_is_ggml_dequantisation(tmp_path):
    plan, want = _codes(tmp_path)
    name, data = ggufcodes.load_external_data(tmp_path / "model.onnx")
    assert name == "model.onnx_data" and data.size == plan["data_bytes"]
    got = _weights(plan, data)
    for source, values in want.items():
        assert np.array_equal(got[source], values)
        assert np.array_equal(got[f"{source}_t"], values.T)
    # The codes lead the external data unchanged (the graph gathers the embedding's codes).
    codes = (tmp_path / plan["codes"]).read_bytes()
    assert data[:len(codes)].tobytes() == codes


def test_js_fold_gives_the_same_bytes(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test web/lmweights.js")
    plan, _ = _codes(tmp_path)
    codes = (tmp_path / plan["codes"]).read_bytes()
    done = subprocess.run([node, str(HARNESS)], capture_output=True, text=True, timeout=60,
                          input=json.dumps({"plan": plan, "codes": base64.b64encode(codes).decode()}))
    assert done.returncode == 0, done.stderr
    js = np.frombuffer(base64.b64decode(done.stdout), dtype=np.uint8)
    _, numpy_data = ggufcodes.load_external_data(tmp_path / "model.onnx")
    assert np.array_equal(js, numpy_data)


def test_unknown_format_is_refused(tmp_path):
    _codes(tmp_path)
    plan_file = ggufcodes.plan_path(tmp_path / "model.onnx")
    plan_file.write_text(json.dumps({**json.loads(plan_file.read_text()), "format": "other"}))
    with pytest.raises(ValueError, match="format"):
        ggufcodes.load_external_data(tmp_path / "model.onnx")
