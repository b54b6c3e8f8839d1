"""Telemetry labels for real log lines: Loghub templates labelled by hand, inherited by their lines.

``telemetry_templates.json`` (beside this file; guide: ``telemetry_templates.md``) gives each
labelled ``(system, event_template)`` of ``loghub/dev.jsonl`` a telemetry category, a severity and
the kind of component affected. A line's gold record is its template's labels; a line whose
template is not labelled has none (it is neither trained on nor scored).

The split is by template (``TemplateTrainingData.split_of_record``): every line of a template is
on the same side, so the heads trained on these labels and the evaluation never share a template.
Field reports (``telemetry_reports.json``, the same guide): the ``telemetry-triage`` examples
(``pyapp/tasks/telemetry.py``), short messages in a person's words, labelled with the same three
fields. They train the heads beside the templates (never scored: they are not Loghub lines), so
that a head trained only on machine log templates does not call "PSU 2 failed" software.

Read only under CPython (build and evaluation); the browser never opens either file.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from .extraction import COMPONENT_KINDS, SEVERITIES
from .linear import LinearHeadTask, TrainingData

LABELS_FILE = Path(__file__).with_name("telemetry_templates.json")
#: sha256[:12] of LABELS_FILE: the labels' version in the heads' training key, so the browser,
#: which loads the trained heads, never ships or reads the file (a test checks it is current).
LABELS_DIGEST = "c6b570dd6b89"
REPORTS_FILE = Path(__file__).with_name("telemetry_reports.json")
#: sha256[:12] of REPORTS_FILE, for the same reason.
REPORTS_DIGEST = "bd92e5d85e33"
DATA_FILE = "loghub/dev.jsonl"
HELDOUT_PERCENT = 30
#: The labelled fields, in record order.
FIELDS = ("category", "severity", "component_kind")
#: The encoder the three heads run on: all-MiniLM-L6-v2 fine-tuned at build time on the labelled
#: templates and field reports (``models/finetune.py``, all three fields as one joint label).
#: Measured on the held-out dev lines (linear heads on the frozen base encoder → on this one):
#: see ``models/fieldheads.py``.
ENCODER = "all-MiniLM-L6-v2-telemetry"


@lru_cache(maxsize=1)
def template_labels() -> dict[tuple[str, str], dict]:
    """``(system, template)`` → ``{category, severity, component_kind}``; the file is checked."""
    from .telemetry import LABELS

    allowed = {"category": {label.name for label in LABELS}, "severity": set(SEVERITIES),
               "component_kind": set(COMPONENT_KINDS)}
    out: dict[tuple[str, str], dict] = {}
    for i, entry in enumerate(json.loads(LABELS_FILE.read_text(encoding="utf-8"))):
        key = (entry["system"], entry["template"])
        if key in out:
            raise ValueError(f"{LABELS_FILE.name} entry {i}: template labelled twice: {key}")
        for f in FIELDS:
            if entry.get(f) not in allowed[f]:
                raise ValueError(f"{LABELS_FILE.name} entry {i}: {f} {entry.get(f)!r} is not one "
                                 f"of {sorted(allowed[f])}")
        out[key] = {f: entry[f] for f in FIELDS}
    return out


@lru_cache(maxsize=1)
def report_records() -> tuple[dict, ...]:
    """The labelled field reports: ``{text, category, severity, component_kind}``, one for each
    ``telemetry-triage`` example, its category the example's label (the file is checked)."""
    from .telemetry import LABELS

    allowed = {"severity": set(SEVERITIES), "component_kind": set(COMPONENT_KINDS)}
    expected = {e: label.name for label in LABELS for e in label.examples}
    entries = json.loads(REPORTS_FILE.read_text(encoding="utf-8"))
    for i, entry in enumerate(entries):
        if expected.get(entry.get("text")) != entry.get("category"):
            raise ValueError(f"{REPORTS_FILE.name} entry {i}: not a telemetry-triage example "
                             f"with that category: {entry.get('text')!r}")
        for f, values in allowed.items():
            if entry.get(f) not in values:
                raise ValueError(f"{REPORTS_FILE.name} entry {i}: {f} {entry.get(f)!r} is not "
                                 f"one of {sorted(values)}")
    if sorted(e["text"] for e in entries) != sorted(expected):
        raise ValueError(f"{REPORTS_FILE.name} must label every telemetry-triage example once")
    return tuple({f: e[f] for f in ("text", *FIELDS)} for e in entries)


def gold_record(record: dict) -> dict | None:
    """The labels a Loghub line inherits from its template, or None (template not labelled)."""
    return template_labels().get((record.get("system"), record.get("event_template")))


def template_split(record: dict, heldout_percent: int = HELDOUT_PERCENT) -> str:
    """``"train"`` or ``"heldout"`` by a hash of the line's system and template.

    >>> template_split({"system": "HPC", "event_template": "running"})
    'heldout'
    """
    key = f"{record.get('system')}\t{record.get('event_template')}".encode("utf-8")
    bucket = int(hashlib.sha256(key).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < heldout_percent else "train"


class TemplateTrainingData(TrainingData):
    """``TrainingData`` whose split is by template, not by text; ``label_of`` gives one field
    (a trained head) or the whole gold record (``field=None``, extraction scoring)."""

    def split_of_record(self, record: dict) -> str:
        return template_split(record, self.heldout_percent)

    def template_of(self, record: dict) -> str:
        return f"{record.get('system')}\t{record.get('event_template')}"


def field_training(field: str | None) -> TemplateTrainingData:
    def label_of(record: dict):
        gold = gold_record(record)
        return gold if gold is None or field is None else gold[field]

    return TemplateTrainingData(DATA_FILE, label_of, version=f"telemetry-{field or 'record'}/"
                                f"labels-{LABELS_DIGEST}/reports-{REPORTS_DIGEST}",
                                heldout_percent=HELDOUT_PERCENT)


def _head(name: str, labels: tuple[str, ...], field: str, description: str) -> LinearHeadTask:
    return LinearHeadTask(name, labels, field_training(field), description=description,
                          encoder=ENCODER)


def telemetry_category() -> LinearHeadTask:
    from .telemetry import LABELS

    return _head("telemetry-category", tuple(label.name for label in LABELS), "category",
                 "Telemetry category of a log line: a head trained on hand-labelled Loghub "
                 "templates.")


def telemetry_severity() -> LinearHeadTask:
    return _head("telemetry-severity", SEVERITIES, "severity",
                 "Severity of a log line (info, warning, error, critical): a head trained on "
                 "hand-labelled Loghub templates.")


def telemetry_component_kind() -> LinearHeadTask:
    return _head("telemetry-component-kind", COMPONENT_KINDS, "component_kind",
                 "Which kind of component a log line is about: a head trained on hand-labelled "
                 "Loghub templates.")
