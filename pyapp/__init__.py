"""edge-triage task code: the same Python runs in Pyodide (browser) and CPython.

This package is exactly what ships to the browser (the pyapp wheel, server/runtime.py): it imports
nothing outside itself but the standard library, pydantic and what Pyodide provides
(tests/test_layout.py). Only ``backends.browser`` and ``backends.browser_lm`` touch a platform;
the CPython backends are in ``models.cpython`` and are passed in (see ``pyapp.engine.Engine``).
"""

__version__ = "0.1.0"
