"""The built encoder: manifest integrity, quality against the source float model, caching."""

import json
from pathlib import Path

import numpy as np
import pytest

from models import build as build_mod
from models import encoder
from models import encoder as encoder_mod
from models.cache import sha256_file
from models.manifest import ModelManifest


@pytest.fixture(scope="module")
def manifest(encoder_dir) -> ModelManifest:
    return ModelManifest.model_validate_json((encoder_dir / "manifest.json").read_text())


def test_manifest_lists_every_file_with_size_and_sha256(encoder_dir, manifest):
    on_disk = {p.relative_to(encoder_dir).as_posix() for p in encoder_dir.rglob("*")
               if p.is_file() and p.name != "manifest.json" and p.parent.name != "shards"}
    assert {f.path for f in manifest.files} == on_disk
    for f in manifest.files:
        path = encoder_dir / f.path
        assert path.stat().st_size == f.size
        assert sha256_file(path) == f.sha256
    assert manifest.name == "all-MiniLM-L6-v2" and manifest.task == "embedding"
    assert manifest.dtype == "uint8"  # the integer file, browser = CPython bit for bit
    assert manifest.estimated_memory_bytes > manifest.total_bytes
    assert manifest.model_id.endswith(manifest.key[:12])


def test_large_files_are_sharded_and_shards_reassemble_the_file(encoder_dir, manifest):
    from models.shards import SHARD_BYTES

    shards = manifest.shards["onnx/model_quantized.onnx"]
    assert len(shards) > 1
    assert all(s.size == SHARD_BYTES for s in shards[:-1])
    joined = b"".join((encoder_dir / s.path).read_bytes() for s in shards)
    assert joined == (encoder_dir / "onnx" / "model_quantized.onnx").read_bytes()
    for s in shards:
        assert sha256_file(encoder_dir / s.path) == s.sha256
    assert "config.json" not in manifest.shards  # small files are fetched whole


def test_quantised_model_is_a_quarter_of_float_and_loads_like_transformers_js_expects(encoder_dir):
    import onnxruntime as ort

    q8 = encoder_dir / "onnx" / "model_quantized.onnx"
    float_bytes = (encoder.source_dir() / "model.safetensors").stat().st_size
    assert q8.stat().st_size < float_bytes / 3
    session = ort.InferenceSession(str(q8), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    config = json.loads((encoder_dir / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == encoder.MAX_TOKENS


def _source_embeddings(texts):
    """Mean-pooled, normalised embeddings of the float source model, computed with torch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    src = encoder.source_dir()
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=encoder.MAX_TOKENS,
                return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


@pytest.mark.parametrize("dtype,floor", [("uint8", encoder_mod.MIN_COSINE_INTEGER),
                                         ("q8", encoder_mod.MIN_COSINE)])
def test_quantised_embeddings_match_the_float_source_model(encoder_dir, dtype, floor):
    from models.cpython.encoder import OnnxEncoder

    texts = list(encoder_mod.CHECK_SENTENCES)
    got = np.array(OnnxEncoder.from_dir(encoder_dir, dtype=dtype).embed_sync(texts))
    cosines = (got * _source_embeddings(texts)).sum(axis=1)
    assert cosines.min() >= floor, cosines


@pytest.mark.parametrize("dtype", ["uint8", "q8"])
def test_embeddings_do_not_depend_on_batch_composition(encoder_dir, dtype):
    from models.cpython.encoder import OnnxEncoder

    enc = OnnxEncoder.from_dir(encoder_dir, dtype=dtype)
    texts = list(encoder_mod.CHECK_SENTENCES)
    together = np.array(enc.embed_sync(texts))
    alone = np.array([enc.embed_sync([t])[0] for t in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_second_build_uses_the_cache(tmp_path, monkeypatch, encoder_dir):
    cached = encoder_dir.resolve()
    monkeypatch.setattr(build_mod.finetune, "finetuned_packs", lambda: {})
    monkeypatch.setattr(build_mod, "BUILDERS", {
        encoder.NAME: (encoder.build_key, lambda *a: pytest.fail("rebuilt a cached model")),
    })
    manifests = build_mod.build_all(tmp_path / "models", log=lambda *_: None)
    assert manifests[0].model_id == cached.name
    linked = tmp_path / "models" / manifests[0].model_id / "onnx" / "model_quantized.onnx"
    assert sha256_file(linked) == sha256_file(cached / "onnx" / "model_quantized.onnx")


def test_build_key_changes_with_pipeline_version(monkeypatch):
    before = encoder.build_key()
    monkeypatch.setattr(encoder, "PIPELINE_VERSION", "something-else")
    assert encoder.build_key() != before


def test_weight_quantisation_round_trip(tmp_path):
    """quantize_weights_int8 on a tiny real ONNX graph: same outputs as float within int8 error."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from models.weightquant import quantize_weights_int8

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 96)).astype(np.float32)
    table = rng.normal(size=(100, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),
         helper.make_node("MatMul", ["emb", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 96])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(table, "table")],
    )
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    assert quantize_weights_int8(src, dst) == {"matmul": 1, "gather": 1}
    ids = np.array([3, 7, 99])
    ref = table[ids] @ w
    out, = ort.InferenceSession(str(dst)).run(None, {"ids": ids})
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert dst.stat().st_size < src.stat().st_size / 3
