"""web/memory.js, the page's measured memory (``edgeTriage.memoryUse``), against a stand-in for
Chromium's ``measureUserAgentSpecificMemory`` that answers a call made while a measurement is
pending with that measurement's (older) reading. Runs node once."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("memory_harness.mjs")


def test_a_reading_is_never_older_than_the_call():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test web/memory.js")
    done = subprocess.run([node, str(HARNESS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # The stand-in reproduces the bug: asked directly after the model loaded, it reads boot's heap.
    assert got["direct"] == 190
    assert got["boot"] == 190
    # Through the meter, calls made after the model loaded read it; two at once share one measurement.
    assert got["after"] == got["alongside"] == 930
    assert got["again"] == 930
    assert got["measurements"] == 3  # boot, the two callers together, again
