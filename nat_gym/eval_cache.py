"""A persistent evaluation cache: finished evaluations in an SQLite file, safe to share between processes.

:class:`EvalCache` maps a string key (a digest of what was evaluated and how) to a JSON record. It is a separate
object that evaluators consult (``nat_gym.block_evaluator``): the evaluator looks keys up before training and
:meth:`EvalCache.put` stores each result as soon as it is finished, so

- a killed run loses no finished evaluation: every ``put`` is its own committed transaction (``synchronous=FULL``);
- a second run never evaluates a known key again;
- several processes can read and write the same file at once: SQLite's write-ahead log (``journal_mode=WAL``) lets
  readers proceed while one writer commits, a busy timeout makes a writer wait for the lock instead of failing, and
  ``INSERT OR IGNORE`` keeps the first record when two processes finish the same key (evaluations are deterministic,
  so both records are equal).

Each process (and each thread) opens its own connection on first use: a cache object may be handed to a forked or
spawned worker. Records are dicts of JSON values; ``meta`` columns (what was evaluated, the recipe, the dataset) are
stored beside them for people who open the file with ``sqlite3``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nat_gym.errors import ConfigError

__all__ = ["EvalCache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    recipe TEXT NOT NULL,
    dataset TEXT NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class EvalCache:
    """Key -> JSON record store in an SQLite file (see the module docstring).

    Args:
        path: the database file (created with its parent folders).
        timeout: seconds a writer waits for another process's lock before raising ``sqlite3.OperationalError``.

    Raises:
        ConfigError: ``path`` is a folder, or cannot be created or opened as an SQLite database (a read-only
            folder, a file in the way, a file that is not a database).

    Attributes:
        hits, misses: lookups answered / not answered by this object (this process).
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"cache: {str(self.path)!r} is a folder; give the path of a database file")
        if not timeout > 0:
            raise ConfigError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        try:  # create the schema now, so a bad path fails here, in one line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connect()
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cache: cannot use {str(self.path)!r} as an SQLite cache ({e}); give another path "
                              f"or None (on the command line: --cache PATH or --cache none)") from None  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:  # connections stay behind; the copy opens its own
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"])

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)  # autocommit; explicit BEGIN
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(_SCHEMA)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    # ------------------------------------------------------------------------------------------------------ reads
    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or ``None``."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of those ``keys`` that are stored (one query per 500 keys)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        conn = self._connect()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, record in conn.execute(f"SELECT key, record FROM evaluations WHERE key IN ({marks})", chunk):
                found[key] = json.loads(record)
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def __contains__(self, key: object) -> bool:
        row = self._connect().execute("SELECT 1 FROM evaluations WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every stored row (``key``, ``kind``, ``subject``, ``recipe``, ``dataset``, ``record``, ``created``), oldest
        first; only those of ``kind`` if given."""
        sql = "SELECT key, kind, subject, recipe, dataset, record, created FROM evaluations"
        args: tuple = ()
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", (kind,)
        out = []
        for key, k, subject, recipe, dataset, record, created in self._connect().execute(sql + " ORDER BY created", args):
            out.append({"key": key, "kind": k, "subject": subject, "recipe": json.loads(recipe),
                        "dataset": json.loads(dataset), "record": json.loads(record), "created": created})  # fmt: skip
        return out

    # ------------------------------------------------------------------------------------------------------ writes
    def put(self, key: str, record: Mapping[str, Any], *, kind: str = "", subject: str = "",
            recipe: Mapping[str, Any] | None = None, dataset: Mapping[str, Any] | None = None) -> bool:  # fmt: skip
        """Store ``record`` under ``key`` in one committed transaction; returns ``False`` if the key was already
        stored (the first record is kept)."""
        text = json.dumps(dict(record), sort_keys=True)
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO evaluations (key, kind, subject, recipe, dataset, record, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, kind, subject, json.dumps(dict(recipe or {}), sort_keys=True),
                 json.dumps(dict(dataset or {}), sort_keys=True), text, time.time()),
            )  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cur.rowcount == 1

    def close(self) -> None:
        """Close this thread's connection (a later call reopens it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __repr__(self) -> str:
        return f"EvalCache({str(self.path)!r})"
