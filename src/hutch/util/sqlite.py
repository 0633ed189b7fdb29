"""SQLite helpers shared by the metadata stores (image metadata, snapshotters)."""

from __future__ import annotations

import sqlite3
import time


def enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode, waiting out other processes doing the same.

    WAL is a property of the file, set once. Switching a new file to it needs an exclusive
    lock, and SQLite answers SQLITE_BUSY there without consulting the busy handler, so
    processes opening a new database together retry by hand.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
