"""SQLite helpers shared by the metadata stores (image metadata, snapshotters)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from hutch.errors import FailedPrecondition, Unavailable

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any


# Connections that close without checkpointing (linux.sqlite.no_checkpoint_on_close) leave
# the WAL to the next process, which reads all of it when it opens the file (~1.3 us a
# page here) and, having rebuilt the WAL index, thinks none of it checkpointed yet: an
# automatic checkpoint after such an open copies the whole WAL again, and the WAL is
# never restarted. So short-lived processes checkpoint when they close, and only once the
# WAL has grown past this size, truncating it: two syncs every few dozen commands instead
# of two at every close.
WAL_TRUNCATE_AT = 512 << 10


def close_connection(conn: sqlite3.Connection, path: str, *,
                     truncate_at: int = WAL_TRUNCATE_AT) -> None:
    """Close `conn`; first checkpoint and truncate the WAL if it is past `truncate_at`
    bytes. Never waits: if another connection is reading or writing, the next close
    does it."""
    try:
        if os.stat(path + "-wal").st_size > truncate_at:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except (OSError, sqlite3.Error):
        pass
    conn.close()


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


class SqliteStore:
    """What every hutch SQLite store shares: one connection opened with our own
    transactions (BEGIN IMMEDIATE for writes, so concurrent processes queue on the write
    lock up front instead of failing with SQLITE_BUSY halfway), WAL, a busy timeout,
    append-only schema migrations in a `schema_version` table, and sqlite errors turned
    into hutch errors. Subclasses name themselves in `what` ("metadata database")."""

    what = "database"
    # Called with (connection, path) once the file is open: the subclasses (which may
    # import hutch.linux, this module may not) pass linux.sqlite.no_checkpoint_on_close.
    configure: Callable[[sqlite3.Connection, str], object] | None = None

    def __init__(self, path: str, *, timeout: float, clock: Callable[[], float],
                 migrations: Sequence[Sequence[str]], foreign_keys: bool = False) -> None:
        self.path = str(path)
        self._clock = clock
        self._migrations = tuple(migrations)
        self._writing = False
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (the module's implicit
            # transactions begin DEFERRED, which is what leads to SQLITE_BUSY mid-way).
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise FailedPrecondition(f"cannot open {self.what} {self.path}: {e}") from None
        try:
            if foreign_keys:
                self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            enable_wal(self._db, timeout)
            # WAL + synchronous=NORMAL: a power loss may lose the last commits, never
            # corrupts the file.
            self._db.execute("PRAGMA synchronous = NORMAL")
            if self.configure is not None:
                self.configure(self._db, self.path)
            self._migrate()
        except sqlite3.OperationalError as e:
            self._db.close()
            raise self._translate(e) from None
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise FailedPrecondition(
                f"{self.path} is not a usable hutch {self.what}: {e}") from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        close_connection(self._db, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translate(self, e: sqlite3.OperationalError) -> Exception:
        if "locked" in str(e) or "busy" in str(e):
            return Unavailable(
                f"{self.what} {self.path} is busy: another hutch process holds it",
                hint="retry when the other command has finished",
            )
        return FailedPrecondition(f"{self.what} {self.path}: {e}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE). Nested uses join the outer one; an
        exception rolls everything back and propagates."""
        if self._db.in_transaction:
            # Upgrading a read snapshot to a writer can fail with SQLITE_BUSY_SNAPSHOT,
            # which no busy timeout cures: writes never nest inside reads.
            assert self._writing, "write inside a read transaction"
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise self._translate(e) from None
        self._writing = True
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # some errors (SQLITE_FULL) roll back by themselves
                self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._translate(e) from None
        finally:
            self._writing = False

    @contextmanager
    def _read(self) -> Iterator[None]:
        # A read transaction: several SELECTs see one snapshot.
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as e:
            raise self._translate(e) from None

    def schema_version(self) -> int:
        """The version of the schema in the file (0: a new, empty database)."""
        try:
            row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return 0
            raise self._translate(e) from None
        return int(row[0] or 0)

    def _migrate(self) -> None:
        # The common case, an up-to-date file, takes no write lock: opening the database
        # must not queue behind a long transaction in another process.
        if self.schema_version() == len(self._migrations):
            return
        with self.transaction():  # re-read under the write lock: another process may win
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            )
            current = self.schema_version()
            if current > len(self._migrations):
                raise FailedPrecondition(
                    f"{self.what} {self.path} has schema version {current}, newer than "
                    f"this hutch understands ({len(self._migrations)})",
                    hint="upgrade hutch",
                )
            for version in range(current, len(self._migrations)):
                for statement in self._migrations[version]:
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (version + 1, self._clock()),
                )
