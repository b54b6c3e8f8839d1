"""Coverage on JSONSchemaBench (real-world schemas nobody here wrote); CPython only.

For each schema: does it load (``normal_form.enforceable``, then compile without xgrammar
warning that it relaxed something), and does the text the model
generates under its grammar, from a generic "fill this in" prompt, validate against the schema
with ``jsonschema`` (a standard validator, independent of the engine)? A schema that fails to load
is never generated from: refusing is the engine's correct answer to what it cannot enforce.
``valid_closed_early`` counts the valid outputs whose JSON was closed to fit the token budget
(``generation.closing``).

    edge-triage schemabench glaiveai2k --limit 50
    edge-triage schemabench github_easy --sample 200   # 200 schemas chosen by a hash of their id
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pyapp.generation import Prompt
from pyapp.grammar.coverage import UnsupportedSchemaError

SETS = {"glaiveai2k": "glaiveai2k_dev.jsonl", "github_easy": "github_easy_dev.jsonl"}
SYSTEM = "You are a helpful assistant that answers with JSON only."


def schema_prompt(schema: dict) -> Prompt:
    return Prompt(user="Fill in a realistic JSON object that matches this JSON schema:\n"
                       f"{json.dumps(schema)}", system=SYSTEM)


def load_set(name: str, limit: int | None = None, sample: int | None = None) -> list[dict]:
    """The set's schemas: the first ``limit``, or ``sample`` of them chosen by a hash of their
    id (the same sample on every machine, spread over the whole file)."""
    from .trainingdata import data_root

    path = Path(name) if name.endswith(".jsonl") else data_root() / "jsonschemabench" / SETS[name]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if sample:
        rows = sorted(rows, key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())[:sample]
    return rows[:limit] if limit else rows


def run_schemabench(generator, name: str, limit: int | None = None, max_new_tokens: int = 256,
                    log: Callable[[str], None] = lambda _: None,
                    sample: int | None = None) -> dict:
    import jsonschema

    rows = load_set(name, limit, sample)
    engine = generator.grammar_engine()
    unsupported: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    loaded = valid = closed = 0
    failures = []
    started = time.perf_counter()
    for row in rows:
        schema = row["schema"]
        try:
            grammar = engine.compile_json_schema(schema)
        except UnsupportedSchemaError as e:
            unsupported[e.keyword] += 1
            log(f"{row['id']}: refused: {e}")
            continue
        loaded += 1
        gen = generator.generate_sync(schema_prompt(schema), grammar, max_new_tokens)
        stops[gen.stop_reason] += 1
        ok, why = False, gen.stop_reason
        if gen.complete:
            try:
                validator = jsonschema.validators.validator_for(schema)
                validator(schema, format_checker=None).validate(json.loads(gen.text))
                ok = True
            except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError) as e:
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        valid += ok
        closed += ok and gen.closed_early
        if not ok:
            failures.append({"id": row["id"], "why": why, "text": gen.text[:200]})
        log(f"{row['id']}: {'valid' if ok else 'INVALID ' + why} ({len(gen.token_ids)} tokens"
            f"{', closed early' if gen.closed_early else ''})")
    n = len(rows)
    return {
        "set": name, "schemas": n, "sample": sample, "loaded": loaded, "valid": valid,
        "load_fraction": round(loaded / n, 4) if n else 0.0,
        "valid_fraction": round(valid / n, 4) if n else 0.0,
        "valid_fraction_of_loaded": round(valid / loaded, 4) if loaded else 0.0,
        "valid_closed_early": closed,
        "unsupported_keywords": dict(unsupported), "stop_reasons": dict(stops),
        "max_new_tokens": max_new_tokens, "engine": engine.name,
        "model": generator.model_key, "seconds": round(time.perf_counter() - started, 1),
        "failures": failures,
    }
