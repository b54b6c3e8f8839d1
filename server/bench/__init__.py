"""``edge-triage bench``: our page against its peers, as ratios (README, "Benchmarks").

SECTIONS is the registry: name → function(BenchContext) → dict (its ``pairs`` get printed and
plotted). Add a section by adding an entry; server/bench/runner.py runs them in order.
"""

from __future__ import annotations

from . import classify
from .runner import BenchContext, Pair, run_bench


def _lm(ctx: BenchContext) -> dict:
    # Imported when run, not here: ``python -m server.bench.lm`` imports this package first, and
    # a package that had already imported the module it then runs as __main__ gets runpy's
    # "found in sys.modules … unpredictable behaviour" warning (and two copies of the module).
    from .lm import section

    return section(ctx)


SECTIONS = {
    **classify.SECTIONS,
    "lm": _lm,
}

__all__ = ["SECTIONS", "BenchContext", "Pair", "run_bench"]
