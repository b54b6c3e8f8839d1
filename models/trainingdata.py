"""Training corpora for trained task packs, and the build step that turns one into an artifact.

The data root is ``$EDGE_TRIAGE_DATA``, else ``../shared/data`` next to the checkout (where this
project's shared data sets live). Only the build reads it; the browser gets the trained head.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pyapp.tasks.linear import LinearHeadTask, TrainingData, head_artifact

from .cache import cache_root, sha256_file
from .embeddings import embed_cached
from .heads import choose_threshold, train_head

ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    return Path(os.environ.get("EDGE_TRIAGE_DATA") or ROOT.parent / "shared" / "data")


class DataFileError(ValueError):
    """A file that is not what it should be (not text, not JSON, not records); the message says
    which file, where and why."""


def read_text_file(path: Path) -> str:
    """``path`` as UTF-8 text (a byte-order mark is dropped). A missing file is a
    FileNotFoundError and anything else unreadable an OSError or DataFileError, each naming the
    file, so that a command can print it as it is instead of a traceback."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataFileError(f"{path}: a directory, not a file") from None
    except OSError as e:
        raise OSError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); "
                            "is it a binary file?") from None


def parse_json(text: str, where: str):
    """``json.loads(text)``, or a DataFileError saying ``where`` and at which character it broke."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = f"line {e.lineno} column {e.colno}" if "\n" in text.strip() else f"column {e.colno}"
        raise DataFileError(f"{where}: not JSON ({e.msg}, {at})") from None


def json_kind(value) -> str:
    """JSON's name for what ``json.loads`` returned: ``json_kind({}) == "object"``."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object with a ``"text"`` per line (blank lines skipped), as every task's data
    file holds. A line that is not one is a DataFileError
    naming the file and the line: a record silently skipped would be lost from a score."""
    records = []
    # "\n" only: str.splitlines() would also split inside a string holding U+2028 or U+0085,
    # which JSON writes raw (ensure_ascii=False).
    for number, line in enumerate(read_text_file(path).split("\n"), 1):
        if not line.strip():
            continue
        record = parse_json(line, f"{path}, line {number}")
        if not isinstance(record, dict):
            raise DataFileError(f"{path}, line {number}: a JSON {json_kind(record)}, not an "
                                "object with a \"text\"")
        if not isinstance(record.get("text"), str):
            raise DataFileError(f"{path}, line {number}: the record has no \"text\" string")
        records.append(record)
    return records


def training_examples(data: TrainingData, records: list[dict]) -> tuple[list[str], list[str]]:
    """Texts and labels of the records that train the head (labelled, not held out)."""
    rows = training_rows(data, records)
    return [records[i]["text"] for i in rows], [data.label_of(records[i]) for i in rows]


def training_rows(data: TrainingData, records: list[dict]) -> list[int]:
    return [i for i, r in enumerate(records)
            if data.label_of(r) is not None and data.split_of_record(r) == "train"]


def embed_records(encoder, records: list[dict], rows: list[int], log=None) -> np.ndarray:
    """Embeddings of ``records[rows]``, via the cache of the whole file's embeddings (several
    packs and the report share one file, so it is embedded once)."""
    return embed_cached(encoder, [r["text"] for r in records], log=log)[rows]


def first_per_label(texts: list[str], labels: list[str], limit: int) -> tuple[list[str], list[str]]:
    counts: dict[str, int] = {}
    kept_texts, kept_labels = [], []
    for text, label in zip(texts, labels, strict=True):
        counts[label] = counts.get(label, 0) + 1
        if counts[label] <= limit:
            kept_texts.append(text)
            kept_labels.append(label)
    return kept_texts, kept_labels


def routed_threshold(task: LinearHeadTask, probs: np.ndarray, y: np.ndarray) -> float | None:
    """``choose_threshold`` for held-out probabilities; labels the task escalates never answer."""
    pred = probs.argmax(axis=1)
    escalated = np.isin(pred, [task.labels.index(lb) for lb in task.escalate_labels])
    out_of_scope = np.isin(y, [task.labels.index(lb) for lb in task.escalate_labels])
    confidence = np.where(escalated, 0.0, probs.max(axis=1))
    return choose_threshold(confidence, (pred == y) & ~out_of_scope, out_of_scope)


def build_head_artifact(task: LinearHeadTask, encoder, log=print, limit: int | None = None) -> dict:
    """Train ``task``'s head on its training data and return its artifact (cached by content).

    ``limit`` keeps the first N examples of each label (tests use a small, fast subset).
    """
    path = data_root() / task.training.file
    if not path.exists():
        raise FileNotFoundError(f"training data for {task.name!r} not found: {path} "
                                "(set EDGE_TRIAGE_DATA to the data root)")
    data_sha = sha256_file(path)
    key = task.content_key(encoder.model_key)
    cached = cache_root() / "tasks" / f"{task.name}-{key[:12]}-{data_sha[:12]}-{limit or 'all'}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    records = read_jsonl(path)
    texts, labels = training_examples(task.training, records)
    if limit is not None:
        texts, labels = first_per_label(texts, labels, limit)
    index = {label: i for i, label in enumerate(task.labels)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels in the data that task {task.name!r} does not know: {unknown}")
    if limit is None:
        x = embed_records(encoder, records, training_rows(task.training, records), log=log)
    else:
        x = embed_cached(encoder, texts, log=log)
    y = np.array([index[label] for label in labels])
    log(f"task {task.name}: training a linear head on {len(texts):,} examples")
    trained = train_head(x, y, len(task.labels), log=log)
    cv_threshold = routed_threshold(task, trained.oof_probabilities, y[trained.scored])
    prototype_threshold = routed_threshold(task, trained.prototype_oof_probabilities,
                                           y[trained.scored])
    training = {
        "file": task.training.file,
        "sha256": data_sha,
        "heldout_percent": task.training.heldout_percent,
        "examples": len(texts),
        "limit": limit,
        "cv": trained.cv,
        "cv_threshold": cv_threshold,
        "prototype_cv_threshold": prototype_threshold,
    }
    head = trained.head
    artifact = head_artifact(task, encoder.model_key, head.weights, head.bias, head.temperature, training)
    if task.escalate_labels:
        add_scope(artifact, task, x, y, trained, log)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(artifact))
    tmp.rename(cached)
    log(f"task {task.name}: CV accuracy {trained.cv['accuracy']:.4f} (prototypes "
        f"{trained.cv['prototype_accuracy']:.4f}), L2 {trained.l2:g}, "
        f"T {head.temperature:.3f}, CV threshold {cv_threshold}")
    return artifact


def add_scope(artifact: dict, task: LinearHeadTask, x: np.ndarray, y: np.ndarray, trained,
              log=print) -> None:
    """Fit the out-of-scope detectors (``models.scope``) and put the shipped one, with its two
    thresholds, into ``artifact``; every method's held-out result goes into its training record."""
    from pyapp.tasks.linear import rounded

    from .scope import fit_scope

    oos = task.labels.index(sorted(task.escalate_labels)[0])
    log(f"task {task.name}: fitting out-of-scope detectors on the held-out fold")
    fitted = fit_scope(x, y, oos, len(task.labels), trained.scored, trained.oof_logits,
                       trained.head.temperature, log=log)
    artifact["scope"] = rounded(fitted["detector"])
    artifact["training"]["scope_methods"] = rounded(fitted["methods"])


def compare_with_prototypes(task, encoder, records: list[dict], root: Path | None = None) -> list[dict]:
    """Dev metrics of the task's shipped linear head and of plain label prototypes built from
    the same training data (each routed at its own held-out threshold). [] for untrained tasks."""
    from models import metrics

    from .heads import prototype_logits, softmax

    if not isinstance(task, LinearHeadTask) or not task.training_info:
        return []
    info = task.training_info
    train_records = read_jsonl((root or data_root()) / task.training.file)
    rows = training_rows(task.training, train_records)
    labels = [task.training.label_of(train_records[i]) for i in rows]
    index = {label: i for i, label in enumerate(task.labels)}
    x_train = embed_records(encoder, train_records, rows).astype(np.float64)
    y_train = np.array([index[label] for label in labels])
    x = embed_cached(encoder, [r["text"] for r in records]).astype(np.float64)
    gold = [task.training.label_of(r) for r in records]
    artifact = task.artifact(encoder.model_key)
    head_probs = softmax((x @ np.array(artifact["weights"]).T + np.array(artifact["bias"]))
                         / artifact["temperature"])
    proto_probs = softmax(prototype_logits(x_train, y_train, len(task.labels), x)
                          / info["cv"]["prototype_temperature"])
    rows = []
    for method, probs, threshold in (
        ("linear head", head_probs, task.threshold),
        ("prototypes", proto_probs, info.get("prototype_cv_threshold") or task.threshold),
    ):
        pred = [task.labels[i] for i in probs.argmax(axis=1)]
        conf = probs.max(axis=1)
        local = [bool(c >= threshold) and p not in task.escalate_labels for c, p in zip(conf, pred)]
        in_scope = [i for i, g in enumerate(gold) if g not in task.escalate_labels]
        routing = metrics.routing_metrics(gold, pred, local, task.escalate_labels)
        rows.append({
            "method": method,
            "threshold": threshold,
            "in_scope_accuracy": metrics.accuracy([gold[i] for i in in_scope], [pred[i] for i in in_scope]),
            "macro_f1": metrics.macro_f1(gold, pred),
            **routing,
        })
    return rows


def compare_scope_methods(task, encoder, records: list[dict], root: Path | None = None) -> list[dict]:
    """Dev results of every out-of-scope method the build fitted (``models.scope.METHODS``), each
    at its own thresholds from held-out training data. [] for tasks without a scope detector."""
    from .scope import compare_methods

    if not isinstance(task, LinearHeadTask) or not task.training_info.get("scope_methods"):
        return []
    train_records = read_jsonl((root or data_root()) / task.training.file)
    rows = training_rows(task.training, train_records)
    index = {label: i for i, label in enumerate(task.labels)}
    x_train = embed_records(encoder, train_records, rows).astype(np.float64)
    y_train = np.array([index[task.training.label_of(train_records[i])] for i in rows])
    x = embed_cached(encoder, [r["text"] for r in records]).astype(np.float64)
    y = np.array([index[task.training.label_of(r)] for r in records])
    return compare_methods(task.artifact(encoder.model_key), x_train, y_train, x, y)

