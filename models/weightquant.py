"""8-bit encoder formats: weight-only int8 (float arithmetic) and dynamic int8 (integer kernels).

``quantize_weights_int8`` — weight-only: int8 weights in the file, float arithmetic at run time.
``quantize_dynamic_uint8`` — per-channel dynamic int8: onnxruntime's ``MatMulInteger`` on uint8
activations and uint8 weights, 2-4x faster in onnxruntime-web's Wasm build than float ``MatMul``
and compressed in memory, but *not* the same numbers in the two runtimes (below).

Why not onnxruntime's ``quantize_dynamic``: it also quantises *activations* per batch at run time
(DynamicQuantizeLinear → MatMulInteger), and onnxruntime-web's Wasm kernels and native x86 kernels
round some inputs differently there. Measured on tests/data/parity_texts.json: most embeddings were
bit-identical, but a few differed by up to 0.014, which moved confidences by up to 0.03 — too much
for identical results in both runtimes. Dynamic quantisation also made an embedding depend on what
else was in the batch (the activation scale is per tensor). Storing int8 weights with a per-channel
scale and dequantising them before float MatMul/Gather keeps the 4x smaller download while the
arithmetic, hence the result, is the same as the float model's in both runtimes.

Re-measured for per-channel dynamic int8 (onnxruntime-web 1.31 Wasm vs native onnxruntime 1.32,
tests/data/parity_texts.json + the encoder's check sentences): per-channel scales bring the min
cosine to fp32 from 0.89 (per tensor) to 0.987 (uint8 weights; 0.984 int8 weights), but browser and
CPython still differ by up to 0.015 per embedding element. The cause is not a kernel: the first
``LayerNormalization`` already differs by ~1e-6 between the runtimes (float summation order), and
every activation quantisation turns such a difference into a whole quantisation step when a value
sits near a rounding boundary (and the per-batch scale itself moves by one ulp). Only float
arithmetic keeps the two runtimes within ~1e-6; so parity-bound deployments keep the weight-only
file and the integer file is a measured, opt-in variant (models/encoder.py, README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.abs(w).max(axis=reduce_axes) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def quantize_weights_int8(src: Path, dst: Path, min_elements: int = 4096) -> dict[str, int]:
    """Rewrite float MatMul weights and Gather tables of ``src`` as int8 + scale; save to ``dst``."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    counts = {"matmul": 0, "gather": 0}
    new_nodes = []
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.dtype == np.float32 and w.ndim == 2 and w.size >= min_elements:
                name = node.input[1]
                q, scale = _per_channel(w, axis=1)
                graph.initializer.remove(inits.pop(name))
                graph.initializer.extend([
                    numpy_helper.from_array(q, f"{name}_q8"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_zp"),
                ])
                new_nodes.append(helper.make_node(
                    "DequantizeLinear", [f"{name}_q8", f"{name}_scale", f"{name}_zp"],
                    [f"{name}_deq"], name=f"{name}_DequantizeLinear", axis=1))
                node.input[1] = f"{name}_deq"
                counts["matmul"] += 1
        elif node.op_type == "Gather" and node.input[0] in inits:
            table = numpy_helper.to_array(inits[node.input[0]])
            if table.dtype == np.float32 and table.ndim == 2 and table.size >= min_elements:
                # Gather the int8 rows and their scales, then scale: dequantising only the rows
                # used, not the whole 30k-row vocabulary table, on every call.
                name, out = node.input[0], node.output[0]
                q, scale = _per_channel(table, axis=0)
                graph.initializer.remove(inits.pop(name))
                graph.initializer.extend([
                    numpy_helper.from_array(q, f"{name}_q8"),
                    numpy_helper.from_array(scale.reshape(-1, 1), f"{name}_scale"),
                ])
                node.input[0] = f"{name}_q8"
                node.output[0] = f"{out}_q8"
                new_nodes.extend([
                    helper.make_node("Gather", [f"{name}_scale", node.input[1]], [f"{out}_scale"],
                                     name=f"{node.name}_scale", axis=0),
                    helper.make_node("Cast", [f"{out}_q8"], [f"{out}_f32"],
                                     name=f"{node.name}_cast", to=onnx.TensorProto.FLOAT),
                    helper.make_node("Mul", [f"{out}_f32", f"{out}_scale"], [out],
                                     name=f"{node.name}_dequant"),
                ])
                counts["gather"] += 1
    graph.node.extend(new_nodes)
    # Nodes must stay topologically sorted: put dequantisers right after what they read.
    _toposort(graph)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return counts


def _toposort(graph) -> None:
    produced = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        progressed = False
        rest = []
        for node in pending:
            if all(i in produced for i in node.input):
                ordered.append(node)
                produced.update(node.output)
                progressed = True
            else:
                rest.append(node)
        if not progressed:
            raise ValueError(f"graph has a cycle or a missing input near {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def quantize_dynamic_uint8(src: Path, dst: Path) -> Path:
    """Per-channel dynamic int8 of every MatMul (``DynamicQuantizeLinear`` → ``MatMulInteger``)
    and a uint8 embedding table (``Gather`` → ``DequantizeLinear`` of the gathered rows).

    uint8 weights, not int8: onnxruntime-web's Wasm kernel for uint8 × uint8 ran 1.2-1.5x faster
    than uint8 × int8 here, and per-channel uint8 kept the best cosine to fp32 (0.987).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QUInt8,
                     op_types_to_quantize=["MatMul", "Gather"])
    return dst


def quantize_standard(src: Path, dst: Path) -> Path:
    """The standard export transformers.js users ship (``quantize_dynamic`` with its defaults:
    per-tensor int8 weights): the reference the benchmark's plain page runs, not a shipped file."""
    from onnxruntime.quantization import quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst))
    return dst
