"""The model pipeline: source package → ONNX → quantised → checked → manifest, cached by content.

Each step is a function; ``models.build.build_all`` chains them and ``edge-triage models build``
is its CLI.
"""
