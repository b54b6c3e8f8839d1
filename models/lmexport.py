"""A browser language model's source as a float32 ONNX export, with the source's own greedy
continuations to check the quantised files against (``models.llm`` quantises and checks).

The source (``models.lmsource``) is a GGUF, which transformers de-quantises; a Hugging Face
folder, loaded by transformers in float32; or an ONNX export, used as it is (its continuations
then come from onnxruntime on the float file). Tokenizer files are normalised to what
transformers.js, tokenizers and xgrammar read alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .gguf_source import ModelImportError
from .lmsource import LmSource

Log = Callable[[str], None]

# Context window we run the model with (prompt + generated). SmolLM2 was trained to 8192, but
# the KV cache grows with it and the browser's memory is the limit; 2048 holds a triage input.
MAX_TOKENS = 2048
CHECK_TOKENS = 16
CHECK_PROMPTS = [
    "Error: Fan speed threshold exceeded on Node 4B.",
    "What is the capital of France?",
    "Write a haiku about disks filling up.",
    "List three colours.",
]


def chat_prompt(user: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


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
    finish_tokenizer_config(hf_dir, add_bos_token=False)


def finish_tokenizer_config(hf_dir: Path, **overrides) -> None:
    """tokenizer_config.json as transformers.js reads it: our context window, and the chat
    template inside it (transformers.js does not read chat_template.jinja)."""
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(overrides)
    cfg["model_max_length"] = MAX_TOKENS
    cfg.pop("tokenizer_file", None)
    # transformers.js reads the template from tokenizer_config.json, not chat_template.jinja.
    template = hf_dir / "chat_template.jinja"
    if template.exists():
        cfg["chat_template"] = template.read_text()
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))


def prepare_float(source: LmSource, tmp: Path, log: Log = print):
    """(Hugging Face folder with the corrected tokenizer, float32 ONNX export, reference greedy
    continuations of the *source* model) for ``source``."""
    import shutil

    hf = tmp / "hf"
    if source.kind == "onnx":
        log(f"[1/5] reading the ONNX export {source.path}")
        shutil.copytree(source.path, hf)
        finish_tokenizer_config(hf)
        return hf, hf / "model.onnx", reference_greedy_onnx(hf / "model.onnx", hf)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.kind == "gguf":
        log(f"[1/5] loading {source.path.name} with transformers (de-quantised to float32)")
        kwargs, where = {"gguf_file": source.path.name}, source.path.parent
    else:
        log(f"[1/5] loading {source.path} with transformers (float32)")
        kwargs, where = {}, source.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    except Exception as e:
        raise ModelImportError(f"{source.path}: transformers could not load it "
                               f"({type(e).__name__}: {str(e)[:300]})") from e
    model.eval()
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    if source.kind == "gguf":
        fix_tokenizer(hf)  # transformers' GGUF conversion quirks
    else:
        finish_tokenizer_config(hf)
    tokenizer = AutoTokenizer.from_pretrained(hf)
    reference = reference_greedy(model, tokenizer, CHECK_PROMPTS, CHECK_TOKENS)
    del model
    log("[2/5] exporting to ONNX with KV cache (text-generation-with-past)")
    return hf, export_fp32(hf, tmp / "fp32"), reference


def reference_greedy_onnx(fp32: Path, hf: Path) -> list[dict]:
    """``reference_greedy``'s records, from the float ONNX export itself (onnxruntime)."""
    from transformers import AutoTokenizer

    from models.cpython.lm import OnnxCausalLM

    tokenizer = AutoTokenizer.from_pretrained(hf)
    lm = OnnxCausalLM(fp32, json.loads((hf / "config.json").read_text()))
    out = []
    for prompt in CHECK_PROMPTS:
        text = tokenizer.apply_chat_template(chat_prompt(prompt), tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append({"prompt": prompt, "input_ids": ids,
                    "tokens": lm.greedy(ids, CHECK_TOKENS)})
    return out


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


#: Over this a graph is saved with its weights as external data (protobuf's limit is 2 GiB; a
#: float export of a 0.5B model is ~2 GB, and folding its tied lm_head adds 0.5 GB).
EXTERNAL_OVER = 1_800_000_000


def save_onnx(model, path: Path) -> None:
    """``onnx.save`` that keeps a large graph's weights beside it (``<name>_data``) instead of
    failing at protobuf's 2 GiB. ``model`` holds its weights in memory (``onnx.load`` reads any
    external data in), so a data file left from before is replaced, not appended to."""
    import onnx

    data = path.with_name(path.name + "_data")
    data.unlink(missing_ok=True)
    # (ByteSize itself fails over 2 GiB, so the weights are counted.)
    if sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_OVER:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data.name, size_threshold=1024)
    else:
        onnx.save(model, str(path))


def copy_onnx(src: Path, dst: Path) -> None:
    """Copy a graph with the external data it names (optimum writes ``model.onnx_data`` beside a
    large export)."""
    import onnx

    save_onnx(onnx.load(str(src)), dst)


def export_fp32(hf_dir: Path, out: Path) -> Path:
    import warnings

    from optimum.exporters.onnx import main_export

    # optimum drives torch's TorchScript tracer, whose deprecation and tracer warnings are not
    # ours to act on; tests that turn warnings into errors also run this export (an import's
    # build), and a warning raised inside the tracer aborts it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(hf_dir), output=str(out), task="text-generation-with-past", opset=18,
                    do_validation=False, library_name="transformers")
    return out / "model.onnx"
