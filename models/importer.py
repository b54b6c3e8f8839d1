"""``edge-triage models import SOURCE``: bring a model of your own into our layout.

A GGUF file becomes a *server model* (``<build>/server-models/<model_id>/``): run natively by
llama.cpp (``models.cpython.gguf``) for escalations, never sent to the browser. The
steps are the built-in models' (``models.build``): content key → cache folder → files with
sha256 → checks against the source → manifest with measured memory → hard-linked into the
build.

1. inspect: GGUF header and metadata (``gguf_source.inspect_gguf``): refuses a file that is not
   GGUF, cut short or corrupt, an unsupported architecture, no tokenizer, or a chat format our
   prompts cannot render (``pyapp.generation.prompt`` writes ChatML).
2. tokenizer: transformers turns the GGUF's vocabulary into tokenizer.json (what ``tokenizers``
   and the grammar engine read), corrected as for the built-in model (``llm.fix_tokenizer``).
3. the GGUF itself is the model file (its own quantisation, never de-quantised).
4. checks: our decode loop's greedy tokens on llama.cpp's logits must equal llama.cpp's own
   greedy sampler on ``llm.CHECK_PROMPTS`` (the source), and the memory the loaded model
   actually took (resident set growth, weights paged in by a forward pass) is measured.
5. budget: a model whose measured memory exceeds the budget is refused and nothing is kept.
6. manifest: name, dtype (the GGUF's quantisation), files with sha256, measured memory, checks
   and provenance (package, version, sha256, licence).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from models.manifest import ModelManifest, slug

from .cache import cache_root, content_key, link_tree, list_files, sha256_file
from .gguf_source import GgufInfo, ModelImportError, inspect_gguf

# Part of the cache key: bump when the steps below change what they produce.
PIPELINE_VERSION = "import-gguf-1"
#: Context window a server model runs with (prompt + output); a few-shot extraction prompt is
#: under 1,000 tokens. Capped by the model's own context length.
SERVER_MAX_TOKENS = 4096
CHECK_TOKENS = 8
#: Prompts of ``llm.CHECK_PROMPTS`` checked (each costs 2 × CHECK_TOKENS forward passes).
CHECK_PROMPT_COUNT = 2
#: Default budget for a server model's measured memory (EDGE_TRIAGE_SERVER_MEMORY_BUDGET_BYTES).
DEFAULT_SERVER_BUDGET = 4 * 10**9

def rss_bytes() -> int:
    """This process's resident set (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write_tokenizer(info: GgufInfo, out: Path) -> None:
    """tokenizer.json, tokenizer_config.json, generation_config.json and config.json."""
    from transformers import AutoTokenizer

    from .llm import fix_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "model.gguf"
        try:
            os.symlink(info.path.resolve(), link)
        except OSError:
            shutil.copy2(info.path, link)
        try:
            tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file="model.gguf")
        except Exception as e:
            raise ModelImportError(f"{info.path}: could not build a tokenizer from the GGUF's "
                                   f"vocabulary: {type(e).__name__}: {e}") from e
        tokenizer.save_pretrained(out)
    if not (out / "tokenizer.json").exists():
        raise ModelImportError(f"{info.path}: the GGUF's tokenizer has no fast (tokenizer.json) "
                               "form; a fast tokenizer is needed for the grammar")
    fix_tokenizer(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = max_tokens(info)
    cfg["chat_template"] = info.chat_template
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    vocab = json.loads((out / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in vocab.get("added_tokens", [])}
    # Stop on the model's end-of-sequence and ChatML's end of turn, whichever it has.
    eos = sorted({i for i in [info.eos_token_id, ids.get("<|im_end|>"), ids.get("<|endoftext|>")]
                  if i is not None})
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}, indent=2))
    (out / "config.json").write_text(json.dumps({
        "architecture": info.architecture, "num_hidden_layers": info.layers,
        "vocab_size": info.vocab_size, "max_position_embeddings": info.context_length}, indent=2))


def max_tokens(info: GgufInfo) -> int:
    return min(SERVER_MAX_TOKENS, info.context_length or SERVER_MAX_TOKENS)


def check_and_measure(out: Path, dtype: str, n_ctx: int,
                      log=print) -> tuple[dict[str, float], int]:
    """(checks, measured bytes), from a fresh Python process (``_check_main``) so that nothing
    this process already mapped (the GGUF, read for its metadata) hides in the measurement:
    greedy tokens of our loop vs llama.cpp's own sampler, and the peak resident set of that
    process after loading and running the model, less the same process's before loading."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import sys, models.importer as m; "
                           "m._check_main(sys.argv[1], int(sys.argv[2]))", str(out), str(n_ctx)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise ModelImportError(f"llama.cpp could not run the model: "
                               f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    matched, measured = result["matched"], max(result["peak"] - result["before"], 1)
    log(f"      greedy prefix equal to llama.cpp's sampler per prompt {matched} of {CHECK_TOKENS}; "
        f"measured memory {measured / 2**20:.0f} MiB")
    return {f"greedy_min_prefix_{dtype}": float(min(matched)),
            "greedy_check_prompts": float(len(matched))}, measured


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return rss_bytes()


def _check_main(folder: str, n_ctx: int) -> None:
    from tokenizers import Tokenizer

    from models.cpython.gguf import LlamaCppCausalLM, import_llama_cpp
    from pyapp.generation import Prompt

    from .llm import CHECK_PROMPTS

    out = Path(folder)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    import_llama_cpp()
    before = _peak_rss()
    # The context it will run with: llama.cpp allocates the KV cache for all of it up front.
    lm = LlamaCppCausalLM(out / "model.gguf", n_ctx=n_ctx, threads=None)
    matched = []
    for prompt in CHECK_PROMPTS[:CHECK_PROMPT_COUNT]:
        ids = tokenizer.encode(Prompt(user=prompt, system="You are a helpful assistant.").render(),
                               add_special_tokens=False).ids
        ours = lm.greedy(ids, CHECK_TOKENS)
        theirs = lm.reference_greedy(ids, CHECK_TOKENS)
        matched.append(sum(1 for _ in _prefix(ours, theirs)))
    print(json.dumps({"matched": matched, "before": before, "peak": _peak_rss()}))


def _prefix(a, b):
    for x, y in zip(a, b, strict=False):
        if x != y:
            return
        yield x


def import_gguf(path: Path, build_dir: Path, budget_bytes: int = DEFAULT_SERVER_BUDGET,
                provenance: dict[str, str] | None = None, log=print) -> ModelManifest:
    """Import a GGUF as a server model; returns its manifest (cached by content)."""
    log(f"[1/5] inspecting {path}")
    info = inspect_gguf(Path(path))
    if "<|im_start|>" not in info.chat_template:
        raise ModelImportError(f"{path}: the model's chat template is not ChatML (no "
                               "<|im_start|>); our prompts are ChatML, so its answers would be "
                               "unreliable")
    if info.size > budget_bytes:  # its weights alone are this big once paged in
        raise ModelImportError(f"{path}: the model file alone is {info.size:,} bytes, over the "
                               f"budget of {budget_bytes:,}; nothing imported")
    digest = provenance.get("sha256") if provenance and provenance.get("sha256") else None
    digest = digest or sha256_file(info.path)
    key = content_key([PIPELINE_VERSION, digest, str(max_tokens(info))])
    model_id = f"{slug(info.name)}-{info.file_type}-{key[:12]}"
    cached = cache_root() / "server-models" / model_id
    if not (cached / "manifest.json").exists():
        tmp = cached.with_name(cached.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            manifest = _build(info, digest, key, model_id, tmp, budget_bytes, provenance, log)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    else:
        log(f"      cached ({cached})")
    manifest = ModelManifest.model_validate_json((cached / "manifest.json").read_text())
    if manifest.estimated_memory_bytes > budget_bytes:
        raise ModelImportError(f"{model_id} measured {manifest.estimated_memory_bytes:,} bytes "
                               f"at run time, over the budget of {budget_bytes:,}")
    link_tree(cached, build_dir / "server-models" / model_id)
    return manifest


def _build(info: GgufInfo, digest: str, key: str, model_id: str, out: Path, budget: int,
           provenance: dict[str, str] | None, log) -> ModelManifest:
    started = time.monotonic()
    log("[2/5] tokenizer from the GGUF's vocabulary (transformers → tokenizer.json)")
    write_tokenizer(info, out)
    log(f"[3/5] model file: the GGUF itself ({info.file_type}, {info.size / 2**20:.0f} MiB)")
    try:
        os.link(info.path, out / "model.gguf")
    except OSError:
        shutil.copy2(info.path, out / "model.gguf")
    log("[4/5] checking greedy decoding against llama.cpp and measuring memory")
    checks, measured = check_and_measure(out, info.file_type, max_tokens(info), log)
    if checks[f"greedy_min_prefix_{info.file_type}"] < CHECK_TOKENS:
        raise ModelImportError(f"{model_id}: our decode loop diverges from llama.cpp's greedy "
                               f"sampler: {checks}")
    if measured > budget:
        raise ModelImportError(f"{info.path}: measured {measured:,} bytes at run time "
                               f"({measured / 2**20:.0f} MiB), over the budget of {budget:,} "
                               "(EDGE_TRIAGE_SERVER_MEMORY_BUDGET_BYTES or --memory-budget)")
    log("[5/5] writing manifest")
    prov = {"package": f"local file {info.path.name}", "sha256": digest,
            "licence": info.licence or "not stated in the GGUF"} | (provenance or {})
    manifest = ModelManifest(
        name=info.name, model_id=model_id, task="text-generation", dtype=info.file_type,
        variants={info.file_type: "model.gguf"}, key=key, files=list_files(out),
        estimated_memory_bytes=measured, max_tokens=max_tokens(info),
        source=f"{prov['package']} (GGUF {info.architecture}, {info.parameters_label or '?'} "
               f"parameters, {info.file_type}), sha256 {digest}",
        checks=checks, runtime="llama.cpp", provenance=prov)
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    log(f"      imported {model_id} in {time.monotonic() - started:.0f}s")
    return manifest


def import_model(source: Path, build_dir: Path, budget_bytes: int | None = None,
                 log=print, target: str = "auto") -> ModelManifest:
    """Dispatch on what ``source`` is and where it should run: ``server`` (llama.cpp, GGUF only),
    ``browser`` (ONNX for the page and CPython), or ``auto``: a GGUF for the server, a Hugging Face
    folder or ONNX export for the browser."""
    source = Path(source)
    if not source.exists():
        raise ModelImportError(f"{source}: no such file or folder")
    is_gguf = source.is_file() and (source.suffix.lower() == ".gguf" or _magic(source) == b"GGUF")
    if target == "auto":
        target = "server" if is_gguf or source.is_file() else "browser"
    if target == "browser":
        return import_browser_lm(source, build_dir, budget_bytes or DEFAULT_BROWSER_BUDGET, log)
    if is_gguf:
        return import_gguf(source, build_dir, budget_bytes or DEFAULT_SERVER_BUDGET, log=log)
    if source.is_dir():
        raise ModelImportError(f"{source}: the server runs GGUF files (llama.cpp); a Hugging "
                               "Face folder or ONNX export is imported for the browser "
                               "(--for browser)")
    raise ModelImportError(f"{source}: not a GGUF file (a .gguf file is expected)")


#: The page's default budget (server.settings.Settings.memory_budget_bytes, the same number; a
#: deployment sets its own with EDGE_TRIAGE_MEMORY_BUDGET_BYTES): a model the import accepts is
#: one the page loads. (It was 3 GB, from before the page's memory was measured, so a model
#: the page then refused could be imported.)
DEFAULT_BROWSER_BUDGET = 1_200_000_000


def import_browser_lm(path: Path, build_dir: Path, budget_bytes: int = DEFAULT_BROWSER_BUDGET,
                      log=print, provenance: dict[str, str] | None = None) -> ModelManifest:
    """A GGUF, Hugging Face folder or ONNX export → the browser's layout, through the built-in
    model's pipeline (``llm.build_llm``), with its peak memory measured in onnxruntime-web."""
    from . import llm
    from .build import build_imported
    from .lmsource import inspect_source

    log(f"inspecting {path}")
    source = inspect_source(path)
    if provenance:  # a pinned download (models fetch): who published it, the pinned hash
        source = dataclasses.replace(source, provenance=source.provenance | provenance)
    key = llm.build_key(source)

    def build(out: Path, key: str, log) -> ModelManifest:
        manifest = llm.build_llm(out, key, log, source, imported=True)
        measured = measure_browser_memory(out / llm.VARIANTS["q8"], out / "config.json", log)
        manifest = manifest.model_copy(update={
            "estimated_memory_bytes": measured,
            "checks": manifest.checks | {"measured_memory_bytes_q8": float(measured)}})
        (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        if measured > budget_bytes:
            raise ModelImportError(f"{path}: measured {measured:,} bytes in onnxruntime-web "
                                   f"({measured / 2**20:.0f} MiB), over the browser budget of "
                                   f"{budget_bytes:,} (EDGE_TRIAGE_MEMORY_BUDGET_BYTES or "
                                   "--memory-budget); nothing imported")
        return manifest

    def accept(manifest: ModelManifest) -> None:  # a cached build, measured with another budget
        if manifest.estimated_memory_bytes > budget_bytes:
            raise ModelImportError(f"{manifest.model_id} measured "
                                   f"{manifest.estimated_memory_bytes:,} bytes in onnxruntime-web, "
                                   f"over the budget of {budget_bytes:,}; nothing imported")

    return build_imported(f"{slug(source.name)}-import", key, build,
                          Path(build_dir) / "models", log, accept)


def measure_browser_memory(model: Path, config: Path, log=print) -> int:
    """onnxruntime-web's Wasm heap after loading ``model`` as the page does and running one
    forward pass (the page's engine, under Node: models/measure_memory.mjs). The heap never
    shrinks, so this is what the page keeps paying for."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["node", str(root / "models" / "measure_memory.mjs"), str(model),
                               str(config)], capture_output=True, text=True, cwd=root,
                              timeout=900)
    except FileNotFoundError as e:
        raise ModelImportError("Node.js is needed to measure the model's memory in "
                               "onnxruntime-web (`make setup` installs its npm packages)") from e
    if done.returncode != 0:
        raise ModelImportError(f"onnxruntime-web could not run the model: "
                               f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    measured = int(json.loads(done.stdout.strip().splitlines()[-1])["measured"])
    log(f"      measured {measured / 2**20:.0f} MiB of Wasm heap in onnxruntime-web (Node, 1 thread)")
    return measured


def _magic(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def load_server_manifests(build_dir: Path) -> list[ModelManifest]:
    root = Path(build_dir) / "server-models"
    return [ModelManifest.model_validate_json(p.read_text())
            for p in sorted(root.glob("*/manifest.json"))]
