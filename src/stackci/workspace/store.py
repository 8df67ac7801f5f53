"""SQLite storage of the local workspace.

One database file per data directory. Documents (job settings, runs, experiments,
models) are stored as JSON next to the few columns that queries need. A single
connection guarded by a re-entrant lock serialises access: requests and run
drivers run on many threads, and SQLite plus one lock is simpler and fast enough
for a loopback server than a pool of connections.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    name TEXT,
    created_time INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    job_id INTEGER,
    kind TEXT NOT NULL,            -- JOB_RUN | SUBMIT_RUN | WORKFLOW_RUN
    active INTEGER NOT NULL,
    queued INTEGER NOT NULL DEFAULT 0,
    start_time INTEGER NOT NULL,
    idem_scope TEXT,
    idem_token TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job_id, run_id);
CREATE UNIQUE INDEX IF NOT EXISTS runs_idem ON runs (idem_scope, idem_token);
CREATE TABLE IF NOT EXISTS task_runs (
    run_id INTEGER PRIMARY KEY,
    parent_run_id INTEGER NOT NULL,
    task_key TEXT NOT NULL,
    output TEXT
);
CREATE TABLE IF NOT EXISTS objects (
    path TEXT PRIMARY KEY,         -- canonical, without the /Workspace prefix
    parent TEXT NOT NULL,
    object_id INTEGER NOT NULL,
    object_type TEXT NOT NULL,     -- DIRECTORY | NOTEBOOK | FILE
    language TEXT,
    content BLOB,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_parent ON objects (parent);
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (full_name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS model_versions (
    full_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (full_name, version)
);
CREATE TABLE IF NOT EXISTS workspace_models (name TEXT PRIMARY KEY, model_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acls (object_key TEXT PRIMARY KEY, doc TEXT NOT NULL);   -- jobs/<id>, ...
CREATE TABLE IF NOT EXISTS grants (securable TEXT PRIMARY KEY, doc TEXT NOT NULL);  -- function/<full name>
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    expires_at INTEGER            -- epoch seconds, NULL = never
);
"""


class NewerSchema(sqlite3.DatabaseError):
    """The database was written by a newer stackci: refuse rather than corrupt it."""


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """Thread-safe access to the workspace database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # the database holds bearer tokens: only the owner may read it (SQLite gives the
        # -wal and -shm files the same permissions)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            with self.transaction():
                version = self.get_meta("schema_version")
                if version is None:
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
                elif not version.isdigit() or int(version) > SCHEMA_VERSION:
                    raise NewerSchema(f"{self.path} has schema version {version}, this stackci knows up to "
                                      f"{SCHEMA_VERSION}")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run the block in one transaction (nested calls join it)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, args)
            return cur.fetchall()

    def execute(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            cur = self._db.execute(sql, args)
            return cur.rowcount

    # ---- meta and sequences -------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def next_id(self, sequence: str, start: int) -> int:
        """The next value of a named counter (first value ``start``)."""
        with self.transaction():
            current = self.get_meta(f"seq:{sequence}")
            value = start if current is None else int(current) + 1
            self.set_meta(f"seq:{sequence}", str(value))
            return value

    # ---- JSON helpers -------------------------------------------------------

    @staticmethod
    def dumps(doc: Any) -> str:
        return json.dumps(doc, separators=(",", ":"), sort_keys=False)

    @staticmethod
    def loads(text: str | None) -> Any:
        return None if text is None else json.loads(text)
