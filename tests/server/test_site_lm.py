"""Which language model a deployment serves (EDGE_TRIAGE_BROWSER_LM), with an imported one built."""

from __future__ import annotations

import pytest

from server.settings import Settings
from server.site import Site
from tests.models.test_lmsource import imported  # noqa: F401  (fixture)


def test_the_page_gets_the_chosen_model_and_precaches_only_what_it_runs(imported, build_dir):  # noqa: F811
    chosen = Site(Settings(build_dir=build_dir, browser_lm=imported.model_id))
    default = Site(Settings(build_dir=build_dir))
    assert chosen.page_config()["lm"]["model_id"] == imported.model_id
    assert default.page_config()["lm"]["model_id"] != imported.model_id
    for site, other in ((chosen, default), (default, chosen)):
        urls = {e["url"] for e in site.precache()}
        mine = site.page_config()["lm"]["model_id"]
        theirs = other.page_config()["lm"]["model_id"]
        assert f"/models/{mine}/manifest.json" in urls
        assert f"/models/{theirs}/manifest.json" not in urls
    assert chosen.version != default.version  # a switch of model is a new site version
    # The imported model's page estimate is its measured heap plus the KV cache, and fits the
    # default 1.2 GB budget with q8 first (its download size would have said otherwise).
    q8 = chosen.page_config()["lm"]["variants"][0]
    measured = imported.checks["measured_memory_bytes_q8"]
    assert q8["dtype"] == "q8" and measured < q8["estimated_memory_bytes"] < measured + 100 * 2**20
    assert q8["estimated_memory_bytes"] < Settings().memory_budget_bytes


def test_an_unknown_model_is_a_clear_error(build_dir):
    with pytest.raises(LookupError, match="EDGE_TRIAGE_BROWSER_LM='nope': no such language model"):
        Site(Settings(build_dir=build_dir, browser_lm="nope"))
