"""The built language model: files, layout transformers.js loads, greedy parity with the source."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from models.cache import sha256_file
from models.manifest import ModelManifest

pytestmark = pytest.mark.slow


@cache
def _model_dir(build_dir: Path) -> Path:
    from models.build import choose_lm, load_manifests

    found = choose_lm(load_manifests(build_dir / "models"))
    if found is None:
        pytest.fail("no language model in build/models: run `make build`")
    return build_dir / "models" / found.model_id


@pytest.fixture(scope="module")
def llm_dir(build_dir) -> Path:
    return _model_dir(build_dir)


def test_manifest_lists_both_variants_with_hashes(llm_dir):
    m = ModelManifest.model_validate_json((llm_dir / "manifest.json").read_text())
    assert m.task == "text-generation" and m.dtype == "q8"
    assert m.variants == {"q8": "onnx/model_quantized.onnx", "q4": "onnx/model_q4.onnx"}
    files = {f.path: f for f in m.files}
    for rel in m.variants.values():
        assert files[rel].sha256 == sha256_file(llm_dir / rel)
    for name in ("config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json"):
        assert name in files
    assert m.checks["greedy_min_prefix_q8"] == 16


def test_q8_ships_gguf_codes_and_a_graph_without_weights(llm_dir):
    """The q8 graph's float weights are external data built from the codes at load
    (models/ggufcodes.py): the download is the codes (4-bit Q4_1 nibbles), ~0.8 byte a weight."""
    import onnx

    from models import ggufcodes
    from models.llm import variant_bytes

    m = ModelManifest.model_validate_json((llm_dir / "manifest.json").read_text())
    graph = llm_dir / m.variants["q8"]
    plan = json.loads(ggufcodes.plan_path(graph).read_text())
    sizes = {f.path: f.size for f in m.files}
    model = onnx.load(str(graph), load_external_data=False)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert {e.value for t in external for e in t.external_data if e.key == "location"} == {plan["data"]}
    assert max(t.ByteSize() for t in model.graph.initializer) < 2**20
    weights = sum(t["rows"] * t["cols"] for t in plan["tensors"].values())
    assert weights > 130e6
    assert variant_bytes(sizes, m.variants["q8"]) < 0.9 * weights


def test_variant_bytes_count_the_files_beside_the_graph():
    from models.llm import variant_bytes

    sizes = {"onnx/model_quantized.onnx": 1, "onnx/model_quantized.codes": 10,
             "onnx/model_quantized.fold.json": 2, "onnx/model_q4.onnx": 100, "tokenizer.json": 5}
    assert variant_bytes(sizes, "onnx/model_quantized.onnx") == 13
    assert variant_bytes(sizes, "onnx/model_q4.onnx") == 100


def test_tokenizer_files_are_what_transformers_js_reads(llm_dir):
    config = json.loads((llm_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in config["chat_template"]
    assert config["add_bos_token"] is False
    tok = json.loads((llm_dir / "tokenizer.json").read_text())
    assert tok["post_processor"] is None and tok["decoder"]["type"] == "ByteLevel"


@pytest.mark.parametrize("dtype", ["q8", "q4"])
def test_onnx_layout_is_the_causal_lm_layout_with_kv_cache(llm_dir, dtype):
    from models.cpython.lm import OnnxCausalLM

    m = ModelManifest.model_validate_json((llm_dir / "manifest.json").read_text())
    sess = OnnxCausalLM.from_file(llm_dir / m.variants[dtype], threads=1)._session
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    assert inputs[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert inputs[3:5] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert outputs[:3] == ["logits", "present.0.key", "present.0.value"]
    assert len(inputs) - 3 == len(outputs) - 1 == 60  # 30 layers × key, value


def test_q8_greedy_continuations_equal_the_source_model(llm_dir):
    """The reference tokens were produced by the transformers (float) model at build time."""
    from models.cpython.lm import OnnxCausalLM

    reference = json.loads((llm_dir / "checks" / "greedy_reference.json").read_text())
    lm = OnnxCausalLM.from_file(llm_dir / "onnx" / "model_quantized.onnx")
    assert len(reference) >= 4
    for r in reference:
        assert lm.greedy(r["input_ids"], len(r["tokens"])) == r["tokens"], r["prompt"]


def test_q8_greedy_is_stable_across_the_kv_cache(llm_dir):
    """One pass over prompt+continuation gives the same next-token choices as the cached steps."""
    from models.cpython.lm import OnnxCausalLM

    r = json.loads((llm_dir / "checks" / "greedy_reference.json").read_text())[0]
    lm = OnnxCausalLM.from_file(llm_dir / "onnx" / "model_quantized.onnx")
    full = lm.start(r["input_ids"] + r["tokens"][:-1])
    assert int(full.logits.argmax()) == r["tokens"][-1]
