"""The embedded default: one SQLite file in WAL mode (stdlib only, nothing to run or install).

WAL lets readers (``GET``, the review page) proceed while a writer commits, and several server
processes on one machine can share the file. Every write that reads first runs in ``BEGIN
IMMEDIATE`` so two workers can never claim the same case.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import (
    STATUSES,
    Case,
    CaseNotFound,
    Enqueued,
    NewCase,
    RetryPolicy,
    Status,
    dumps,
    lost_worker_error,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    text TEXT NOT NULL,
    local_result TEXT,
    reasons TEXT NOT NULL,
    created_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL,
    answer TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at REAL NOT NULL,
    claimed_by TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS escalations_due ON escalations (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS escalations_received ON escalations (status, received_at);
"""
COLUMNS = (
    "id", "idempotency_key", "task", "text", "local_result", "reasons", "created_at",
    "received_at", "updated_at", "status", "answer", "attempts", "last_error",
    "next_attempt_at", "claimed_by", "lease_until",
)
JSON_COLUMNS = ("local_result", "reasons", "answer")


class SqliteQueue:
    """
    >>> import tempfile
    >>> q = SqliteQueue(Path(tempfile.mkdtemp()) / "escalations.sqlite3")
    >>> q.enqueue(NewCase(idempotency_key="k", task="telemetry-triage",
    ...                   text="fan 2 stalled", created_at="2025-01-01T00:00:00Z")).created
    True
    """

    def __init__(
        self,
        path: Path,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 10.0,
    ):
        self.path = Path(path)
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        # sqlite3 connections must not be shared across threads; the server calls from a pool.
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; only a power loss can
            # drop the last commits, which the browser outbox resends (idempotent by key).
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def journal_mode(self) -> str:
        return self._conn().execute("PRAGMA journal_mode").fetchone()[0]

    # -- the EscalationQueue interface --------------------------------------------------------

    def enqueue(self, case: NewCase) -> Enqueued:
        row = self._to_row(Case.new(case, self._clock()))
        with self._write() as db:
            inserted = db.execute(
                f"INSERT INTO escalations ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))}) "
                "ON CONFLICT(idempotency_key) DO NOTHING",
                [row[c] for c in COLUMNS],
            ).rowcount
            stored = db.execute("SELECT * FROM escalations WHERE idempotency_key = ?",
                                (case.idempotency_key,)).fetchone()
        return Enqueued(self._from_row(stored), created=inserted == 1)

    def get(self, case_id: str) -> Case | None:
        row = self._conn().execute("SELECT * FROM escalations WHERE id = ?",
                                   (case_id,)).fetchone()
        return self._from_row(row) if row else None

    def claim(self, worker: str, lease_s: float) -> Case | None:
        now = self._clock()
        with self._write() as db:
            while True:
                row = db.execute(
                    "SELECT id, status, attempts FROM escalations "
                    "WHERE (status = 'pending' AND next_attempt_at <= ?) "
                    "   OR (status = 'processing' AND lease_until <= ?) "
                    "ORDER BY next_attempt_at LIMIT 1",
                    (now, now),
                ).fetchone()
                if row is None:
                    return None
                if row["status"] == "processing" and row["attempts"] >= self.retry.max_attempts:
                    db.execute(
                        "UPDATE escalations SET status = 'failed', last_error = ?, "
                        "updated_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                        (lost_worker_error(row["attempts"]), now, row["id"]),
                    )
                    continue
                db.execute(
                    "UPDATE escalations SET status = 'processing', attempts = attempts + 1, "
                    "claimed_by = ?, lease_until = ?, updated_at = ? WHERE id = ?",
                    (worker, now + lease_s, now, row["id"]),
                )
                return self._from_row(
                    db.execute("SELECT * FROM escalations WHERE id = ?", (row["id"],)).fetchone()
                )

    def complete(self, case_id: str, answer: dict[str, Any]) -> Case:
        with self._write() as db:
            db.execute(
                "UPDATE escalations SET status = 'answered', answer = ?, updated_at = ?, "
                "claimed_by = NULL, lease_until = NULL WHERE id = ? AND status != 'answered'",
                (dumps(answer), self._clock(), case_id),
            )
            return self._require(db, case_id)

    def fail(self, case_id: str, error: str, worker: str) -> Case:
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT attempts FROM escalations "
                "WHERE id = ? AND status = 'processing' AND claimed_by = ?",
                (case_id, worker),
            ).fetchone()
            if row is not None:
                attempts = row["attempts"]
                if attempts >= self.retry.max_attempts:
                    status, next_at = "failed", now
                else:
                    status, next_at = "pending", now + self.retry.delay(attempts)
                db.execute(
                    "UPDATE escalations SET status = ?, last_error = ?, next_attempt_at = ?, "
                    "updated_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                    (status, error, next_at, now, case_id),
                )
            return self._require(db, case_id)

    def list(self, status: Status | None = None, limit: int = 100) -> list[Case]:
        if status is None:
            rows = self._conn().execute(
                "SELECT * FROM escalations ORDER BY received_at LIMIT ?", (limit,))
        else:
            rows = self._conn().execute(
                "SELECT * FROM escalations WHERE status = ? ORDER BY received_at LIMIT ?",
                (status, limit))
        return [self._from_row(r) for r in rows]

    def stats(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._conn().execute(
                "SELECT status, COUNT(*) FROM escalations GROUP BY status"):
            counts[status] = n
        return {**counts, "total": sum(counts.values())}

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- rows ---------------------------------------------------------------------------------

    def _require(self, db: sqlite3.Connection, case_id: str) -> Case:
        row = db.execute("SELECT * FROM escalations WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise CaseNotFound(case_id)
        return self._from_row(row)

    @staticmethod
    def _to_row(case: Case) -> dict[str, Any]:
        row = case.model_dump(mode="json")
        for column in JSON_COLUMNS:
            row[column] = None if row[column] is None else dumps(row[column])
        return row

    @staticmethod
    def _from_row(row: sqlite3.Row) -> Case:
        data = dict(row)
        for column in JSON_COLUMNS:
            if data[column] is not None:
                data[column] = json.loads(data[column])
        return Case.model_validate(data)
