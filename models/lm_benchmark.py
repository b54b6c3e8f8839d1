"""Decode speed with and without the grammar constraint, in one run (``edge-triage lm-bench``).

Not a test: timings depend on the machine. Both runs decode the same prompt for the same number
of tokens (the constrained one against a schema with a long free-text field, so it does not
finish early); the constraint's own time per token (fill the bitmask, mask + pick, accept) is
measured inside the loop.
"""

from __future__ import annotations

import time

from pyapp.generation.loop import decode_greedy
from pyapp.generation.prompt import Prompt

SCHEMA = {"type": "object", "properties": {
    "category": {"enum": ["thermal", "power", "network", "storage", "mechanical"]},
    "notes": {"type": "array", "items": {"type": "string"}, "minItems": 64},
}, "required": ["category", "notes"]}
PROMPT = Prompt(user="Describe, as a JSON object with many notes, what to check when a server "
                     "fan fails: Error: Fan speed threshold exceeded on Node 4B.")


def run_benchmark(generator, tokens: int = 64, repeats: int = 2) -> dict:
    from .cpython.sampling import GreedyKernel

    ids = generator.encode(PROMPT.render())
    grammar = generator.grammar_engine().compile_json_schema(SCHEMA)
    kernel = GreedyKernel(generator.lm.vocab_size)
    out: dict = {"dtype": generator.dtype, "threads": generator.threads, "tokens": tokens,
                 "prompt_tokens": len(ids)}
    for label, cursor_factory in (("unconstrained", lambda: None),
                                  ("constrained", grammar.cursor)):
        best = None
        for _ in range(repeats):
            t = time.perf_counter()
            gen = decode_greedy(generator.lm, ids, kernel=kernel, cursor=cursor_factory(),
                                max_new_tokens=tokens, eos_ids=frozenset())
            total = time.perf_counter() - t
            decode_s = total - gen.timings["prefill_s"]
            n = len(gen.token_ids)
            row = {"new_tokens": n, "decode_tok_per_s": round(n / decode_s, 2),
                   "prefill_ms": round(gen.timings["prefill_s"] * 1000, 1),
                   "constraint_ms_per_token": round(gen.timings["constraint_s"] / n * 1000, 3),
                   "stop_reason": gen.stop_reason}
            if best is None or row["decode_tok_per_s"] > best["decode_tok_per_s"]:
                best = row
        out[label] = best
    out["constrained_vs_unconstrained"] = round(
        out["constrained"]["decode_tok_per_s"] / out["unconstrained"]["decode_tok_per_s"], 3)
    return out
