"""Server settings: where the built files are, the page's configuration, the escalation queue.

Every field can be set from an ``EDGE_TRIAGE_<FIELD>`` environment variable (``from_env``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from pyapp.textinput import MAX_INPUT_CHARS

ROOT = Path(__file__).resolve().parent.parent
#: The largest escalation the page sends: a text as long as the page accepts (MAX_INPUT_CHARS
#: UTF-16 units, each at most 6 bytes in JSON, as ``\u0001``) with its local result and reasons.
#: What the page accepts, the server takes: under a smaller limit such a case would end
#: ``failed`` (413) in the outbox and never reach the stronger handler (it was 64 KiB until
#: 2026-12-04, and a 100,000-character report was refused).
ESCALATION_BODY_BYTES = 6 * MAX_INPUT_CHARS + 2 * 2**20


@dataclass(frozen=True)
class Settings:
    web_dir: Path = ROOT / "web"
    build_dir: Path = ROOT / "build"
    default_task: str = "telemetry-triage"
    tasks: tuple[str, ...] = ("telemetry-triage", "clinc150-intent", "loghub-system", "loghub-anomaly",
                              "telemetry-category", "telemetry-severity", "telemetry-component-kind")
    # Extraction tasks the page offers (language model, loaded in the browser on first use).
    lm_tasks: tuple[str, ...] = ("telemetry-extract",)
    extra: dict = field(default_factory=dict)
    # Models whose estimated memory (next to the page's measured memory) exceeds it are not
    # loaded in the browser: the seed's 1.2 GB. The page with both models (q8 language model)
    # measures ~0.93 GiB (README "Memory (measured)", tests/e2e/memory.spec.ts).
    memory_budget_bytes: int = 1_200_000_000
    # Encoder file the page and CPython run: "uint8" (integer kernels; browser = CPython bit for
    # bit, models/weightquant.py) or "q8" (float arithmetic, closer to the float model, slower,
    # ~70 MB more memory per encoder; models/encoder.py).
    encoder_dtype: str = "uint8"
    # The language model the page and CPython run (models.build.choose_lm): a model id or name
    # under <build_dir>/models, e.g. one brought with `edge-triage models import`; "" = built-in.
    browser_lm: str = ""
    # Escalations (server/escalations.py). No token: one is generated at first start and kept in
    # <build_dir>/escalation-token, so every process on this machine shares it.
    escalation_token: str | None = None
    queue: str = "sqlite"  # "sqlite" | "redis"
    sqlite_path: Path | None = None  # default <build_dir>/escalations.sqlite3
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "{edge-triage}:escalations"
    handler: str = "engine"  # "engine" | "openai" | "review"
    openai_url: str | None = None  # base URL; the handler POSTs to <url>/chat/completions
    openai_key: str | None = None
    openai_model: str | None = None
    openai_timeout_s: float = 60.0
    max_body_bytes: int = ESCALATION_BODY_BYTES  # one escalation
    max_request_bytes: int = ESCALATION_BODY_BYTES  # any request (server/limits.py)
    # Escalation API and review sign-in, per client address: sustained rate and burst.
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 100
    max_attempts: int = 5
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    worker: bool = True  # False: this process only takes requests; another one resolves
    worker_poll_s: float = 1.0
    lease_s: float = 120.0
    # The engine handler's escalation model for extraction (server/escalation_engine.py): a
    # server model id or name under <build_dir>/server-models, "browser" for the browser's own
    # model, or "" for the largest imported one that fits server_memory_budget_bytes.
    escalation_model: str = ""
    escalation_concurrency: int = 1  # cases run at once (each holds a model context)
    escalation_timeout_s: float = 300.0  # per case; 0 = none
    escalation_threads: int = 0  # 0 = min(4, CPUs)
    server_memory_budget_bytes: int = 4_000_000_000

    def __post_init__(self):
        if self.queue not in ("sqlite", "redis"):
            raise ValueError(f"EDGE_TRIAGE_QUEUE must be sqlite or redis, not {self.queue!r}")
        if self.handler not in ("engine", "openai", "review"):
            raise ValueError(
                f"EDGE_TRIAGE_HANDLER must be engine, openai or review, not {self.handler!r}")
        if self.encoder_dtype not in ("q8", "uint8"):
            raise ValueError(f"EDGE_TRIAGE_ENCODER_DTYPE must be q8 or uint8, not {self.encoder_dtype!r}")
        if self.max_attempts < 1 or self.max_body_bytes < 1 or self.max_request_bytes < 1:
            raise ValueError("max_attempts, max_body_bytes and max_request_bytes must be at least 1")
        if self.rate_limit_per_s <= 0 or self.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_s must be > 0 and rate_limit_burst at least 1")

    @property
    def runtime_dir(self) -> Path:
        return self.build_dir / "runtime"

    @property
    def tasks_dir(self) -> Path:
        return self.build_dir / "tasks"

    @property
    def models_dir(self) -> Path:
        return self.build_dir / "models"

    @property
    def escalation_db(self) -> Path:
        return self.sqlite_path or self.build_dir / "escalations.sqlite3"

    @property
    def escalation_token_file(self) -> Path:
        return self.build_dir / "escalation-token"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f"EDGE_TRIAGE_{f.name.upper()}")
            if raw is not None and f.name in _PARSERS:
                values[f.name] = _PARSERS[f.name](raw)
        return cls(**values)


def _flag(raw: str) -> bool:
    return raw.strip().lower() not in ("0", "false", "no", "off", "")


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


# Fields settable from the environment, with how to read each (the rest are for code and tests).
_PARSERS: dict[str, Callable[[str], object]] = {
    "build_dir": Path,
    "memory_budget_bytes": int,
    "encoder_dtype": str,
    "browser_lm": str,
    "escalation_token": lambda raw: raw or None,
    "queue": str,
    "sqlite_path": _optional_path,
    "redis_url": str,
    "redis_prefix": str,
    "handler": str,
    "openai_url": lambda raw: raw or None,
    "openai_key": lambda raw: raw or None,
    "openai_model": lambda raw: raw or None,
    "openai_timeout_s": float,
    "max_body_bytes": int,
    "max_request_bytes": int,
    "rate_limit_per_s": float,
    "rate_limit_burst": int,
    "max_attempts": int,
    "retry_base_s": float,
    "retry_max_s": float,
    "worker": _flag,
    "worker_poll_s": float,
    "lease_s": float,
    "escalation_model": str,
    "escalation_concurrency": int,
    "escalation_timeout_s": float,
    "escalation_threads": int,
    "server_memory_budget_bytes": int,
}
