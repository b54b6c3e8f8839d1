"""``edge-triage bench``: our page against its peers, as ratios (README, "Benchmarks").

SECTIONS is the registry: name → function(BenchContext) → dict (its ``pairs`` get printed and
plotted). Add a section by adding an entry; server/bench/runner.py runs them in order.
"""

from __future__ import annotations

from . import classify, lm
from .runner import BenchContext, Pair, run_bench

SECTIONS = {
    **classify.SECTIONS,
    "lm": lm.section,
}

__all__ = ["SECTIONS", "BenchContext", "Pair", "run_bench"]
