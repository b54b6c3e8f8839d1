"""edge-triage task code: the same Python runs in Pyodide (browser) and CPython.

Nothing here touches a platform; backends are passed in (see ``pyapp.engine.Engine``).
"""

__version__ = "0.1.0"
