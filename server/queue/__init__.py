"""Escalation queues: one interface (``base.EscalationQueue``), two backends chosen by settings.

``sqlite`` (default) needs nothing installed or running; ``redis`` lets several server processes
share one queue. Both are opened here, explicitly, never at import.
"""

from __future__ import annotations

from .base import (
    STATUSES,
    Case,
    CaseNotFound,
    Enqueued,
    EscalationQueue,
    NewCase,
    RetryPolicy,
    Status,
)

QUEUE_BACKENDS = ("sqlite", "redis")


def open_queue(settings) -> EscalationQueue:
    """The queue ``settings.queue`` names, with the retry policy from settings."""
    retry = RetryPolicy(max_attempts=settings.max_attempts, base_s=settings.retry_base_s,
                        max_s=settings.retry_max_s)
    if settings.queue == "sqlite":
        from .sqlite import SqliteQueue

        return SqliteQueue(settings.escalation_db, retry=retry)
    if settings.queue == "redis":
        from .redis_streams import RedisQueue

        return RedisQueue.from_url(settings.redis_url, prefix=settings.redis_prefix, retry=retry)
    raise ValueError(f"unknown queue backend {settings.queue!r}; use one of {QUEUE_BACKENDS}")


__all__ = [
    "QUEUE_BACKENDS",
    "STATUSES",
    "Case",
    "CaseNotFound",
    "Enqueued",
    "EscalationQueue",
    "NewCase",
    "RetryPolicy",
    "Status",
    "open_queue",
]
