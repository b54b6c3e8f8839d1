"""loghub-fields: a raw log line → ``{system, level, component}``, from the small language model.

Schema (``LoghubFields``): ``system`` is one of the 16 Loghub systems; ``level`` is one of
``info|debug|warning|error|fatal`` or null (HPC, HealthApp, Linux, Mac, OpenSSH, Proxifier and
Thunderbird log no level; each system's own spelling, e.g. Android ``D``, Zookeeper ``WARN``,
Apache ``notice``, is normalised to these five); ``component`` is the logging component as
written in the line (1 to 80 characters; the longest in the data is 71) or null (Apache and
Proxifier lines name none). Decoding is constrained by that schema (``ExtractionTask``), so a
finished output always validates; one cut short is ``valid: false`` and escalated.

Prompt: the instructions, then ``FEW_SHOT`` worked examples, then the line. The examples are
the training lines most similar to the input (IDF-weighted overlap of word shapes, digits
folded), drawn only from the training 70 % of ``loghub/dev.jsonl`` (the same text-hash split as
the loghub classification packs, ``loghub.SYSTEM_TRAINING``), so no held-out line is ever shown
to the model and ``edge-triage eval`` on that file scores only the held-out 30 %. Similar lines
show a 135M model where this system puts its level and component and how the level is spelled.
The examples are read from the data root at load time (CPython); without the file the task
runs zero-shot and says so in each result's notices.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..generation import Prompt
from .base import DEFAULT_THRESHOLD
from .extraction import ExtractionTask
from .loghub import HELDOUT_PERCENT, SYSTEMS, TrainingData

LEVELS = ("info", "debug", "warning", "error", "fatal")
COMPONENT_MAX = 80
#: Worked examples per prompt (0: zero-shot).
FEW_SHOT = 3
#: Example lines longer than this are cut (with "…") to bound the prompt.
EXAMPLE_CHARS = 240
DATA_FILE = "loghub/dev.jsonl"


class LoghubFields(BaseModel):
    system: Literal[SYSTEMS] = Field(description="which system logged the line")  # type: ignore[valid-type]
    level: Literal[LEVELS] | None = Field(description="log level, null if the line has none")  # type: ignore[valid-type]
    component: str | None = Field(min_length=1, max_length=COMPONENT_MAX,
                                  description="the logging component, null if none")


def _gold(record: dict) -> dict | None:
    if record.get("system") not in SYSTEMS:
        return None
    return {"system": record["system"], "level": record.get("level"),
            "component": record.get("component")}


#: The split (and gold fields) of ``loghub/dev.jsonl``; same hash split as the loghub packs.
FIELDS_DATA = TrainingData(DATA_FILE, _gold, version="loghub-fields/v1",
                           heldout_percent=HELDOUT_PERCENT)

_WORD = re.compile(r"[A-Za-z_]+|\d+|[^\sA-Za-z_\d]")


def shape_tokens(text: str) -> set[str]:
    """Word and punctuation tokens with digit runs folded, plus the first eight tagged with their
    position, for example retrieval.

    >>> sorted(shape_tokens("081109 203615 INFO dfs.DataNode: blk_38"))[:7]
    ['.', '0', '0:0', '1:0', '2:INFO', '3:dfs', '4:.']
    """
    toks = [("0" if t.isdigit() else t) for t in _WORD.findall(text[:400])]
    # Position-tagged first tokens carry the line's format (timestamps, fields) too.
    return set(toks) | {f"{i}:{t}" for i, t in enumerate(toks[:8])}


class ExampleIndex:
    """The training lines nearest to a text by IDF-weighted token overlap (pure Python)."""

    def __init__(self, records: list[dict]):
        self.records = records
        self.postings: dict[str, list[int]] = defaultdict(list)
        self.norms: list[float] = []
        sets = [shape_tokens(r["text"]) for r in records]
        for i, toks in enumerate(sets):
            for t in toks:
                self.postings[t].append(i)
        n = len(records)
        self.idf = {t: math.log((n + 1) / (len(p) + 0.5)) for t, p in self.postings.items()}
        self.norms = [math.sqrt(sum(self.idf[t] for t in toks)) or 1.0 for toks in sets]

    def nearest(self, text: str, k: int) -> list[dict]:
        if k <= 0 or not self.records:
            return []
        scores: dict[int, float] = defaultdict(float)
        for t in shape_tokens(text):
            p = self.postings.get(t)
            if p and len(p) < len(self.records) // 2:  # skip near-universal tokens (speed)
                w = self.idf[t]
                for i in p:
                    scores[i] += w
        ranked = sorted(scores, key=lambda i: (-scores[i] / self.norms[i], i))
        out, seen = [], {text}
        for i in ranked:
            r = self.records[i]
            if r["text"] not in seen:
                seen.add(r["text"])
                out.append(r)
                if len(out) == k:
                    break
        return out[::-1]  # nearest last, next to the input


def _data_root() -> Path:
    env = os.environ.get("EDGE_TRIAGE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def answer_json(record: dict) -> str:
    return json.dumps({"system": record["system"], "level": record.get("level"),
                       "component": record.get("component")}, ensure_ascii=False)


class LoghubFieldsTask(ExtractionTask):
    """Extraction with retrieved few-shot examples from the training split; its confidence is
    calibrated at build time on other training lines (``models/extractcal.py``)."""

    copy_fields = ("component",)
    calibrate_at_build = True

    def __init__(self, few_shot: int = FEW_SHOT, data_root: Path | None = None):
        instructions = (
            "Read the log line and give: system (which of these systems wrote it: "
            f"{', '.join(SYSTEMS)}), level (the line's log level as one of {', '.join(LEVELS)}, "
            "or null if the line has no level) and component (the logging component or class "
            "exactly as written in the line, or null if there is none).")
        super().__init__(
            "loghub-fields", LoghubFields, instructions,
            description="System, log level and component of a raw log line (Loghub), "
                        "from a small language model.",
            system="You extract fields from log lines into JSON. Reply with JSON only.",
            max_new_tokens=128, max_input_tokens=256)
        self.few_shot = few_shot
        self.data_root = data_root
        self.training = FIELDS_DATA
        self._index: ExampleIndex | None = None
        self._training_info: dict = {}

    @property
    def training_info(self) -> dict:
        """Which file the examples come from (its sha256): eval on it scores only held-out lines."""
        return self._training_info

    async def load(self, backend: Any, artifact: dict | None = None) -> None:
        await super().load(backend, artifact)
        path = (self.data_root or _data_root()) / DATA_FILE
        if self.few_shot > 0 and path.exists():
            raw = path.read_bytes()
            records = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line]
            train = [r for r in records if _gold(r) is not None
                     and FIELDS_DATA.split_of(r["text"]) == "train"]
            self._index = ExampleIndex(train)
            self._training_info = {"file": DATA_FILE, "sha256": hashlib.sha256(raw).hexdigest(),
                                   "heldout_percent": HELDOUT_PERCENT, "examples": len(train)}
        # The calibration was fitted on outputs prompted with examples from this very file: it
        # says nothing of zero-shot outputs (the page has no data file) or other examples.
        fitted_on = ((artifact or {}).get("training") or {}).get("sha256")
        if self.calibration is not None and fitted_on != self._training_info.get("sha256"):
            self.calibration = None
            self.threshold = DEFAULT_THRESHOLD

    def examples(self, text: str) -> list[dict]:
        return self._index.nearest(text, self.few_shot) if self._index else []

    def prompt(self, text: str) -> Prompt:
        parts = [self.instructions, ""]
        for ex in self.examples(text):
            line = ex["text"] if len(ex["text"]) <= EXAMPLE_CHARS else ex["text"][:EXAMPLE_CHARS] + "…"
            parts += [f"Log line: {line}", f"JSON: {answer_json(ex)}", ""]
        parts += [f"Log line: {text}", "JSON:"]
        return Prompt(user="\n".join(parts), system=self.system,
                      fixed_user=f"{self.instructions}\n")

    async def predict(self, text: str, backend: Any, cancel=None, on_token=None):
        prediction = await super().predict(text, backend, cancel, on_token)
        if self.few_shot > 0 and self._index is None:
            prediction.notices.append(f"No few-shot examples ({DATA_FILE} not found under the "
                                      "data root): zero-shot.")
        return prediction


def loghub_fields() -> LoghubFieldsTask:
    return LoghubFieldsTask()
