"""The language model's weights as shipped: the GGUF's own block codes, turned into float weights
by the runtime that loads them (numpy here, ``web/lmweights.js`` in the page), never by
onnxruntime.

Why (README "Memory (measured)"): onnxruntime-web keeps whatever its load needed in its Wasm heap,
which never shrinks. Handed the int8 codes behind ``DequantizeLinear`` it folds them into float
weights at load, holding the codes, the fold's intermediates and the protobuf at once (2.2 GB
heap for 540 MB of float weights). Handed float weights as external data (``externalData``: copied
straight into each tensor, no protobuf copy, no fold) it holds ~0.9 GB. So the page downloads the
codes (4-bit Q4_1 nibbles, int8 Q8_0, float32 scales: ~111 MB), builds the external-data bytes in
JavaScript, where they are garbage once the session holds them, and gives those to onnxruntime.

Files, next to the graph ``<stem>.onnx`` (float weights as external data in ``<stem>.onnx_data``,
a file that exists only in memory):

* ``<stem>.codes``: per GGUF tensor (rows permuted as the export orders them) its codes
  (Q8_0: one int8 per weight; Q4_1: ggml's 16 bytes per block of 32, element j in the low nibble
  of byte j, element 16+j in the high one), block scales ``d`` and, for Q4_1, minimums ``m``
  (float32, one per block of 32 along a row), each at a 64-byte aligned offset.
* ``<stem>.fold.json``: the plan: each tensor's type, shape and offsets in the codes, and each float
  weight of the graph with its source tensor, whether it is that tensor transposed, and its offset
  in the external data. The external data is the codes file followed by the float weights, so the
  graph can also read codes directly (the embedding table is gathered as int8 rows).

A weight is ``float32(q) * d`` (Q8_0) or ``float32(q) * d + m`` (Q4_1), one float32 rounding per
operation: what gguf-py and transformers compute, so numpy and JavaScript (a double product or
sum rounded once to float32 is the correctly rounded float32 result) give the same bits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = "gguf-codes-1"
ALIGN = 64
BLOCK = 32


def plan_path(graph: Path) -> Path:
    return graph.with_name(graph.stem + ".fold.json")


def codes_path(graph: Path) -> Path:
    return graph.with_name(graph.stem + ".codes")


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class CodesWriter:
    """Lays GGUF tensors out in a codes file and float weights after it (the build)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.tensors: dict[str, dict] = {}

    def _put(self, array: np.ndarray) -> int:
        pad = _aligned(self.size) - self.size
        if pad:
            self.parts.append(b"\0" * pad)
        offset = self.size + pad
        raw = np.ascontiguousarray(array).tobytes()
        self.parts.append(raw)
        self.size = offset + len(raw)
        return offset

    def add(self, name: str, kind: str, codes: np.ndarray, d: np.ndarray, m: np.ndarray | None,
            rows: int, cols: int) -> dict:
        """``codes``: int8 [rows, cols] (q8_0) or the packed uint8 nibbles [rows, cols/2] (q4_1);
        ``d``, ``m``: float32 [rows, cols/32]."""
        assert cols % BLOCK == 0 and d.shape == (rows, cols // BLOCK)
        entry = {"type": kind, "rows": rows, "cols": cols, "codes": self._put(codes),
                 "d": self._put(d.astype(np.float32)),
                 "m": None if m is None else self._put(m.astype(np.float32))}
        self.tensors[name] = entry
        return entry

    def write(self, graph: Path, weights: list[dict], data_name: str) -> dict:
        """Write the codes and the plan; ``weights`` are {name, source, transpose}. Returns the
        plan (with each weight's ``offset`` in the external data)."""
        offset = _aligned(self.size)
        placed = []
        for w in weights:
            t = self.tensors[w["source"]]
            placed.append({**w, "offset": offset})
            offset = _aligned(offset + t["rows"] * t["cols"] * 4)
        plan = {"format": FORMAT, "codes": codes_path(graph).name, "data": data_name,
                "data_bytes": offset, "tensors": self.tensors, "weights": placed}
        with open(codes_path(graph), "wb") as f:
            for part in self.parts:
                f.write(part)
        plan_path(graph).write_text(json.dumps(plan, indent=1))
        return plan


def dequantize(entry: dict, codes: np.ndarray) -> np.ndarray:
    """One tensor's float32 values [rows, cols] from the codes file's bytes (uint8 array)."""
    rows, cols = entry["rows"], entry["cols"]
    blocks = rows * cols // BLOCK
    if entry["type"] == "q8_0":
        q = codes[entry["codes"]:entry["codes"] + rows * cols].view(np.int8).reshape(blocks, BLOCK)
    elif entry["type"] == "q4_1":
        packed = codes[entry["codes"]:entry["codes"] + rows * cols // 2].reshape(blocks, BLOCK // 2)
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=1)
    else:
        raise ValueError(f"unknown code type {entry['type']!r}")
    d = codes[entry["d"]:entry["d"] + blocks * 4].view(np.float32).reshape(blocks, 1)
    w = q.astype(np.float32) * d
    if entry["m"] is not None:
        w = w + codes[entry["m"]:entry["m"] + blocks * 4].view(np.float32).reshape(blocks, 1)
    return w.reshape(rows, cols)


def external_data(plan: dict, codes: bytes | np.ndarray) -> np.ndarray:
    """The graph's external data (uint8, ``plan["data_bytes"]``): the codes, then every float
    weight at its offset. The same bytes as ``web/lmweights.js`` ``externalData``."""
    codes = np.frombuffer(codes, dtype=np.uint8)
    data = np.zeros(plan["data_bytes"], dtype=np.uint8)
    data[:codes.size] = codes
    for w in plan["weights"]:
        t = plan["tensors"][w["source"]]
        values = dequantize(t, codes)
        if w["transpose"]:
            values = values.T
        n = t["rows"] * t["cols"]
        data[w["offset"]:w["offset"] + 4 * n].view(np.float32)[:] = values.reshape(-1)
    return data


def load_external_data(graph: Path) -> tuple[str, np.ndarray] | None:
    """(file name the graph refers to, its bytes) for a graph with a plan next to it, else None."""
    plan_file = plan_path(graph)
    if not plan_file.exists():
        return None
    plan = json.loads(plan_file.read_text())
    if plan.get("format") != FORMAT:
        raise ValueError(f"{plan_file}: format {plan.get('format')!r}, expected {FORMAT!r}")
    return plan["data"], external_data(plan, (graph.parent / plan["codes"]).read_bytes())
