"""Evaluation metrics as pure functions over plain lists.

They live in ``pyapp`` rather than ``models`` because they need nothing but the standard library:
the same code scores results from the CPython engine and from the browser (in Pyodide, or on
results a browser run sends back), so the two runtimes are judged by identical arithmetic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """
    >>> accuracy(["a", "b", "b"], ["a", "b", "a"])
    0.6666666666666666
    """
    _same_length(gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else math.nan


def f1_by_label(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """F1 of each label that occurs in ``gold`` or ``pred`` (0 where it has no true positive)."""
    _same_length(gold, pred)
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    labels = sorted(set(gold) | set(pred))
    return {lb: 2 * tp[lb] / (2 * tp[lb] + fp[lb] + fn[lb]) for lb in labels}


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over every label seen in gold or predictions.

    >>> macro_f1(["a", "a", "b"], ["a", "b", "b"])
    0.6666666666666666
    """
    scores = f1_by_label(gold, pred)
    return math.fsum(scores.values()) / len(scores) if scores else math.nan


def confusions(gold: Sequence[str], pred: Sequence[str], top: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent (gold, predicted) mistakes, most frequent first, ties by name."""
    counts = Counter((g, p) for g, p in zip(gold, pred, strict=True) if g != p)
    return sorted(((g, p, n) for (g, p), n in counts.items()), key=lambda t: (-t[2], t[0], t[1]))[:top]


def reliability_bins(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[dict]:
    """Equal-width confidence bins: count, mean confidence and accuracy of each non-empty bin.

    A confidence of exactly 1.0 falls in the last bin.
    """
    _same_length(confidence, correct)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidence):
        members[min(int(c * bins), bins - 1)].append(i)
    out = []
    for b, idx in enumerate(members):
        if idx:
            out.append({
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": len(idx),
                "confidence": math.fsum(confidence[i] for i in idx) / len(idx),
                "accuracy": sum(bool(correct[i]) for i in idx) / len(idx),
            })
    return out


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    """ECE: the count-weighted mean |accuracy − confidence| over equal-width bins.

    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True])
    0.4
    """
    n = len(confidence)
    if n == 0:
        return math.nan
    return math.fsum(
        b["count"] / n * abs(b["accuracy"] - b["confidence"])
        for b in reliability_bins(confidence, correct, bins)
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between order statistics (numpy's default).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def routing_metrics(
    gold: Sequence[str],
    pred: Sequence[str],
    local: Sequence[bool],
    out_of_scope: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """What the confidence router did.

    ``answered``: fraction of in-scope inputs answered locally; ``local_accuracy``: fraction of
    local answers (in-scope or not) that are correct; ``oos_escalated``: fraction of out-of-scope
    inputs escalated (NaN when there are none); ``escalated``: fraction of all inputs escalated.

    >>> routing_metrics(["a", "b", "oos"], ["a", "a", "a"], [True, True, False], frozenset({"oos"}))
    {'answered': 1.0, 'local_accuracy': 0.5, 'oos_escalated': 1.0, 'escalated': 0.3333333333333333}
    """
    _same_length(gold, pred)
    _same_length(gold, local)
    in_scope = [i for i, g in enumerate(gold) if g not in out_of_scope]
    oos = [i for i, g in enumerate(gold) if g in out_of_scope]
    answered = [i for i, ok in enumerate(local) if ok]
    return {
        "answered": sum(bool(local[i]) for i in in_scope) / len(in_scope) if in_scope else math.nan,
        "local_accuracy": (sum(gold[i] == pred[i] for i in answered) / len(answered)
                           if answered else math.nan),
        "oos_escalated": sum(not local[i] for i in oos) / len(oos) if oos else math.nan,
        "escalated": sum(not ok for ok in local) / len(local) if local else math.nan,
    }


def schema_valid_rate(valid: Sequence[bool]) -> float:
    """Fraction of extraction outputs that are a schema-valid record (NaN for none).

    >>> schema_valid_rate([True, True, False, True])
    0.75
    """
    return sum(bool(v) for v in valid) / len(valid) if valid else math.nan


def field_exact_match(gold: Sequence[dict], pred: Sequence[dict | None], field: str) -> float:
    """Fraction of records whose predicted ``field`` equals the gold one exactly (``None`` is a
    value: gold null matches predicted null). A missing record (``None``: the output was not
    valid) counts as wrong.

    >>> field_exact_match([{"a": 1}, {"a": None}, {"a": 2}], [{"a": 1}, {"a": None}, None], "a")
    0.6666666666666666
    """
    _same_length(gold, pred)
    if not gold:
        return math.nan
    return sum(p is not None and field in p and p[field] == g.get(field)
               for g, p in zip(gold, pred, strict=True)) / len(gold)


def fields_exact_match(gold: Sequence[dict], pred: Sequence[dict | None],
                       fields: Sequence[str]) -> dict[str, float]:
    """``field_exact_match`` for each of ``fields``, plus ``"all"``: every field right at once.

    >>> fields_exact_match([{"a": 1, "b": 2}, {"a": 1, "b": 3}], [{"a": 1, "b": 2}, {"a": 1, "b": 0}], ["a", "b"])
    {'a': 1.0, 'b': 0.5, 'all': 0.5}
    """
    _same_length(gold, pred)
    out = {f: field_exact_match(gold, pred, f) for f in fields}
    out["all"] = (sum(p is not None and all(f in p and p[f] == g.get(f) for f in fields)
                      for g, p in zip(gold, pred, strict=True)) / len(gold)) if gold else math.nan
    return out


def repeats_phrase(text: str, words: int = 3) -> bool:
    """Whether a run of ``words`` words (case and punctuation folded) occurs twice in ``text``.

    >>> repeats_phrase("Crashed, implausible, stuck, failed, Crashed, implausible, stuck")
    True
    >>> repeats_phrase("PSU 2 failed; node runs on the redundant supply")
    False
    """
    toks = ["".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()]
    toks = [t for t in toks if t]
    seen = set()
    for i in range(len(toks) - words + 1):
        gram = tuple(toks[i:i + words])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} vs {len(b)}")
