"""8-bit encoder formats: weight-only int8 (float arithmetic) and dynamic int8 (integer kernels).

``quantize_weights_int8`` — weight-only: int8 weights in the file, float arithmetic at run time.
``quantize_dynamic_uint8`` — per-channel dynamic int8: onnxruntime's ``MatMulInteger`` on uint8
activations and uint8 weights, 2-4x faster in onnxruntime-web's Wasm build than float ``MatMul``
and compressed in memory, with the float ops between the integer kernels rewritten so that both
runtimes compute the same bits (``exact_float_ops``, below).

History: onnxruntime's ``quantize_dynamic`` as it comes quantises *activations* per batch at run
time (DynamicQuantizeLinear → MatMulInteger), and onnxruntime-web and native onnxruntime gave
different numbers there. Measured on tests/data/parity_texts.json: most embeddings were
bit-identical, but a few differed by up to 0.014, which moved confidences by up to 0.03 — too much
for identical results in both runtimes. So the weight-only file (int8 weights dequantised before
float MatMul/Gather, the float model's arithmetic) was the default until 2026-12-02.

Re-measured for per-channel dynamic int8 (onnxruntime-web 1.31 Wasm vs native onnxruntime 1.32,
tests/data/parity_texts.json + the encoder's check sentences): per-channel scales bring the min
cosine to fp32 from 0.89 (per tensor) to 0.987 (uint8 weights; 0.984 int8 weights), but browser and
CPython differed by up to 0.015 per embedding element. The cause is not the integer kernels (their
int32 sums are exact in both): the float ops between them. ``LayerNormalization`` already differs
by ~1e-6 between the runtimes (float summation order), so do ``Softmax``, the attention's float
``MatMul`` and ``Erf`` (each runtime has its own polynomial), and every activation quantisation
turns such a difference into a whole quantisation step when a value sits near a rounding boundary;
from there the difference grows layer by layer.

``exact_float_ops`` removes those differences instead of living with them: the reductions run in
float64 and are rounded back to float32 (a float64 sum of a few hundred float32 values is exact or
within ~1e-16 whatever the order, so rounding it back gives the same float32 in both runtimes unless
the two sums straddle a float32 rounding boundary, odds of ~1e-8 per value), and
``Erf`` becomes a polynomial of Abs, Mul, Add, Div, Sub and Sign (Abramowitz & Stegun 7.1.28,
within 1.7e-6 of erf in float32): IEEE operations, correctly rounded, the same bits everywhere. Measured one
text per call: the plain dynamic int8 file differed between the runtimes on 9 of the 70 parity and
check texts; with only the reductions in float64, on 24 of 2,000 Loghub and CLINC150 dev texts (up
to 0.017 per element); with ``exact_float_ops``, on none of the 2,000 (largest difference 2.3e-8,
the float32 mean pooling's), at the same min cosine to fp32 as before (0.9866).
Cost, onnxruntime-web under Node, 2 threads, the 54 parity texts, medians of 16 interleaved rounds:
6.87 ms a text against 8.71 for ``q8`` (float arithmetic) and 5.70 for the standard per-tensor
export. Tried for ``Erf`` and not kept, all exact as well: a 65,536-entry erf table
(``QuantizeLinear`` to uint16 + ``Gather``: 8.39 ms, onnxruntime's Gather copies element by
element), GELU's tanh form as a float32 rational (7.14 ms, cosine 0.9828: the tanh form is 3.6e-4
from erf) or in float64 (slower still).

One caveat stays: a dynamic scale is per tensor, so a text's embedding depends on what else is in
its batch. Both runtimes therefore run the integer file one text at a time
(models/cpython/encoder.py; the page embeds one text per call anyway).
"""

from __future__ import annotations

import itertools
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
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QUInt8,
                     op_types_to_quantize=["MatMul", "Gather"])
    model = onnx.load(str(dst))
    exact_float_ops(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


#: Ops whose float32 result depends on the runtime's summation order: run in float64.
FLOAT64_OPS = ("LayerNormalization", "Softmax", "MatMul")
#: erf(x) = 1 - 1 / (1 + a1 x + ... + a6 x^6)^16 for x >= 0 (Abramowitz & Stegun 7.1.28, error
#: <= 3e-7; 1.7e-6 evaluated in float32, measured on [-8, 8]).
ERF_COEFFICIENTS = (0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672,
                    0.0000430638)


def exact_float_ops(model) -> dict[str, int]:
    """Rewrite ``model`` in place so that onnxruntime-web and native onnxruntime compute the same
    float32 bits (module docstring): FLOAT64_OPS in float64 between casts, ``Erf`` as a polynomial
    of IEEE operations only (Abs, Mul, Add, Div, Sub, Sign: correctly rounded everywhere, where
    each runtime's own Erf kernel is not). Only activation × activation ``MatMul`` is expected
    (weights are ``MatMulInteger`` by now). Returns how many nodes of each kind were rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    counts = {op: 0 for op in (*FLOAT64_OPS, "Erf")}
    nodes = []

    def as_float64(name: str) -> str:
        if name in inits:
            wide = f"{name}_f64"
            if wide not in inits:
                array = numpy_helper.to_array(inits[name]).astype(np.float64)
                inits[wide] = numpy_helper.from_array(array, wide)
                graph.initializer.append(inits[wide])
            return wide
        wide = f"{name}_f64_{len(nodes)}"
        nodes.append(helper.make_node("Cast", [name], [wide], name=f"{wide}_cast",
                                      to=TensorProto.DOUBLE))
        return wide

    def erf(x: str, y: str, base: str) -> None:
        if "erf_one" not in inits:
            for name, value in [("erf_one", 1.0)] + [(f"erf_a{i}", a) for i, a in
                                                     enumerate(ERF_COEFFICIENTS, 1)]:
                inits[name] = numpy_helper.from_array(np.array(value, np.float32), name)
                graph.initializer.append(inits[name])
        names = itertools.count()

        def op(kind: str, *args: str) -> str:
            out = f"{base}_erf{next(names)}"
            nodes.append(helper.make_node(kind, list(args), [out], name=out))
            return out

        ax = op("Abs", x)
        p = f"erf_a{len(ERF_COEFFICIENTS)}"
        for i in range(len(ERF_COEFFICIENTS) - 1, -1, -1):  # Horner, down to the constant 1
            p = op("Add", op("Mul", p, ax), f"erf_a{i}" if i else "erf_one")
        for _ in range(4):
            p = op("Mul", p, p)  # ^16
        e = op("Sub", "erf_one", op("Div", "erf_one", p))
        nodes.append(helper.make_node("Mul", [e, op("Sign", x)], [y], name=f"{base}_erf"))

    for node in graph.node:
        base = node.name or node.output[0]  # node names must stay unique; exports may omit them
        if node.op_type in FLOAT64_OPS:
            if node.op_type == "MatMul" and any(i in inits for i in node.input):
                raise ValueError(f"{base}: a float weight MatMul is left; quantise it first")
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "LayerNormalization":
                # Mean and inverse std-dev outputs (never read in these exports) would be float64.
                if any(node.output[1:]):
                    raise ValueError(f"{base}: LayerNormalization's extra outputs are used")
                attrs["stash_type"] = TensorProto.DOUBLE
            inputs = [as_float64(i) if i else i for i in node.input]
            wide_out = f"{node.output[0]}_f64"
            nodes.append(helper.make_node(node.op_type, inputs, [wide_out],
                                          name=f"{base}_f64", **attrs))
            nodes.append(helper.make_node("Cast", [wide_out], [node.output[0]],
                                          name=f"{base}_f32", to=TensorProto.FLOAT))
            counts[node.op_type] += 1
        elif node.op_type == "Erf":
            erf(node.input[0], node.output[0], base)
            counts["Erf"] += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return counts


def quantize_standard(src: Path, dst: Path) -> Path:
    """The standard export transformers.js users ship (``quantize_dynamic`` with its defaults:
    per-tensor int8 weights): the reference the benchmark's plain page runs, not a shipped file."""
    from onnxruntime.quantization import quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst))
    return dst
