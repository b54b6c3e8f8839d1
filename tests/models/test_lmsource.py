"""``edge-triage models import SOURCE --for browser``: what is refused before any work (each with
its reason), and one real import end to end (SmolLM2 as a Hugging Face folder, tests/models/
imported_lm.py), checked against its source and run by CPython with the same decode loop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.gguf_source import ModelImportError
from models.importer import import_model
from models.lmsource import inspect_source

from .test_gguf_source import SMOLLM, write_gguf

CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


def hf_like(tmp_path: Path, **config) -> Path:
    """A small folder shaped like a Hugging Face causal LM (real tokenizer.json from the built-in
    model's tokenizer, a real safetensors file of two tensors)."""
    from safetensors.numpy import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]} | config
    (folder / "config.json").write_text(json.dumps(cfg))
    tokenizer = _tokenizer_json()
    (folder / "tokenizer.json").write_text(tokenizer)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    save_file({"a": np.ones((64, 64), np.float32), "b": np.zeros((8,), np.float32)},
              str(folder / "model.safetensors"))
    return folder


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    return tok.to_str()


def test_a_hugging_face_causal_lm_folder_is_recognised(tmp_path):
    source = inspect_source(hf_like(tmp_path))
    assert (source.kind, source.architecture) == ("hf", "llama")
    assert len(source.digest) == 64


def test_an_encoder_folder_is_not_a_language_model(tmp_path):
    folder = hf_like(tmp_path, model_type="bert", architectures=["BertModel"])
    with pytest.raises(ModelImportError, match="BertModel is not a causal language model"):
        import_model(folder, tmp_path / "build", target="browser")


def test_an_unsupported_architecture_is_named(tmp_path):
    folder = hf_like(tmp_path, model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"])
    with pytest.raises(ModelImportError, match="architecture 'gpt_neox' is not supported"):
        inspect_source(folder)


def test_a_folder_without_a_tokenizer_is_refused(tmp_path):
    folder = hf_like(tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelImportError, match="no tokenizer.json"):
        inspect_source(folder)


def test_an_unreadable_tokenizer_is_refused(tmp_path):
    folder = hf_like(tmp_path)
    (folder / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(ModelImportError, match="unreadable tokenizer"):
        inspect_source(folder)


def test_a_chat_format_our_prompts_cannot_write_is_refused(tmp_path):
    folder = hf_like(tmp_path)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "[INST] {{ x }}"}))
    with pytest.raises(ModelImportError, match="no ChatML chat template"):
        inspect_source(folder)


def test_truncated_weights_are_refused_with_the_sizes(tmp_path):
    folder = hf_like(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelImportError, match="model.safetensors"):
        inspect_source(folder)


def test_a_folder_without_weights_is_refused(tmp_path):
    folder = hf_like(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelImportError, match="no \\*.safetensors weights and no model.onnx"):
        inspect_source(folder)


def test_a_corrupt_onnx_export_is_refused(tmp_path):
    folder = hf_like(tmp_path)
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelImportError, match="corrupt or truncated ONNX"):
        inspect_source(folder)


def test_an_onnx_export_without_a_kv_cache_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    folder = hf_like(tmp_path)
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.INT64, [1])])
    onnx.save(helper.make_model(graph), str(folder / "model.onnx"))
    with pytest.raises(ModelImportError, match="not a text-generation-with-past export"):
        inspect_source(folder)


def test_a_gguf_with_a_sentencepiece_tokenizer_is_not_built_for_the_browser(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "sp.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<s>", "a"])
    w.add_chat_template("<|im_start|>{{ messages }}")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelImportError, match="not byte-level BPE"):
        inspect_source(path)


def test_a_gguf_architecture_the_browser_cannot_run_points_to_the_server(tmp_path):
    path = write_gguf(tmp_path / "g.gguf", "gemma2", ["a", "b"])
    with pytest.raises(ModelImportError, match="--for server"):
        import_model(path, tmp_path / "build", target="browser")


def test_the_built_in_gguf_is_a_browser_source_with_the_built_in_key():
    from models import llm

    source = inspect_source(SMOLLM)
    assert (source.kind, source.architecture) == ("gguf", "llama")
    # The built-in model is this very source: its content key is the one `make build` uses.
    assert llm.build_key(source) == llm.build_key()


@pytest.fixture(scope="module")
def imported(build_dir):
    from tests.models.imported_lm import ensure_imported

    return ensure_imported(build_dir)


def test_a_hugging_face_folder_is_imported_for_the_browser(imported, build_dir):
    from models.build import choose_lm, load_manifests

    m = imported
    assert m.imported and m.task == "text-generation" and m.runtime == "onnxruntime"
    folder = build_dir / "models" / m.model_id
    # The same layout as the built-in model: both variants, sharded and hashed, the tokenizer.
    assert set(m.variants) == {"q8", "q4"} and all((folder / p).exists() for p in m.variants.values())
    assert m.shards and (folder / "tokenizer.json").exists()
    # Checked against the source (transformers, float32): teacher-forced top-1 on 16 positions
    # of each check prompt, and memory measured in onnxruntime-web.
    assert m.checks["forced_top1_min_q8"] >= 15
    assert m.estimated_memory_bytes == m.checks["measured_memory_bytes_q8"] > 10 * m.total_bytes / 10
    assert m.provenance["sha256"] and m.source.startswith("local Hugging Face folder")
    manifests = load_manifests(build_dir / "models")
    assert choose_lm(manifests, m.model_id) == m
    assert not choose_lm(manifests).imported  # the built-in model stays the default
    with pytest.raises(LookupError, match="no such language model"):
        choose_lm(manifests, "nope")


def test_build_keeps_imported_models(imported, build_dir, tmp_path):
    from models.build import _imported

    assert _imported(build_dir / "models" / imported.model_id)


def test_the_build_calibrates_extraction_on_the_imported_model_the_deployment_runs(
        imported, build_dir, tmp_path, monkeypatch):
    """`EDGE_TRIAGE_BROWSER_LM=<imported id> make build`: the build's own models do not include
    the imported one, yet the extraction calibration must run on it (it used to stop the build
    with "no such language model")."""
    import models.cpython.engines as engines
    from models import taskpacks

    class Opened(Exception):
        pass

    opened = []

    def open_generator(build_dir, dtype=None, threads=None, model=None):
        opened.append(model)
        raise Opened  # the model it would calibrate on is all this test needs

    monkeypatch.setattr(engines, "open_generator", open_generator)
    monkeypatch.setenv("EDGE_TRIAGE_BROWSER_LM", imported.model_id)
    with pytest.raises(Opened):
        taskpacks._calibration_artifacts(build_dir, tmp_path, log=lambda line: None)
    assert opened == [imported.model_id]


def test_the_imported_model_extracts_under_cpython_as_the_built_in_one_does(imported, build_dir):
    """The same record from the same loop on a held-out Loghub line: the 8-bit weights differ
    from the built-in model's only by Q8_0 rounding of the same float source."""
    import asyncio

    from models.cpython.engines import open_generator
    from pyapp.engine import Engine
    from tests.pyapp.tasks.test_loghub_fields import dev_records

    text = dev_records()[0]["text"]
    records = []
    for model in (imported.model_id, ""):
        gen = open_generator(build_dir, model=model)
        assert (imported.model_id in str(gen.model_dir)) == bool(model)
        engine = Engine(gen)
        asyncio.run(engine.load(["loghub-fields"]))
        r = asyncio.run(engine.run("loghub-fields", text))
        assert r["valid"], r
        records.append(r["output"]["record"])
    assert records[0] == records[1]


def test_an_import_over_the_budget_is_refused_and_leaves_nothing(imported, tmp_path):
    from tests.models.imported_lm import hf_folder

    with pytest.raises(ModelImportError, match="over the budget"):
        import_model(hf_folder(), tmp_path / "build", budget_bytes=500 * 10**6, target="browser")
    assert not (tmp_path / "build" / "models").exists() or \
        not any((tmp_path / "build" / "models").iterdir())
    shutil.rmtree(tmp_path / "build", ignore_errors=True)
