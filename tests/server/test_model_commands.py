"""`edge-triage models list`: what is built, where it runs and what it needs."""

from __future__ import annotations

import json

from server.cli import main


def test_models_list_shows_every_built_model_with_its_memory_and_budget(build_dir, capsys):
    assert main(["--build-dir", str(build_dir), "models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    browser = {r["task"]: r for r in rows if r["where"] == "browser"}
    assert set(browser) == {"embedding", "text-generation"}
    lm = browser["text-generation"]
    assert lm["runtime"] == "onnxruntime" and lm["variants"] == ["q4", "q8"]
    assert lm["memory_bytes"] > lm["size_bytes"] / 4 > 0
    assert lm["fits"] == (lm["memory_bytes"] <= lm["budget_bytes"])


def test_models_list_applies_the_budget_it_is_given(build_dir, capsys):
    assert main(["--build-dir", str(build_dir), "models", "list", "--memory-budget", "1"]) == 0
    out = capsys.readouterr().out
    assert "browser" in out
    for line in out.splitlines():
        if line.startswith("server"):
            assert line.endswith("OVER BUDGET")
