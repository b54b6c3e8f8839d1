"""Heads for the closed-set fields of telemetry records, trained on hand-labelled Loghub templates.

The labels are per template (``pyapp.tasks.telemetry_labels``), and lines of one template are
near-copies of each other, so everything here is grouped by template:

- at most ``PER_TEMPLATE`` lines of a template train a head (611 ``generating core.N`` lines
  would otherwise outweigh a hundred rarer templates);
- the cross-validation folds are whole templates (a held-out fold never shares a template with
  what it was scored by), so the L2 choice, the fitted temperature and every threshold are
  measured on unseen templates, as dev is;
- the held-out probabilities of all fields on the same rows calibrate the extraction record's
  confidence (``record_calibration``), from training data only.

The labelled field reports (``telemetry_labels.report_records``: short messages in a person's
words) train beside the templates, each its own group. Measured with the base encoder on
all 4,909 held-out dev lines, templates only → with the reports: category 0.788 → 0.792,
severity 0.741 → 0.748, component_kind 0.947 → 0.944, all three right 0.616 → 0.630; on field
reports written for the check and trained on nowhere (``tests/models/test_fieldheads.py``)
category 3 of 14 → 12 of 15: the templates alone call most of them ``software``.

The heads run on an encoder of their own (``telemetry_labels.ENCODER``), fine-tuned at build time
on these rows with the three fields as one joint label (``finetune_split``), except template fold
HONEST_FOLD: L2, temperature and the record calibration are fitted on that fold alone, which
neither the encoder nor the head saw. Same 4,909 dev lines (per line / per template, 162
templates), base → fine-tuned encoder: category 0.792 / 0.798 → 0.805 / 0.814, severity
0.748 / 0.844 → 0.841 / 0.866, component_kind 0.944 / 0.885 → 0.961 / 0.909, all three 0.630 /
0.627 → 0.710 / 0.654; routed by the record calibration: answered locally 0.632 → 0.455, of
those all three right 0.662 → 0.884 (the fit asks 0.90). Unseen field reports: 13 of 15.
Fine-tuned on every fold instead (an experiment, torch float, two seeds): severity 0.91–0.94
per line but 0.879 per template, category 0.789 and all three 0.643 per template, so no better;
and nothing would be left to fit the calibration on templates the encoder never saw.
The numbers above are from 526 labelled templates. With all 864 (2026-12-02; 601 train): on
the same 4,909 lines category 0.806 → 0.804, severity 0.906 → 0.938, answered 0.365 → 0.380
with all three right 0.872 → 0.908; on all 5,010 dev lines of 263 templates category 0.805 /
0.826 and severity 0.937 / 0.887 (README, "Every template labelled").

Uses the fitting pieces of ``models.heads`` (L-BFGS logistic regression, temperature, threshold);
the artifacts are ordinary ``linear-head`` artifacts that ``LinearHeadTask`` loads.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from pyapp.tasks.linear import LinearHeadTask, head_artifact
from pyapp.tasks.hybrid import TELEMETRY_FIELD_HEADS
from pyapp.tasks.telemetry_labels import FIELDS, gold_record, report_records

from .cache import cache_root, sha256_file
from .embeddings import embed_cached
from .heads import CV_MAX_ITER, L2_GRID, MAX_ITER, fit_logreg, fit_temperature, log_softmax, softmax
from .trainingdata import data_root, read_jsonl

PER_TEMPLATE = 20
#: Head task → the record field it fills (a field report's label for it).
FIELD_OF_HEAD = {head: field for field, head in TELEMETRY_FIELD_HEADS.items()}
FOLDS = 5
#: The template fold a fine-tuned heads' encoder never trains on (``finetune_split``).
HONEST_FOLD = 0


def template_fold(template: str, folds: int = FOLDS) -> int:
    return int(hashlib.sha256(template.encode("utf-8")).hexdigest()[:8], 16) % folds


def training_set(training, records: list[dict]) -> list[int]:
    """Rows that train: labelled, in the training split, at most PER_TEMPLATE per template
    (spread evenly through the template's lines)."""
    by_template: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if training.label_of(r) is not None and training.split_of_record(r) == "train":
            by_template.setdefault(training.template_of(r), []).append(i)
    rows = []
    for idx in by_template.values():
        rows += [idx[k * len(idx) // PER_TEMPLATE] for k in range(min(PER_TEMPLATE, len(idx)))]
    return sorted(rows)


def _groups(training, records: list[dict], rows: list[int], reports) -> np.ndarray:
    """Each training row's template fold; a field report is a template of its own."""
    return np.array([template_fold(training.template_of(records[i])) for i in rows]
                    + [template_fold(f"report\t{r['text']}") for r in reports])


def finetune_split(task: LinearHeadTask) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """What ``models/finetune.py`` trains the heads' encoder on: the rows the heads train on
    (``training_set`` + field reports), each labelled with its three fields as one joint class,
    and which rows it holds out (template fold HONEST_FOLD, where the heads' L2, temperature and
    record calibration are then fitted). Returns (texts, labels, held out, number of classes)."""
    training = task.training
    records = read_jsonl(data_root() / training.file)
    rows = training_set(training, records)
    reports = report_records()
    golds = [gold_record(records[i]) for i in rows] + list(reports)
    joint = [tuple(g[f] for f in FIELDS) for g in golds]
    classes = {c: i for i, c in enumerate(sorted(set(joint)))}
    texts = [records[i]["text"] for i in rows] + [r["text"] for r in reports]
    held = _groups(training, records, rows, reports) == HONEST_FOLD
    return texts, np.array([classes[c] for c in joint]), held, len(classes)


def fit_grouped(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int,
                honest: np.ndarray | None = None, log=None):
    """L2 by template-grouped CV, temperature on the grouped held-out logits, refit on all.

    ``honest``: the rows whose held-out logits are unseen by the encoder too (the fold left out
    of its fine-tuning); L2 and temperature are then chosen on those rows alone (on the others
    the encoder has learnt the answer, and its held-out accuracy would be flattering).
    Returns (weights, bias, temperature, cv dict, held-out probabilities for every row)."""
    judged = np.ones(len(y), bool) if honest is None else honest
    mu, sigma = x.mean(axis=0), np.clip(x.std(axis=0), 1e-6, None)
    xs = (x - mu) / sigma
    oof = {l2: np.zeros((len(y), n_classes)) for l2 in L2_GRID}
    for k in range(FOLDS):
        held = groups == k
        if not held.any() or held.all():
            continue
        head = None
        for l2 in sorted(L2_GRID, reverse=True):
            head = fit_logreg(xs[~held], y[~held], n_classes, l2, init=head,
                             max_iter=CV_MAX_ITER)
            oof[l2][held] = head.logits(xs[held])
    accuracy = {l2: float((oof[l2][judged].argmax(axis=1) == y[judged]).mean()) for l2 in L2_GRID}
    l2 = max(sorted(L2_GRID, reverse=True), key=lambda v: accuracy[v])
    temperature = fit_temperature(oof[l2][judged], y[judged])
    fitted = fit_logreg(xs, y, n_classes, l2, max_iter=MAX_ITER)
    weights = fitted.weights / sigma
    bias = fitted.bias - weights @ mu
    nll = float(-log_softmax(oof[l2][judged] / temperature)[np.arange(judged.sum()), y[judged]].mean())
    cv = {"folds": FOLDS, "grouped_by": "template", "heldout_examples": int(judged.sum()),
          "judged_on": "all folds" if honest is None else "the fold the encoder never saw",
          "accuracy_by_l2": {repr(k): round(v, 5) for k, v in accuracy.items()}, "l2": l2,
          "temperature": temperature, "accuracy": accuracy[l2], "nll": round(nll, 5)}
    if log:
        log(f"  grouped CV: accuracy {accuracy[l2]:.4f} at L2 {l2:g}, T {temperature:.3f}")
    return weights, bias, temperature, cv, softmax(oof[l2] / temperature)


def build_field_heads(tasks: list[LinearHeadTask], encoder, log=print) -> dict[str, dict]:
    """Train every task's head on the same rows; return task name → artifact. Each artifact
    also carries the record calibration fitted on all heads' held-out probabilities
    (``record_calibration``). Cached by content like the other heads."""
    first = tasks[0].training
    path = data_root() / first.file
    if not path.exists():
        raise FileNotFoundError(f"training data for {[t.name for t in tasks]} not found: {path} "
                                "(set EDGE_TRIAGE_DATA to the data root)")
    data_sha = sha256_file(path)
    key = hashlib.sha256(json.dumps([t.content_key(encoder.model_key) for t in tasks]
                                    + [PER_TEMPLATE, FOLDS, HONEST_FOLD, 4]).encode()).hexdigest()
    cached = cache_root() / "tasks" / f"telemetry-fields-{key[:12]}-{data_sha[:12]}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    records = read_jsonl(path)
    rows = training_set(first, records)
    reports = report_records()
    texts = [records[i]["text"] for i in rows] + [r["text"] for r in reports]
    x = embed_cached(encoder, texts, log=log).astype(np.float64)
    groups = _groups(first, records, rows, reports)
    # The heads share one encoder; a fine-tuned one (Task.encoder, ``finetune_split``) was
    # trained on every fold but HONEST_FOLD.
    honest = groups == HONEST_FOLD if tasks[0].encoder else None
    out: dict[str, dict] = {}
    templates = len({first.template_of(records[i]) for i in rows})
    held: dict[str, np.ndarray] = {}
    correct = np.ones(len(x), bool)
    for task in tasks:
        index = {label: i for i, label in enumerate(task.labels)}
        field = FIELD_OF_HEAD[task.name]
        y = np.array([index[task.training.label_of(records[i])] for i in rows]
                     + [index[r[field]] for r in reports])
        log(f"task {task.name}: training a linear head on {len(rows):,} lines of "
            f"{templates} templates and {len(reports)} field reports")
        w, b, t, cv, probs = fit_grouped(x, y, groups, len(task.labels), honest, log=log)
        training = {"file": first.file, "sha256": data_sha,
                    "heldout_percent": first.heldout_percent, "split": "by template",
                    "examples": len(rows), "templates": templates,
                    "field_reports": len(reports),
                    "per_template": PER_TEMPLATE, "cv": cv}
        out[task.name] = head_artifact(task, encoder.model_key, w, b, t, training)
        held[task.name] = probs.max(axis=1)
        correct &= probs.argmax(axis=1) == y
    if honest is not None:
        held, correct = {n: p[honest] for n, p in held.items()}, correct[honest]
    calibration = record_calibration(held, correct, log=log)
    for task in tasks:
        out[task.name]["training"]["record_calibration"] = calibration
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.rename(cached)
    return out


#: Local answers of telemetry-extract must have every head field right this often (on the
#: template-grouped held-out training predictions), as clinc150's 0.985 for its classifier.
RECORD_PRECISION = 0.90


def record_calibration(held: dict[str, np.ndarray], correct: np.ndarray, log=None) -> dict:
    """P(every head field right) = sigmoid(bias + Σ coef·log p), fitted by maximum likelihood on
    held-out probabilities, and the lowest threshold whose local answers reach RECORD_PRECISION."""
    from scipy.optimize import minimize

    from .heads import choose_threshold

    names = list(held)
    feats = np.stack([np.log(np.clip(held[n], 1e-12, None)) for n in names], axis=1)
    target = correct.astype(np.float64)

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = feats @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-z))
        eps = 1e-12
        value = -float(np.mean(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps)))
        g = (p - target) / len(target)
        return value, np.concatenate([feats.T @ g, [g.sum()]])

    theta = minimize(nll, np.concatenate([np.ones(len(names)), [2.0]]), jac=True,
                     method="L-BFGS-B").x
    confidence = 1.0 / (1.0 + np.exp(-(feats @ theta[:-1] + theta[-1])))
    threshold = choose_threshold(confidence, correct, min_precision=RECORD_PRECISION)
    local = confidence >= (threshold if threshold is not None else 1.0)
    cal = {"fields": names, "coef": [round(float(v), 6) for v in theta[:-1]],
           "bias": round(float(theta[-1]), 6), "threshold": threshold,
           "min_precision": RECORD_PRECISION, "heldout_rows": int(len(target)),
           "heldout_all_correct": round(float(target.mean()), 5),
           "heldout_answered": round(float(local.mean()), 5),
           "heldout_local_all_correct": round(float(correct[local].mean()), 5) if local.any() else None}
    if log:
        log(f"  record calibration: all head fields right {target.mean():.4f} held out; threshold "
            f"{threshold} answers {local.mean():.4f} with {cal['heldout_local_all_correct']} right")
    return cal
