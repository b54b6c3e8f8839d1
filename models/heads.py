"""Classification heads trained at build time on the encoder's embeddings (numpy + scipy).

A head is multinomial logistic regression ``softmax((W·x + b) / T)``: the L2 strength is chosen
on a held-out stratified fold of the training data (or full k-fold cross-validation), the
temperature ``T`` is fitted on the held-out logits (texts scored by a head that never saw them),
and the final head is refitted on all training data. Plain label prototypes
(normalised class means, cosine similarity, fitted temperature) are measured alongside as the
baseline. Inference needs none of this: ``pyapp.tasks.linear`` evaluates the head in pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from pyapp.vectors import golden_section_min

#: L2 strengths tried by cross-validation (penalty ``l2/2·‖W‖²`` on the mean cross-entropy).
L2_GRID = (1e-2, 3e-3, 1e-3)
#: Cap on L-BFGS iterations per fit: enough to converge on standardised features.
MAX_ITER = 200
#: Cross-validation fits only rank L2 strengths; they stop earlier.
CV_MAX_ITER = 100
FOLDS = 5
#: Folds actually held out (1: a single stratified 80/20 split; see train_head).
ROUNDS = 1
SEED = 20240611


@dataclass
class LinearHead:
    weights: np.ndarray  # classes × dim
    bias: np.ndarray  # classes
    temperature: float = 1.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights.T + self.bias

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x) / self.temperature)


@dataclass
class TrainedHead:
    """The final head plus what cross-validation measured on the training data."""

    head: LinearHead
    l2: float
    cv: dict = field(default_factory=dict)
    oof_probabilities: np.ndarray | None = None
    prototype_oof_probabilities: np.ndarray | None = None
    #: Which training rows the held-out probabilities above belong to.
    scored: np.ndarray | None = None
    #: Raw held-out logits (before the temperature) of those rows; scope scores need them.
    oof_logits: np.ndarray | None = None


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_logreg(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2: float,
    init: LinearHead | None = None,
    max_iter: int = MAX_ITER,
) -> LinearHead:
    """Minimise mean cross-entropy + ``l2/2·‖W‖²`` (bias unpenalised) with L-BFGS."""
    n, d = x.shape
    # float32 matrix products halve the time; the optimiser's state stays float64.
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    onehot = np.zeros((n, n_classes), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: n_classes * d].reshape(n_classes, d)
        b = theta[n_classes * d :]
        z = x32 @ w.T.astype(np.float32) + b.astype(np.float32)
        lp = log_softmax(z)
        value = -float((lp * onehot).sum(dtype=np.float64)) / n + 0.5 * l2 * float((w * w).sum())
        g = (np.exp(lp) - onehot) / n
        grad_w = (g.T @ x32).astype(np.float64) + l2 * w
        return value, np.concatenate([grad_w.ravel(), g.sum(axis=0, dtype=np.float64)])

    if init is None:
        theta0 = np.zeros(n_classes * d + n_classes)
    else:
        theta0 = np.concatenate([init.weights.ravel(), init.bias])
    result = minimize(loss, theta0, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": 1e-5})
    theta = result.x
    return LinearHead(theta[: n_classes * d].reshape(n_classes, d).copy(), theta[n_classes * d :].copy())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` minimising the negative log-likelihood of ``softmax(logits / T)``."""

    def nll(log_t: float) -> float:
        lp = log_softmax(logits / math.exp(log_t))
        return float(-lp[np.arange(len(y)), y].mean())

    return math.exp(golden_section_min(nll, math.log(1e-3), math.log(1e3), iterations=80))


def stratified_folds(y: np.ndarray, folds: int, seed: int = SEED) -> np.ndarray:
    """Fold number per example: each class dealt round-robin over folds in a seeded order."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    return fold


def prototype_logits(train_x: np.ndarray, train_y: np.ndarray, n_classes: int, x: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``x`` to each class's normalised mean embedding."""
    protos = np.zeros((n_classes, train_x.shape[1]))
    np.add.at(protos, train_y, train_x)
    protos /= np.clip(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12, None)
    return x @ protos.T


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2_grid: tuple[float, ...] = L2_GRID,
    folds: int = FOLDS,
    rounds: int = ROUNDS,
    log=None,
) -> TrainedHead:
    """Choose L2 on held-out folds, fit T on their logits, refit on everything.

    The data is dealt into ``folds`` stratified folds and the first ``rounds`` of them are held
    out in turn (``rounds == folds`` is full k-fold cross-validation; the default, one round of
    five, is a stratified 80/20 validation split, which keeps a CLINC150 build to minutes).
    """
    # Standardised features condition the problem (embedding components are ~0.05 wide) so
    # L-BFGS converges in a few hundred steps; the scaling is folded back into W and b below.
    raw = np.asarray(x, dtype=np.float64)
    mu, sigma = raw.mean(axis=0), np.clip(raw.std(axis=0), 1e-6, None)
    x = (raw - mu) / sigma
    y = np.asarray(y, dtype=np.int64)
    fold = stratified_folds(y, folds)
    scored = fold < rounds
    grid = sorted(l2_grid, reverse=True)  # strong → weak, each fit warm-starts the next
    oof = {l2: np.zeros((len(y), n_classes)) for l2 in grid}
    proto_oof = np.zeros((len(y), n_classes))
    for k in range(rounds):
        train, held = fold != k, fold == k
        head = None
        for l2 in grid:
            head = fit_logreg(x[train], y[train], n_classes, l2, init=head, max_iter=CV_MAX_ITER)
            oof[l2][held] = head.logits(x[held])
            if log:
                log(f"  round {k + 1}/{rounds}, L2 {l2:g}: held-out accuracy "
                    f"{(oof[l2][held].argmax(axis=1) == y[held]).mean():.4f}")
        proto_oof[held] = prototype_logits(raw[train], y[train], n_classes, raw[held])
    ys = y[scored]
    oof = {l2: v[scored] for l2, v in oof.items()}
    proto_oof = proto_oof[scored]
    accuracy = {l2: float((oof[l2].argmax(axis=1) == ys).mean()) for l2 in grid}
    nll = {l2: float(-log_softmax(oof[l2])[np.arange(len(ys)), ys].mean()) for l2 in grid}
    # Highest accuracy; among ties (within one example) the stronger penalty, which is smoother.
    best_acc = max(accuracy.values())
    l2 = next(l2 for l2 in grid if accuracy[l2] >= best_acc - 1.0 / len(ys))
    temperature = fit_temperature(oof[l2], ys)
    proto_t = fit_temperature(proto_oof, ys)
    fitted = fit_logreg(x, y, n_classes, l2)
    weights = fitted.weights / sigma
    head = LinearHead(weights, fitted.bias - weights @ mu, temperature)
    cv = {
        "folds": folds,
        "rounds": rounds,
        "heldout_examples": int(scored.sum()),
        "l2_grid": list(grid),
        "accuracy_by_l2": {repr(k): round(v, 5) for k, v in accuracy.items()},
        "nll_by_l2": {repr(k): round(v, 5) for k, v in nll.items()},
        "l2": l2,
        "temperature": temperature,
        "accuracy": accuracy[l2],
        "prototype_accuracy": float((proto_oof.argmax(axis=1) == ys).mean()),
        "prototype_temperature": proto_t,
    }
    return TrainedHead(head, l2, cv, softmax(oof[l2] / temperature), softmax(proto_oof / proto_t),
                       scored, oof[l2])


def choose_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    out_of_scope: np.ndarray | None = None,
    min_precision: float = 0.985,
    min_oos_escalated: float = 0.95,
) -> float | None:
    """The lowest threshold (most answered locally) whose local answers are ≥ ``min_precision``
    correct and which escalates ≥ ``min_oos_escalated`` of out-of-scope inputs; None if none does.

    ``correct`` is False for out-of-scope rows (answering them is always wrong).
    """
    oos = np.zeros(len(confidence), bool) if out_of_scope is None else out_of_scope
    for t in np.round(np.arange(0.30, 1.0, 0.01), 2):
        local = confidence >= t
        if not local.any():
            return None
        precision = correct[local].mean()
        escalated = (~local[oos]).mean() if oos.any() else 1.0
        if precision >= min_precision and escalated >= min_oos_escalated:
            return float(t)
    return None
