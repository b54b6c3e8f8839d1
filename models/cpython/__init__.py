"""The task code under CPython: onnxruntime + tokenizers backends (``encoder``, ``lm``), the
numpy pick kernel, XGrammar, and the engine factories. Never shipped to the browser; the browser's
backends are ``pyapp.backends.browser`` and ``pyapp.backends.browser_lm``."""
