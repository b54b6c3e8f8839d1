"""SQLite specifics: WAL mode, the file outliving the process, reopening an existing file."""

from __future__ import annotations

import sqlite3

from server.queue import NewCase
from server.queue.sqlite import SqliteQueue

from .conftest import new_case


def test_the_database_is_in_wal_mode(tmp_path):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    assert q.journal_mode() == "wal"
    q.close()


def test_cases_survive_a_restart_and_the_schema_is_created_once(tmp_path):
    path = tmp_path / "nested" / "q.sqlite3"
    first = SqliteQueue(path)
    stored = first.enqueue(NewCase.model_validate(new_case())).case
    first.close()
    second = SqliteQueue(path)
    assert second.get(stored.id) == stored
    assert not second.enqueue(NewCase.model_validate(new_case())).created
    second.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM escalations").fetchone() == (1,)
