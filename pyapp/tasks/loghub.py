"""Loghub packs: which of 16 systems a raw log line comes from, and BGL alert vs normal.

Data: Loghub (He et al.; https://github.com/logpai/loghub), ``loghub/dev.jsonl`` under the data
root: the first 1,000 lines of each of 16 systems. It is the only loghub data we have, so it is
split deterministically by a hash of the line's text (``TrainingData.split_of``: the first 8 hex
digits of its SHA-256, mod 100, below 30 → held out): about 70 % trains the head at build time,
about 30 % is held out for evaluation. Identical lines always land on the same side, so no held-out
line was seen in training. ``edge-triage eval`` on that same file scores only the held-out part.

Both packs are linear heads on the encoder's embeddings (``pyapp.tasks.linear``), L2 chosen on
a stratified held-out fifth of the training part, temperature fitted on that fifth's logits.

Thresholds: loghub-system keeps the default 0.85; loghub-anomaly uses 0.85 as well (BGL alerts are
mostly lines logged at FATAL level; the head separates them well and a lower threshold would not
answer noticeably more lines locally in cross-validation).
"""

from __future__ import annotations

from .base import DEFAULT_THRESHOLD
from .linear import LinearHeadTask, TrainingData

SYSTEMS = (
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
    "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper",
)  # fmt: skip
HELDOUT_PERCENT = 30


def _system(record: dict) -> str:
    return record["system"]


def _bgl_alert(record: dict) -> str | None:
    if record["system"] != "BGL" or record.get("anomaly") is None:
        return None
    return "alert" if record["anomaly"] else "normal"


SYSTEM_TRAINING = TrainingData(
    "loghub/dev.jsonl", _system, version="loghub-system/v1", heldout_percent=HELDOUT_PERCENT
)
ANOMALY_TRAINING = TrainingData(
    "loghub/dev.jsonl", _bgl_alert, version="loghub-anomaly/v1", heldout_percent=HELDOUT_PERCENT
)


def loghub_system() -> LinearHeadTask:
    return LinearHeadTask(
        "loghub-system",
        SYSTEMS,
        SYSTEM_TRAINING,
        description="Which of 16 systems (Loghub) a raw log line comes from.",
        threshold=DEFAULT_THRESHOLD,
    )


def loghub_anomaly() -> LinearHeadTask:
    return LinearHeadTask(
        "loghub-anomaly",
        ("alert", "normal"),
        ANOMALY_TRAINING,
        description="Whether a BGL (Blue Gene/L) log line is an alert or normal.",
        threshold=DEFAULT_THRESHOLD,
    )
