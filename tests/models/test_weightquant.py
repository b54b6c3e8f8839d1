"""The 8-bit formats on a tiny real graph: embedding table → MatMul → MatMul, run by onnxruntime."""

import numpy as np
import pytest

from models.weightquant import quantize_dynamic_uint8, quantize_standard, quantize_weights_int8

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
