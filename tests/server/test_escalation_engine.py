"""The engine handler on real models: one model per kind of task, opened lazily; bounded
concurrency; a timeout per case; and, where llama.cpp's binding is installed (`make
escalation-engine`), an extraction case answered by an imported GGUF model run natively."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from pathlib import Path

import pytest

from server.escalation_engine import EscalationEngines, EscalationModelError
from server.handlers import EngineHandler, HandlerError
from server.queue import Case, NewCase
from server.settings import Settings

from .conftest import new_case

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(
    not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed (optional: `make "
    "escalation-engine` compiles it, ~30 min here, so `make test` does not)")

EXTRACT = "Fan 2 on node 4B stalled at 0 RPM, replace it today"


def a_case(**overrides) -> Case:
    return Case.new(NewCase.model_validate(new_case(**overrides)), now=1.0)


def test_a_classification_case_opens_only_the_encoder(build_dir: Path):
    engines = EscalationEngines(Settings(build_dir=build_dir, escalation_model="browser"))
    handler = EngineHandler(engines.open)
    answer = asyncio.run(handler.resolve(a_case()))
    assert answer["output"]["label"] == "mechanical"
    assert list(engines._backends) == ["classification"]  # no language model was loaded


def test_a_case_of_a_pack_with_its_own_encoder_runs_on_that_encoder(build_dir: Path):
    from models.build import encoder_manifest, load_manifests
    from pyapp.tasks.clinc import ENCODER

    if encoder_manifest(load_manifests(build_dir / "models"), ENCODER) is None:
        pytest.skip("no fine-tuned encoder in build/ (CLINC150 data absent at build time)")
    engines = EscalationEngines(Settings(build_dir=build_dir, escalation_model="browser"))
    handler = EngineHandler(engines.open)
    answer = asyncio.run(handler.resolve(a_case(
        task="clinc150-intent", text="what is my checking account balance",
        local_result={"output": {"label": "balance", "confidence": 0.5, "scores": {}}})))
    assert answer["output"]["label"] == "balance"
    assert list(engines._backends) == [f"classification:{ENCODER}"]


def test_an_unknown_escalation_model_is_named_in_the_error(build_dir: Path, tmp_path):
    engines = EscalationEngines(Settings(build_dir=build_dir, escalation_model="no-such-model"))
    with pytest.raises(EscalationModelError, match="'no-such-model' is not built"):
        engines.backend("extraction")


@pytest.mark.slow
def test_a_case_over_its_time_limit_is_cancelled_and_fails_the_attempt(build_dir: Path):
    engines = EscalationEngines(Settings(build_dir=build_dir, escalation_model="browser"))
    handler = EngineHandler(engines.open, timeout_s=0.2)
    engines.open("telemetry-extract")  # load outside the timed part
    started = time.monotonic()
    with pytest.raises(HandlerError, match=r"timed out after 0.2 s"):
        asyncio.run(handler.resolve(a_case(task="telemetry-extract", text=EXTRACT)))
    assert time.monotonic() - started < 30


def test_no_more_than_the_configured_cases_run_at_once(engine):
    running, peak, lock = [0], [0], threading.Lock()

    class Counting:
        """The real engine, counting how many runs overlap."""

        async def run(self, task, text, cancel=None):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            try:
                return await engine.run(task, text)
            finally:
                with lock:
                    running[0] -= 1

    for concurrency in (1, 2):
        running[0], peak[0] = 0, 0
        handler = EngineHandler(lambda task: Counting(), concurrency=concurrency)

        async def four():
            return await asyncio.gather(*(handler.resolve(a_case()) for _ in range(4)))

        answers = asyncio.run(four())
        assert {a["output"]["label"] for a in answers} == {"mechanical"}
        assert peak[0] == concurrency


def test_an_imported_onnx_model_answers_an_escalated_extraction(build_dir: Path):
    """The handler on a model brought with `models import --for browser` (SmolLM2 as a Hugging
    Face folder, tests/models/imported_lm.py), named by EDGE_TRIAGE_ESCALATION_MODEL: opened on
    the first extraction case, under onnxruntime, its answer says which model gave it."""
    from tests.models.imported_lm import ensure_imported

    imported = ensure_imported(build_dir)
    engines = EscalationEngines(Settings(build_dir=build_dir, escalation_model=imported.name))
    answer = asyncio.run(EngineHandler(engines.open).resolve(
        a_case(task="telemetry-extract", text=EXTRACT)))
    assert answer["model"] == imported.model_id
    assert answer["valid"] is True
    assert answer["output"]["record"]["severity"] in ("info", "warning", "error", "critical")
    assert list(engines._backends)[0] == "extraction"


def test_an_escalated_hybrid_extraction_takes_its_closed_set_fields_from_the_heads(build_dir: Path):
    """telemetry-extract on the server: the heads fill category, severity and component_kind
    as in the page (the same encoder file and heads as CPython's `run`), the language model the
    rest, and the answer says so."""
    from models.cpython.engines import open_engine

    engines = EscalationEngines(Settings(build_dir=build_dir, escalation_model="browser"))
    answer = asyncio.run(EngineHandler(engines.open).resolve(
        a_case(task="telemetry-extract", text=EXTRACT)))
    assert answer["valid"] is True
    sources = answer["output"]["sources"]
    for field, head in (("category", "telemetry-category"), ("severity", "telemetry-severity"),
                        ("component_kind", "telemetry-component-kind")):
        assert sources[field] == f"{head} (encoder head)"
    # The language model's engine names the answer's model, not the heads' encoder.
    assert answer["model"] == engines.backend("extraction").manifest.model_id
    local = asyncio.run(open_engine(build_dir, ["telemetry-extract"]).run("telemetry-extract",
                                                                          EXTRACT))
    assert answer["output"]["record"] == local["output"]["record"]
    assert answer["output"]["field_confidence"] == local["output"]["field_confidence"]


@needs_llama_cpp
@pytest.mark.slow
def test_an_imported_gguf_answers_an_escalated_extraction_natively(build_dir: Path, tmp_path):
    """SmolLM2's GGUF imported as a server model (the 1.5B model is measured in the report:
    1.1 GB is too big a download for CI), then a telemetry-extract case through the handler."""
    from models.importer import import_model
    from models.llm import GGUF, source_dir

    build = tmp_path / "build"
    manifest = import_model(source_dir() / GGUF, build)
    for built in ("models", "tasks"):  # the encoder heads telemetry-extract's fields come from
        (build / built).symlink_to(build_dir / built)
    assert manifest.runtime == "llama.cpp" and manifest.dtype == "q4_1"
    assert manifest.checks["greedy_min_prefix_q4_1"] == 8.0
    assert manifest.provenance["sha256"] == next(
        f.sha256 for f in manifest.files if f.path == "model.gguf")
    assert 50 * 2**20 < manifest.estimated_memory_bytes < 1500 * 2**20
    engines = EscalationEngines(Settings(build_dir=build))
    answer = asyncio.run(EngineHandler(engines.open).resolve(
        a_case(task="telemetry-extract", text=EXTRACT)))
    assert answer["model"] == manifest.model_id
    assert answer["backend"] == "llama.cpp"
    assert answer["valid"] is True
    assert answer["output"]["record"]["severity"] in ("info", "warning", "error", "critical")
