import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from models import lmexport


def _matmul(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_a_graph_over_the_limit_keeps_its_weights_beside_it(tmp_path, monkeypatch):
    """The 2 GiB protobuf limit, scaled down: over EXTERNAL_OVER the weights go to <name>_data,
    a copy carries them along, and saving again replaces the data file instead of appending."""
    monkeypatch.setattr(lmexport, "EXTERNAL_OVER", 1000)
    w = np.arange(64 * 32, dtype=np.float32).reshape(64, 32) / 100
    x = np.ones((1, 64), dtype=np.float32)
    big = tmp_path / "big.onnx"
    lmexport.save_onnx(_matmul(w), big)
    data = tmp_path / "big.onnx_data"
    assert data.stat().st_size == w.nbytes
    assert big.stat().st_size < w.nbytes
    np.testing.assert_allclose(_run(big, x), x @ w, rtol=1e-6)

    lmexport.save_onnx(onnx.load(str(big)), big)  # read in, written again
    assert data.stat().st_size == w.nbytes
    copy = tmp_path / "sub" / "copy.onnx"
    copy.parent.mkdir()
    lmexport.copy_onnx(big, copy)
    np.testing.assert_allclose(_run(copy, x), x @ w, rtol=1e-6)


def test_a_small_graph_stays_one_file(tmp_path):
    w = np.ones((8, 4), dtype=np.float32)
    path = tmp_path / "small.onnx"
    (tmp_path / "small.onnx_data").write_bytes(b"left from a bigger graph")
    lmexport.save_onnx(_matmul(w), path)
    assert not (tmp_path / "small.onnx_data").exists()
    np.testing.assert_array_equal(_run(path, np.ones((1, 8), np.float32)), np.full((1, 4), 8.0))
