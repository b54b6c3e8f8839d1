"""Out-of-scope detection for a trained head with an escalate label (CLINC150's ``oos``), fitted
at build time with numpy.

One softmax maximum has to answer two questions: "is this any intent at all" and "which intent".
Here they are separated. A *scope score* (higher = more like the training intents) is compared
with a scope threshold first; the intent confidence (softmax maximum) with an intent threshold
second. Both thresholds are chosen together on the held-out fold of the training data (the one
``train_head`` scores), never on dev: the pair that answers the most held-out in-scope queries
locally while the one-sided 95 % Wilson lower bound of the local answers' precision stays ≥ the
target and ≥ the target share of held-out out-of-scope queries is escalated. The Wilson bound,
not the raw precision, because the held-out fold is a finite sample and the threshold sits where
precision is steepest.

Scores measured (``METHODS``; ``make eval`` prints all of them side by side on dev):

- ``p_not_oos``: log-odds of "not the out-of-scope class" from the head's trained ``oos`` class;
- ``energy``: ``T·logsumexp(logits/T)`` over the in-scope classes (temperature-scaled logits);
- ``maha``: minus the Mahalanobis distance to the nearest in-scope class mean, with one shared
  covariance fitted on the training data (shrunk: the embeddings are L2-normalised, so the raw
  covariance is singular along the norm direction);
- ``knn``: cosine similarity to the 10th-nearest in-scope training example (measured only: it
  would ship the whole training set to the browser);
- combinations: the sum of the scores, each standardised by its held-out in-scope mean and spread.

What ships (``SHIPPED``) is evaluated in pure Python by ``pyapp.tasks.scope``.
"""

from __future__ import annotations

import math

import numpy as np

from .heads import log_softmax, softmax

#: Covariance shrinkage towards its mean eigenvalue (fraction).
SHRINK = 0.01
KNN_K = 10
#: One-sided 95 % normal quantile for the Wilson lower bound on held-out precision.
WILSON_Z = 1.645
#: Intent-confidence thresholds tried (softmax maxima crowd just below 1).
INTENT_GRID = tuple(np.round(np.arange(0.30, 0.99, 0.01), 2)) + (0.99, 0.995, 0.998, 0.999)
#: Scope thresholds tried: these quantiles of the held-out in-scope scope scores.
SCOPE_QUANTILES = np.linspace(0.0, 0.3, 61)

#: name → (scope features summed after standardising, intent confidence).
METHODS: dict[str, tuple[tuple[str, ...], str]] = {
    "softmax maximum (one threshold)": ((), "msp"),
    "top-1 margin (one threshold)": ((), "margin"),
    "energy + softmax max": (("energy",), "msp"),
    "oos class + softmax max": (("p_not_oos",), "msp"),
    "Mahalanobis + softmax max": (("maha",), "msp"),
    "kNN + softmax max": (("knn",), "msp"),
    "oos class + Mahalanobis + softmax max": (("p_not_oos", "maha"), "msp"),
    "oos class + Mahalanobis + energy + margin": (("p_not_oos", "maha", "energy"), "margin"),
    "oos class + Mahalanobis + energy + softmax max": (("p_not_oos", "maha", "energy"), "msp"),
}
#: The method the artifact ships (the best on held-out train when it was chosen; see README).
SHIPPED = "oos class + Mahalanobis + energy + softmax max"


def fit_mahalanobis(x: np.ndarray, y: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Whitening ``P`` (d × d, ``Σ⁻¹ = P·Pᵀ``) and the whitened class means (k × d) for a shared
    covariance of the rows of ``classes`` around their class means."""
    x = np.asarray(x, dtype=np.float64)
    means = np.array([x[y == c].mean(axis=0) for c in classes])
    rows = np.isin(y, classes)
    lookup = {c: i for i, c in enumerate(classes)}
    resid = x[rows] - means[[lookup[c] for c in y[rows]]]
    cov = resid.T @ resid / max(1, len(resid))
    cov += SHRINK * np.trace(cov) / len(cov) * np.eye(len(cov))
    w, v = np.linalg.eigh(cov)
    p = v / np.sqrt(w)
    return p, means @ p


def mahalanobis_score(x: np.ndarray, p: np.ndarray, whitened_means: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ p
    d = (z * z).sum(axis=1)[:, None] - 2 * z @ whitened_means.T + (whitened_means ** 2).sum(axis=1)
    return -d.min(axis=1)


def knn_score(x: np.ndarray, reference: np.ndarray, k: int = KNN_K) -> np.ndarray:
    def unit(a):
        return a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)

    sims = unit(np.asarray(x, np.float64)) @ unit(np.asarray(reference, np.float64)).T
    k = min(k, sims.shape[1])
    return np.partition(sims, -k, axis=1)[:, -k]


def logit_features(logits: np.ndarray, temperature: float, oos: int) -> dict[str, np.ndarray]:
    """Scores computed from the head's logits alone (what the browser gets for free)."""
    z = logits / temperature
    p = softmax(z)
    top2 = np.sort(p, axis=1)[:, -2:]
    inside = np.delete(z, oos, axis=1)
    lse_in = inside.max(axis=1) + np.log(np.exp(inside - inside.max(axis=1, keepdims=True)).sum(axis=1))
    return {
        "msp": top2[:, 1],
        "margin": top2[:, 1] - top2[:, 0],
        "p_not_oos": lse_in - z[:, oos],
        "energy": temperature * lse_in,
    }


def features(x, logits, temperature, oos, maha, knn_reference=None) -> dict[str, np.ndarray]:
    out = logit_features(logits, temperature, oos)
    out["maha"] = mahalanobis_score(x, *maha)
    if knn_reference is not None:
        out["knn"] = knn_score(x, knn_reference)
    return out


def standardisation(feats: dict[str, np.ndarray], in_scope: np.ndarray) -> dict[str, tuple[float, float]]:
    return {k: (float(v[in_scope].mean()), float(max(v[in_scope].std(), 1e-12)))
            for k, v in feats.items()}


def scope_score(feats: dict[str, np.ndarray], names, stats) -> np.ndarray:
    n = len(next(iter(feats.values())))
    return sum(((feats[k] - stats[k][0]) / stats[k][1] for k in names), np.zeros(n))


def wilson_lower(successes: np.ndarray, n: np.ndarray, z: float = WILSON_Z) -> np.ndarray:
    n = np.maximum(n, 1)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def fit_thresholds(scope: np.ndarray, confidence: np.ndarray, pred: np.ndarray, y: np.ndarray,
                   oos: int, min_precision: float = 0.985, min_oos_escalated: float = 0.95,
                   use_scope: bool = True) -> tuple[float, float] | None:
    """(scope threshold, intent threshold) answering the most in-scope rows locally under the
    constraints (module docstring); None when no pair meets them."""
    out = y == oos
    candidate = pred != oos
    correct = (pred == y) & ~out
    scopes = (np.unique(np.quantile(scope[~out], SCOPE_QUANTILES)) if use_scope and (~out).any()
              else np.array([-np.inf]))
    best, best_answered = None, -1
    for a in scopes:
        in_scope_ok = candidate & (scope >= a)
        for b in INTENT_GRID:
            local = in_scope_ok & (confidence >= b)
            n = local.sum()
            if n == 0:
                break
            if wilson_lower(correct[local].sum(), n) < min_precision:
                continue
            if out.any() and (~local[out]).mean() < min_oos_escalated:
                continue
            answered = local[~out].sum()
            if answered > best_answered:
                best, best_answered = (float(a), float(b)), answered
            break  # higher intent thresholds only answer fewer
    return best


def routed(scope, confidence, pred, y, oos, thresholds) -> dict[str, float]:
    """answered / local accuracy / out-of-scope escalated at ``thresholds`` (None: all escalated)."""
    out = y == oos
    if thresholds is None:
        local = np.zeros(len(y), bool)
    else:
        a = -np.inf if thresholds[0] is None else thresholds[0]
        local = (pred != oos) & (scope >= a) & (confidence >= thresholds[1])
    return {
        "answered": float(local[~out].mean()) if (~out).any() else math.nan,
        "local_accuracy": float((pred[local] == y[local]).mean()) if local.any() else math.nan,
        "oos_escalated": float((~local[out]).mean()) if out.any() else math.nan,
    }


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for telling ``positive`` rows from the rest (ties
    count half); NaN without both kinds."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks of ties
        tie = allv == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fit_scope(x: np.ndarray, y: np.ndarray, oos: int, n_classes: int, heldout: np.ndarray,
              heldout_logits: np.ndarray, temperature: float, log=None) -> dict:
    """Fit every method on the held-out fold (scores from models that never saw it) and the
    shipped detector on all training data. Returns ``{"detector": …, "methods": …}``."""
    x = np.asarray(x, dtype=np.float64)
    classes = [c for c in range(n_classes) if c != oos]
    train = ~heldout
    xh, yh = x[heldout], y[heldout]
    fold_maha = fit_mahalanobis(x[train], y[train], classes)
    ref = x[train & (y != oos)]
    feats = features(xh, heldout_logits, temperature, oos, fold_maha, ref)
    stats = standardisation(feats, yh != oos)
    pred = heldout_logits.argmax(axis=1)
    methods = {}
    for name, (names, intent) in METHODS.items():
        score = scope_score(feats, names, stats)
        thresholds = fit_thresholds(score, feats[intent], pred, yh, oos, use_scope=bool(names))
        methods[name] = {"scope": list(names), "intent": intent,
                         "thresholds": thresholds,
                         "heldout": routed(score, feats[intent], pred, yh, oos, thresholds),
                         "heldout_auroc": auroc(score if names else feats[intent], yh != oos)}
        if log:
            h = methods[name]["heldout"]
            log(f"  scope method {name}: thresholds {thresholds}, held-out answered "
                f"{h['answered']:.4f}, local correct {h['local_accuracy']:.4f}, "
                f"oos escalated {h['oos_escalated']:.4f}")
    names, _ = METHODS[SHIPPED]
    thresholds = methods[SHIPPED]["thresholds"]
    p, whitened_means = fit_mahalanobis(x, y, classes)
    detector = {
        "features": list(names),
        "center": [stats[k][0] for k in names],
        "scale": [stats[k][1] for k in names],
        "oos_index": oos,
        "classes": classes,
        # Rows of the projection: z_j = Σ_i P[i, j]·x_i, so ship Pᵀ.
        "projection": p.T.tolist(),
        "means": whitened_means.tolist(),
        "threshold": None if thresholds is None else thresholds[0],
        "intent_threshold": None if thresholds is None else thresholds[1],
        "stats": {k: list(v) for k, v in stats.items()},
    }
    return {"detector": detector, "methods": methods}


def compare_methods(artifact: dict, x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray,
                    y: np.ndarray) -> list[dict]:
    """Each method on evaluation rows ``x``/``y``, at the thresholds fitted at build time
    (recorded in the artifact), with its scope score's AUROC (in-scope vs out-of-scope)."""
    detector = artifact.get("scope")
    methods = artifact.get("training", {}).get("scope_methods")
    if not detector or not methods:
        return []
    oos, classes = detector["oos_index"], detector["classes"]
    logits = x @ np.array(artifact["weights"]).T + np.array(artifact["bias"])
    maha = fit_mahalanobis(x_train, y_train, classes)
    feats = features(x, logits, artifact["temperature"], oos, maha, x_train[y_train != oos])
    stats = {k: tuple(v) for k, v in detector["stats"].items()}
    pred = logits.argmax(axis=1)
    rows = []
    for name, m in methods.items():
        score = scope_score(feats, m["scope"], stats)
        thresholds = m["thresholds"]
        rows.append({"method": name, "shipped": name == SHIPPED, "thresholds": thresholds,
                     "auroc": auroc(score if m["scope"] else feats[m["intent"]], y != oos),
                     **routed(score, feats[m["intent"]], pred, y, oos, thresholds)})
    return rows
