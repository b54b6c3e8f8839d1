"""What every escalation queue shares: the case record, the retry policy and the interface.

A case moves ``pending → processing → answered``; a failed attempt puts it back to ``pending``
with a later ``next_attempt_at`` until ``max_attempts`` is spent, and then it ends ``failed`` with
the reason. Nothing deletes a case: ``failed`` is still readable and can still be answered by a
human (``complete`` is accepted on any case not yet ``answered``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, field_validator

Status = Literal["pending", "processing", "answered", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "processing", "answered", "failed")
FINAL: frozenset[str] = frozenset({"answered", "failed"})  # no worker touches these again


class NewCase(BaseModel):
    """What a client sends (``POST /api/escalations``); the queue adds everything else."""

    idempotency_key: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1)
    local_result: dict[str, Any] | None = None
    reasons: list[str] = Field(default_factory=list, max_length=50)
    created_at: datetime

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        # Blank text would fail every handler attempt; refuse it up front instead.
        if not text.strip():
            raise ValueError("text is blank")
        return text


class Case(BaseModel):
    id: str
    idempotency_key: str
    task: str
    text: str
    local_result: dict[str, Any] | None = None
    reasons: list[str] = Field(default_factory=list)
    created_at: datetime
    received_at: float
    updated_at: float
    status: Status = "pending"
    answer: dict[str, Any] | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: float = 0.0
    claimed_by: str | None = None
    lease_until: float | None = None

    @classmethod
    def new(cls, case: NewCase, now: float) -> Case:
        return cls(
            id=uuid.uuid4().hex,
            **case.model_dump(),
            received_at=now,
            updated_at=now,
            next_attempt_at=now,
        )

    def public(self) -> dict[str, Any]:
        """What ``GET /api/escalations/{id}`` shows: no lease bookkeeping."""
        return self.model_dump(
            mode="json", exclude={"claimed_by", "lease_until", "next_attempt_at"}
        )


@dataclass(frozen=True)
class Enqueued:
    case: Case
    created: bool  # False: the idempotency key was already known; ``case`` is the first one


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt n (1-based) that failed waits ``base_s * factor**(n-1)``.

    >>> RetryPolicy(max_attempts=5, base_s=2, max_s=60).delay(3)
    8.0
    """

    max_attempts: int = 5
    base_s: float = 2.0
    factor: float = 2.0
    max_s: float = 300.0

    def delay(self, attempts: int) -> float:
        return float(min(self.max_s, self.base_s * self.factor ** max(0, attempts - 1)))


class EscalationQueue(Protocol):
    """The interface both backends implement (``sqlite.SqliteQueue``, ``redis_streams.RedisQueue``).

    Synchronous on purpose: SQLite is, and the server calls it from a thread pool.
    """

    retry: RetryPolicy

    def enqueue(self, case: NewCase) -> Enqueued:
        """Store a case once per idempotency key; a repeat returns the first case."""

    def get(self, case_id: str) -> Case | None: ...

    def claim(self, worker: str, lease_s: float) -> Case | None:
        """The next due case, now ``processing`` for ``worker`` (attempts + 1), or None.

        A case whose worker stopped answering for ``lease_s`` is claimed again; one that has
        already used every attempt that way ends ``failed``.
        """

    def complete(self, case_id: str, answer: dict[str, Any]) -> Case:
        """Record the answer, unless the case is already answered (first answer wins)."""

    def fail(self, case_id: str, error: str, worker: str) -> Case:
        """A failed attempt by ``worker``: retry later, or ``failed`` after the last attempt.

        Ignored when ``worker`` no longer holds the case (its lease was taken over).
        """

    def list(self, status: Status | None = None, limit: int = 100) -> list[Case]:
        """Oldest first."""

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class CaseNotFound(KeyError):
    def __str__(self) -> str:
        return f"No escalation with id {self.args[0]!r}."


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def lost_worker_error(attempts: int) -> str:
    return f"worker stopped responding during attempt {attempts}; no attempts left"
