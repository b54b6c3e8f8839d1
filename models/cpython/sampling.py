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

    def group_masks(self, groups: list[list[int]]) -> list[Any]:
        """Bitmasks (the grammar's layout) of token-id groups, for ``pick(prefer=…)``."""
        np = self._np
        masks = []
        for ids in groups:
            bits = np.zeros(((self.vocab_size + 31) // 32) * 32, dtype=bool)
            bits[[i for i in ids if i < self.vocab_size]] = True
            masks.append(np.packbits(bits, bitorder="little").view(np.int32))
        return masks

    def pick(self, logits: Any, bitmask: Any | None, prefer: list[Any] | None = None,
             avoid: list[int] | None = None,
             only: list[int] | None = None) -> tuple[int, float, int]:
        """(token, its probability renormalised over the allowed tokens, number allowed).

        With ``prefer`` (group bitmasks, in order; see ``generation.closing``) the token is the
        best allowed one of the first group that has any allowed token, else (with ``avoid``)
        the best allowed token not in ``avoid``; with ``only`` (token ids, ``generation.spans``)
        all of that among those ids, unless the grammar allows none of them. The probability
        and count are still over everything the grammar allowed.
        """
        np = self._np
        logits = logits[: self.vocab_size]
        if bitmask is None:
            token = int(logits.argmax())
            shifted = logits - logits[token]
            return token, float(1.0 / np.exp(shifted).sum()), self.vocab_size
        allowed = self._bits(bitmask)
        masked = np.where(allowed, logits, -np.inf)
        candidates = masked
        if only is not None:
            keep = np.zeros(self.vocab_size, dtype=bool)
            keep[[i for i in only if i < self.vocab_size]] = True
            if (keep & allowed).any():
                candidates = np.where(keep, masked, -np.inf)
        token = -1
        for group in prefer or ():
            both = self._bits(bitmask & group) & np.isfinite(candidates)
            if both.any():
                token = int(np.where(both, logits, -np.inf).argmax())
                break
        if token < 0 and avoid:
            fresh = candidates.copy()
            fresh[[i for i in avoid if i < self.vocab_size]] = -np.inf
            if np.isfinite(fresh.max()):
                token = int(fresh.argmax())
        if token < 0:
            token = int(candidates.argmax())
        n = int(allowed.sum())
        if n == 1:
            return token, 1.0, 1
        return token, float(1.0 / np.exp(masked - masked[token]).sum()), n

    def forced(self, bitmask: Any) -> int | None:
        """The one token ``bitmask`` allows, or None when it allows several (or none).

        >>> import numpy as np
        >>> k = GreedyKernel(64)
        >>> k.forced(np.array([0, 1 << 5], dtype=np.int32)), k.forced(np.array([3, 0], dtype=np.int32))
        (37, None)
        """
        np = self._np
        words = np.flatnonzero(bitmask)
        if len(words) != 1:
            return None
        word = int(bitmask[words[0]]) & 0xFFFFFFFF
        if word & (word - 1):
            return None
        token = int(words[0]) * 32 + word.bit_length() - 1
        return token if token < self.vocab_size else None

    def _bits(self, bitmask: Any) -> Any:
        np = self._np
        return np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: self.vocab_size].astype(bool)
