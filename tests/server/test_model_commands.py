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


def test_the_import_refuses_by_default_what_the_page_would_refuse(monkeypatch):
    """`models import --for browser` without --memory-budget uses the page's own default budget,
    so it never accepts a model the page then refuses to load."""
    from models.importer import DEFAULT_BROWSER_BUDGET
    from server.model_commands import _budget
    from server.settings import Settings

    monkeypatch.delenv("EDGE_TRIAGE_MEMORY_BUDGET_BYTES", raising=False)
    none = type("Args", (), {"memory_budget": None})()
    assert _budget(none, browser=True) == DEFAULT_BROWSER_BUDGET == Settings().memory_budget_bytes
    monkeypatch.setenv("EDGE_TRIAGE_MEMORY_BUDGET_BYTES", "4000000000")
    assert _budget(none, browser=True) == 4_000_000_000
