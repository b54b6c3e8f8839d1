"""The per-pack fine-tuned encoder: what training does (on a tiny real run), what its cache key
covers, and how the build wires it (the CLINC150 pack and the telemetry heads on their own, the
other packs on the base one)."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models import encoder, finetune
from models.build import encoder_manifest, load_manifests
from models.finetune import FinetuneConfig
from models.trainingdata import data_root, read_jsonl
from pyapp.tasks import create_task
from pyapp.tasks.clinc import ENCODER
from pyapp.tasks.telemetry_labels import ENCODER as TELEMETRY_ENCODER

HAS_CLINC = (data_root() / "clinc150" / "train.jsonl").exists()
needs_clinc = pytest.mark.skipif(not HAS_CLINC, reason="CLINC150 data not found (EDGE_TRIAGE_DATA)")
needs_loghub = pytest.mark.skipif(not (data_root() / "loghub" / "dev.jsonl").exists(),
                                  reason="Loghub data not found (EDGE_TRIAGE_DATA)")

TEXTS = ["turn the lights off in the kitchen", "switch on the living room lamp",
         "dim the bedroom lights", "lights on please",
         "what is my checking balance", "how much money is in savings",
         "show my account balance", "balance of my credit card"]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1]


def test_finetuning_changes_the_top_layers_not_the_tokenizer_or_lower_layers(tmp_path):
    import torch
    from transformers import AutoModel

    config = FinetuneConfig(epochs=2, batch_size=4, max_tokens=16, lr=1e-4)
    stats = finetune.finetune(encoder.source_dir(), TEXTS, LABELS, 2, tmp_path / "ft", config,
                              log=lambda *_: None)
    assert stats["steps"] == 4 and len(stats["history"]) == 2
    assert all(h["loss"] == h["loss"] for h in stats["history"])  # finite, not NaN
    for name in finetune.TOKENIZER_FILES:
        assert (tmp_path / "ft" / name).read_bytes() == (encoder.source_dir() / name).read_bytes()
    base = AutoModel.from_pretrained(str(encoder.source_dir())).state_dict()
    tuned = AutoModel.from_pretrained(str(tmp_path / "ft")).state_dict()
    assert torch.equal(base["embeddings.word_embeddings.weight"],
                       tuned["embeddings.word_embeddings.weight"])
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert any(k.startswith("encoder.layer.5.") for k in changed)
    # only the top config.train_layers layers train
    assert not any(k.startswith(("embeddings.", "encoder.layer.0.")) for k in changed)


def test_length_batches_cover_every_row_once_with_similar_lengths():
    import random

    lengths = [3, 9, 4, 8, 5, 7, 6, 10, 2]
    batches = finetune._length_batches(lengths, 3, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 2 for b in batches)


@needs_clinc
def test_cache_key_covers_data_hyperparameters_seed_and_base_model(tmp_path, monkeypatch):
    key = finetune.build_key("clinc150-intent")
    assert key == finetune.build_key("clinc150-intent")
    assert finetune.build_key("clinc150-intent", replace(finetune.CONFIG, seed=1)) != key
    assert finetune.build_key("clinc150-intent", replace(finetune.CONFIG, lr=1e-4)) != key
    assert finetune.build_key("clinc150-intent", replace(finetune.CONFIG, epochs=2)) != key
    monkeypatch.setattr(encoder, "build_key", lambda: "another base model")
    assert finetune.build_key("clinc150-intent") != key
    monkeypatch.undo()
    data = tmp_path / "clinc150"
    data.mkdir()
    shutil.copy(data_root() / "clinc150" / "train.jsonl", data / "train.jsonl")
    monkeypatch.setenv("EDGE_TRIAGE_DATA", str(tmp_path))
    assert finetune.build_key("clinc150-intent") == key  # same bytes, same key
    with open(data / "train.jsonl", "a") as f:
        f.write(json.dumps({"text": "one more query", "label": "oos"}) + "\n")
    assert finetune.build_key("clinc150-intent") != key


@needs_clinc
def test_the_encoder_never_sees_the_fold_that_fits_the_thresholds():
    from models.heads import FOLDS, ROUNDS, stratified_folds

    texts, y, heldout, n_classes = finetune._training_split(create_task("clinc150-intent"))
    assert len(texts) == len(y) == 15_100 and n_classes == 151
    # train_head holds out exactly these rows (same labels, same seeded folds)
    assert np.array_equal(heldout, stratified_folds(y, FOLDS) < ROUNDS)
    assert 0.19 < heldout.mean() < 0.21


def test_clinc_and_the_telemetry_heads_name_their_own_encoders():
    assert finetune.finetuned_packs() == {ENCODER: "clinc150-intent",
                                          TELEMETRY_ENCODER: "telemetry-category"}
    # The three telemetry heads share one encoder, trained once for all three fields.
    assert {create_task(n).encoder for n in ("telemetry-category", "telemetry-severity",
                                             "telemetry-component-kind")} == {TELEMETRY_ENCODER}
    assert create_task("loghub-system").encoder is None
    assert create_task("loghub-anomaly").encoder is None
    assert create_task("telemetry-triage").encoder is None


@needs_loghub
def test_the_telemetry_encoder_never_sees_the_fold_that_calibrates_the_heads():
    from models.fieldheads import HONEST_FOLD, template_fold
    from pyapp.tasks.telemetry_labels import gold_record

    task = create_task("telemetry-severity")
    texts, y, heldout, n_classes = finetune._training_split(task)
    assert len(texts) == len(y) == len(heldout) and 0.1 < heldout.mean() < 0.3
    # One joint class per (category, severity, component kind) seen in training.
    assert n_classes == len(set(y.tolist())) > 20
    records = {r["text"]: r for r in read_jsonl(data_root() / task.training.file)}
    for text, held in zip(texts, heldout):
        record = records.get(text)
        if record is not None and gold_record(record) is not None:
            assert held == (template_fold(task.training.template_of(record)) == HONEST_FOLD)
    # Another recipe than CLINC150's: log lines are longer, the set is smaller.
    assert finetune.config_for("telemetry-severity") == finetune.TEMPLATE_CONFIG
    assert finetune.build_key("telemetry-category") != finetune.build_key("telemetry-category",
                                                                          finetune.CONFIG)


@pytest.fixture(scope="module")
def tuned(build_dir: Path):
    manifest = encoder_manifest(load_manifests(build_dir / "models"), ENCODER)
    if manifest is None:
        pytest.skip("no fine-tuned encoder in build/ (CLINC150 data absent at build time)")
    return manifest


def test_fine_tuned_encoder_ships_in_the_base_encoders_format(build_dir, tuned):
    base = encoder_manifest(load_manifests(build_dir / "models"))
    assert tuned.variants == base.variants and tuned.dtype == base.dtype == "uint8"
    assert tuned.max_tokens == base.max_tokens
    assert {f.path for f in tuned.files} == {f.path for f in base.files}
    assert tuned.checks["min_cosine_vs_fp32"] >= encoder.MIN_COSINE
    assert tuned.provenance["task"] == "clinc150-intent" and tuned.provenance["data_sha256"]
    model = build_dir / "models" / tuned.model_id
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        assert (model / name).read_bytes() == (build_dir / "models" / base.model_id / name).read_bytes()


def test_each_pack_runs_on_the_encoder_it_names(build_dir, tuned):
    from models.cpython.engines import open_engine

    engine = open_engine(build_dir, ["clinc150-intent", "loghub-system"])
    assert engine.backend_for("clinc150-intent").model_key == tuned.key
    assert engine.backend_for("loghub-system").model_key != tuned.key
    result = asyncio.run(engine.run("clinc150-intent", "what is my checking account balance"))
    assert result["output"]["label"] == "balance"


def test_the_page_loads_the_base_encoder_and_names_the_packs_own(build_dir, tuned):
    from server.settings import Settings
    from server.site import Site

    config = Site(Settings(build_dir=build_dir)).page_config()
    assert config["encoder"]["model_id"] != tuned.model_id
    if "clinc150-intent" in config["tasks"]:
        assert config["taskEncoders"]["clinc150-intent"]["model_id"] == tuned.model_id
    assert "loghub-system" not in config["taskEncoders"]


def test_the_page_loads_the_telemetry_heads_encoder_with_the_extraction(telemetry_heads):
    from models.encoder import RUNTIME_MEMORY
    from server.settings import Settings
    from server.site import Site

    config = Site(Settings(build_dir=telemetry_heads)).page_config()
    if "telemetry-extract" not in config["tasks"]:
        pytest.skip("no language model in this build")
    heads = config["fieldHeads"]["telemetry-extract"]
    assert sorted(heads) == ["telemetry-category", "telemetry-component-kind", "telemetry-severity"]
    own = {config["taskEncoders"][h]["model_id"] for h in heads}
    assert len(own) == 1 and own != {config["encoder"]["model_id"]}
    head_encoder = config["taskEncoders"][heads[0]]
    # Beside the base encoder it shares onnxruntime's runtime: the page's budget counts less.
    assert head_encoder["added_memory_bytes"] == head_encoder["estimated_memory_bytes"] - RUNTIME_MEMORY
