"""A real (small) build of a trained head: 3 examples per CLINC150 label through the encoder."""

import numpy as np
import pytest

from models.heads import fit_temperature, stratified_folds, train_head
from models.trainingdata import build_head_artifact, data_root
from pyapp.tasks import create_task
from tests.conftest import run


def test_train_head_separates_blobs_and_folds_scaling_back():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + 0.3 * rng.normal(size=(120, 8))
    trained = train_head(x * 0.05 + 1.0, y, 3, l2_grid=(1e-2, 1e-3))
    assert (trained.head.probabilities(x * 0.05 + 1.0).argmax(axis=1) == y).mean() > 0.95
    assert trained.cv["heldout_examples"] == 24 and trained.head.temperature > 0


def test_folds_are_stratified():
    y = np.repeat(np.arange(4), 10)
    fold = stratified_folds(y, 5)
    for c in range(4):
        assert sorted(np.bincount(fold[y == c], minlength=5)) == [2] * 5


def test_fit_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 5)) * 3
    probs = np.exp(logits / 2) / np.exp(logits / 2).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.1)


@pytest.mark.slow
def test_small_real_clinc_build_loads_and_predicts(encoder):
    if not (data_root() / "clinc150" / "train.jsonl").exists():
        pytest.skip("CLINC150 data not found")
    task = create_task("clinc150-intent")
    artifact = build_head_artifact(task, encoder, log=lambda s: None, limit=3)
    assert artifact["training"]["examples"] == 151 * 3
    assert len(artifact["weights"]) == 151 and len(artifact["weights"][0]) == 384
    run(task.load(encoder, artifact))
    prediction = run(task.predict("what is my bank balance", encoder))
    assert prediction.output.label in task.labels


def test_each_encoder_file_runs_heads_fitted_on_its_own_embeddings(build_dir):
    """q8 and uint8 embeddings put head confidences up to ~0.2 apart, so the build fits the heads
    once per file and CPython loads the ones for the file it runs."""
    from models.build import encoder_manifest, load_manifests
    from models.cpython.engines import open_engine

    manifest = encoder_manifest(load_manifests(build_dir / "models"))
    assert manifest.dtype == "uint8" and "q8" in manifest.variants
    text = "Filesystem /data is 99% full"
    results = {}
    for dtype in ("uint8", "q8"):
        engine = open_engine(build_dir, ["telemetry-triage"], dtype)
        task = engine.task("telemetry-triage")
        assert engine.backend.model_key == manifest.variant_key(dtype)
        assert task.artifact(engine.backend.model_key)["key"] == task.content_key(
            manifest.variant_key(dtype))
        results[dtype] = run(engine.run("telemetry-triage", text))
    assert manifest.variant_key("q8") != manifest.variant_key("uint8")
    assert results["q8"]["output"]["label"] == results["uint8"]["output"]["label"] == "storage"
    assert results["q8"]["confidence"] != results["uint8"]["confidence"]
