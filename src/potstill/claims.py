"""Claims on frames, so that two writers on one store never do the same work twice.

A writer that is about to label frames claims them first, in a table of the store's own
database (``potstill_claims``: row id, label name, owner, expiry), each claim in one
transaction that serialises with every other writer's (SQLite ``BEGIN IMMEDIATE``;
PostgreSQL ``SELECT ... FOR UPDATE`` on the claim's row). A frame claimed by a live
writer is left to it. A claim is taken over when it has expired, or when its owner is a
process of this machine that is no longer running (a writer killed with ``kill -9``
and resumed here); ``ttl_s`` bounds how long a crashed writer on another machine blocks
its frames. A writer releases its claims when their frames are stored.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg2  # installed with ase-db-backends (PostgreSQL stores)

__all__ = ["Claims", "DAY_S"]

DAY_S = 24 * 3600.0
_LOCK = 7_000_331  # the advisory lock of the claims table (PostgreSQL)
_TABLE = """CREATE TABLE IF NOT EXISTS potstill_claims (
    row_id INTEGER NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (row_id, name))"""


class Claims:
    """The claims of the store at ``url`` (an SQLite path or a PostgreSQL URL), on
    behalf of this process (``owner``: host and pid)."""

    def __init__(self, url: str, *, ttl_s: float = DAY_S):
        self.url, self.ttl_s = str(url), float(ttl_s)
        self.postgres = self.url.startswith(("postgresql://", "postgres://"))
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def claim(self, row_ids: Sequence[int], name: str) -> list[int]:
        """Claim ``row_ids`` for label ``name``; the ids now claimed by this writer (its
        own earlier claims included), in the given order."""
        granted = []
        with self._transaction() as cursor:
            now = time.time()
            for row_id in row_ids:
                cursor.execute(
                    self._sql(
                        "INSERT INTO potstill_claims VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
                    ),
                    (int(row_id), name, self.owner, now + self.ttl_s),
                )
                cursor.execute(
                    self._sql(
                        "SELECT owner, expires FROM potstill_claims WHERE row_id = ? AND name = ?"
                        + (" FOR UPDATE" if self.postgres else "")
                    ),
                    (int(row_id), name),
                )
                owner, expires = cursor.fetchone()
                if owner != self.owner and (expires < now or _dead_here(owner)):
                    cursor.execute(
                        self._sql(
                            "UPDATE potstill_claims SET owner = ?, expires = ? "
                            "WHERE row_id = ? AND name = ?"
                        ),
                        (self.owner, now + self.ttl_s, int(row_id), name),
                    )
                    owner = self.owner
                if owner == self.owner:
                    granted.append(int(row_id))
        return granted

    def release(self, row_ids: Sequence[int], name: str) -> None:
        """Drop this writer's claims on ``row_ids``."""
        with self._transaction() as cursor:
            for row_id in row_ids:
                cursor.execute(
                    self._sql(
                        "DELETE FROM potstill_claims WHERE row_id = ? AND name = ? AND owner = ?"
                    ),
                    (int(row_id), name, self.owner),
                )

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    @contextmanager
    def _transaction(self) -> Iterator:
        if self.postgres:
            connection = psycopg2.connect(self.url)
            try:
                with connection, connection.cursor() as cursor:  # commits or rolls back
                    # CREATE TABLE IF NOT EXISTS races between sessions in PostgreSQL
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                    cursor.execute(_TABLE)
                    yield cursor
            finally:
                connection.close()
            return
        connection = sqlite3.connect(Path(self.url), timeout=600, isolation_level=None)
        try:
            connection.execute(_TABLE)
            connection.execute("BEGIN IMMEDIATE")  # one writer at a time from here
            try:
                yield connection.cursor()
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()


def _dead_here(owner: str) -> bool:
    """Whether ``owner`` is a process of this machine that no longer runs."""
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
