"""`edge-triage eval --runtime browser`: the real page in headless Chromium scores like CPython."""

import json
import shutil
from pathlib import Path

import pytest

from models.evaluation import cpython_runner, evaluate, file_sha256, select_records, spread
from models.trainingdata import data_root
from server.browserrun import BrowserRunner
from server.runtime import build_runtime

DATA = data_root() / "clinc150" / "dev.jsonl"


@pytest.mark.skipif(not shutil.which("node") or not Path("/usr/bin/chromium").exists(),
                    reason="needs node and /usr/bin/chromium (make test installs Chromium)")
@pytest.mark.skipif(not DATA.exists(), reason="CLINC150 data not present")
def test_browser_and_cpython_evaluations_agree_on_a_slice(build_dir):
    from models.cpython.engines import open_engine

    build_runtime(build_dir / "runtime", log=lambda *_: None)  # the wheel matches this pyapp
    engine = open_engine(build_dir, ["clinc150-intent"])
    task = engine.task("clinc150-intent")
    records = [json.loads(line) for line in DATA.read_text().splitlines() if line]
    selected, _ = select_records(task, records, file_sha256(DATA))
    selected = spread(selected, 24)
    cpython = evaluate(task, selected, cpython_runner(engine, "clinc150-intent"))
    browser = evaluate(task, selected, BrowserRunner(build_dir, "clinc150-intent"))
    assert browser["backend"] == "wasm" and cpython["backend"] == "cpython"
    assert [(r["pred"], r["route"]) for r in browser["rows"]] == \
           [(r["pred"], r["route"]) for r in cpython["rows"]]
    for b, c in zip(browser["rows"], cpython["rows"], strict=True):
        assert abs(b["confidence"] - c["confidence"]) < 1e-4
    for key in ("accuracy", "in_scope_accuracy", "macro_f1", "routing", "count"):
        assert browser[key] == cpython[key], key
