"""The 8-bit formats on a tiny real graph: embedding table → MatMul → MatMul, run by onnxruntime."""

import numpy as np
import pytest

from models.weightquant import (exact_float_ops, quantize_dynamic_uint8, quantize_standard,
                                quantize_weights_int8)

VOCAB, WIDTH = 512, 64


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(VOCAB, WIDTH)).astype(np.float32), "table"),
        numpy_helper.from_array(rng.normal(size=(WIDTH, WIDTH)).astype(np.float32) / 8, "w1"),
        numpy_helper.from_array(rng.normal(size=(WIDTH, WIDTH)).astype(np.float32) / 8, "w2"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="gather"),
        helper.make_node("MatMul", ["emb", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["out"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, None, WIDTH])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("tiny") / "fp32.onnx"
    onnx.save(model, str(path))
    return path


def _run(path, ids):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["out"], {"ids": np.array([ids], dtype=np.int64)})[0][0]


def _ops(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _cosine(a, b) -> float:
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min())


IDS = [3, 17, 200, 511, 42, 0, 99]


def test_dynamic_uint8_runs_integer_kernels_and_stays_close(float_model, tmp_path):
    out = quantize_dynamic_uint8(float_model, tmp_path / "onnx" / "model_uint8.onnx")
    ops = _ops(out)
    # Integer arithmetic: no float MatMul left, activations quantised per call.
    assert "MatMul" not in ops
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    import onnx
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    # Weights stay 8-bit in the file (and in memory: nothing dequantises them at load).
    assert not any(w.dtype == np.float32 and w.size >= WIDTH * WIDTH for w in weights.values())
    # Per channel: one scale per output column of each MatMul weight.
    assert sum(1 for n, w in weights.items() if "scale" in n and w.shape == (WIDTH,)) >= 2
    assert _cosine(_run(out, IDS), _run(float_model, IDS)) > 0.98
    assert out.stat().st_size < float_model.stat().st_size / 3


def test_weight_only_int8_keeps_float_arithmetic(float_model, tmp_path):
    out = tmp_path / "q8.onnx"
    quantize_weights_int8(float_model, out, min_elements=WIDTH * WIDTH)
    ops = _ops(out)
    assert "MatMul" in ops and "MatMulInteger" not in ops and "DequantizeLinear" in ops
    assert _cosine(_run(out, IDS), _run(float_model, IDS)) > 0.999


def test_standard_reference_is_per_tensor_dynamic_int8(float_model, tmp_path):
    out = quantize_standard(float_model, tmp_path / "ref.onnx")
    assert "MatMulInteger" in _ops(out)
    import onnx
    from onnx import numpy_helper

    scales = [numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer
              if i.name.endswith("_scale") and "w" in i.name]
    assert scales and all(s.size == 1 for s in scales)  # one scale per weight tensor


def _attention_block(path):
    """LayerNormalization → Q·Kᵀ → Softmax → ·V → GELU (Erf): every float op ``exact_float_ops``
    rewrites, in the shape the encoder's export has them."""
    import math

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=WIDTH).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.normal(size=WIDTH).astype(np.float32), "beta"),
             numpy_helper.from_array(np.array(1 / math.sqrt(2), np.float32), "inv_sqrt2"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], axis=-1, epsilon=1e-12),
        helper.make_node("Transpose", ["n"], ["nt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["n", "nt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "n"], ["a"]),
        helper.make_node("Mul", ["a", "inv_sqrt2"], ["u"]),
        helper.make_node("Erf", ["u"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Mul", ["a", "e1"], ["g"]),
        helper.make_node("Mul", ["g", "half"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, WIDTH])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, None, WIDTH])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_exact_float_ops_moves_reductions_to_float64_and_erf_to_ieee_ops(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    src = _attention_block(tmp_path / "block.onnx")
    model = onnx.load(str(src))
    counts = exact_float_ops(model)
    assert counts == {"LayerNormalization": 1, "Softmax": 1, "MatMul": 2, "Erf": 1}
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "Erf" not in ops and {"Abs", "Div", "Sign"} <= set(ops)
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert any(a.i == TensorProto.DOUBLE for n in casts for a in n.attribute if a.name == "to")
    ln = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    weights = {i.name: i for i in model.graph.initializer}
    assert all(weights[i].data_type == TensorProto.DOUBLE for i in ln.input[1:])
    assert "gamma" not in weights  # the float32 copies no node reads any more are dropped
    dst = tmp_path / "exact.onnx"
    onnx.save(model, str(dst))

    x = np.random.default_rng(2).normal(size=(1, 9, WIDTH)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        ["out"], {"x": x})[0]
    # Same function: the float64 ops agree with float32 to rounding, the erf polynomial to 2e-6.
    assert np.abs(run(dst) - run(src)).max() < 1e-4 * max(1.0, np.abs(run(src)).max())


def test_erf_polynomial_is_erf_to_float32_rounding_and_saturates(tmp_path):
    import math

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erf", ["u"], ["e"])], "erf",
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert exact_float_ops(model)["Erf"] == 1
    path = tmp_path / "erf.onnx"
    onnx.save(model, str(path))
    u = np.concatenate([np.linspace(-8, 8, 40001), [-1e30, 1e30, 0.0]]).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["e"], {"u": u})[0]
    want = np.array([math.erf(float(v)) for v in u])
    assert np.abs(got - want).max() < 2e-6
    assert got[-3] == -1.0 and got[-2] == 1.0 and got[-1] == 0.0
