"""Picking the next token: greedy over the logits the grammar allows (numpy, CPython only).

The bitmask is xgrammar's layout: int32 words, bit ``i % 32`` of word ``i // 32`` set when token
``i`` is allowed. The logits row stays a numpy array; nothing per-vocabulary crosses into Python.
"""

from __future__ import annotations

from typing import Any


class GreedyKernel:
    def __init__(self, vocab_size: int):
        import numpy as np

        self._np = np
        self.vocab_size = vocab_size

    def pick(self, logits: Any, bitmask: Any | None) -> tuple[int, float, int]:
        """(token, its probability renormalised over the allowed tokens, number allowed)."""
        np = self._np
        logits = logits[: self.vocab_size]
        if bitmask is None:
            token = int(logits.argmax())
            shifted = logits - logits[token]
            return token, float(1.0 / np.exp(shifted).sum()), self.vocab_size
        allowed = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: self.vocab_size]
        allowed = allowed.astype(bool)
        masked = np.where(allowed, logits, -np.inf)
        token = int(masked.argmax())
        n = int(allowed.sum())
        if n == 1:
            return token, 1.0, 1
        return token, float(1.0 / np.exp(masked - masked[token]).sum()), n
