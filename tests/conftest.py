"""Shared fixtures: the real built artifacts (make build), loaded once per session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


@pytest.fixture(scope="session")
def build_dir() -> Path:
    if not (BUILD / "runtime" / "runtime.json").exists():
        pytest.fail("build/ is missing: run `make build` (make test does it)")
    return BUILD


@pytest.fixture(scope="session")
def telemetry_heads(build_dir: Path) -> Path:
    """The build, when it has telemetry-extract's encoder heads: they are trained on the Loghub
    data, so a build made without ``EDGE_TRIAGE_DATA`` has none and the tests that need them
    skip, as the other data-dependent tests do."""
    import json

    index = build_dir / "tasks" / "index.json"
    if not index.exists() or "telemetry-category" not in json.loads(index.read_text()):
        pytest.skip("no telemetry heads in build/ (Loghub data absent at build time)")
    return build_dir


@pytest.fixture(scope="session")
def encoder_dir(build_dir: Path) -> Path:
    from models.build import encoder_manifest, load_manifests

    manifest = encoder_manifest(load_manifests(build_dir / "models"))
    return build_dir / "models" / manifest.model_id


@pytest.fixture(scope="session")
def encoder(encoder_dir: Path):
    from models.cpython.encoder import OnnxEncoder

    return OnnxEncoder.from_dir(encoder_dir)


@pytest.fixture(scope="session")
def engine(build_dir: Path):
    from models.cpython.engines import open_engine

    return open_engine(build_dir, ["telemetry-triage"])


def run(coro):
    return asyncio.run(coro)
