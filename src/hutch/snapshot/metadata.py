"""Snapshot metadata: one SQLite database per snapshotter, in its root (WAL, every change
a transaction, as containerd's bolt-backed storage package).

Snapshots are identified on disk by an integer id, never by their key, so commit (a key
becoming a name) is a row update and no directory moves. A directory whose id has no row
is debris from a crash; the snapshotter's cleanup() removes it.
"""

from __future__ import annotations

import _thread  # not threading: ~1.6 ms to import, on every `hutch run`
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hutch.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from hutch.linux.sqlite import no_checkpoint_on_close
from hutch.snapshot.api import Info, Kind, Usage
from hutch.util import fastjson
from hutch.util.record import field, record
from hutch.util.sqlite import close_connection, enable_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    key      TEXT NOT NULL UNIQUE,
    kind     TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    parent   INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
    labels   TEXT NOT NULL DEFAULT '{}',
    created  REAL NOT NULL,
    updated  REAL NOT NULL,
    size     INTEGER,
    inodes   INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""

_CHAIN = """
WITH RECURSIVE chain(id, parent, depth) AS (
    SELECT id, parent, 0 FROM snapshots WHERE id = ?
    UNION ALL
    SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent
)
SELECT id FROM chain WHERE depth > 0 ORDER BY depth
"""

_SELECT = """
SELECT s.id, s.key, s.kind, s.labels, s.created, s.updated, s.size, s.inodes, p.key
FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent
"""


@record(frozen=True)
class Record:
    """A snapshot's row plus its parent chain: `parent_ids` nearest parent first."""

    id: int
    key: str
    kind: Kind
    parent: str | None
    parent_ids: tuple[int, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    usage: Usage | None = None

    def info(self) -> Info:
        return Info(self.kind, self.key, self.parent, dict(self.labels), self.created,
                    self.updated)


def check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"snapshot {what} must be a non-empty string, got {key!r}")
    if "\x00" in key:
        raise InvalidArgument(f"snapshot {what} {key!r} contains NUL")
    return key


def _labels(labels: dict[str, str] | None) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidArgument(f"snapshot labels must map str to str, got {labels!r}")
    return dict(labels)


class Tx:
    """The operations of one transaction (see MetaStore.write/read)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def _row(self, row: tuple, chain: bool = True) -> Record:
        id_, key, kind, labels, created, updated, size, inodes, parent = row
        parent_ids = tuple(r[0] for r in self._c.execute(_CHAIN, (id_,))) if chain else ()
        usage = Usage(size, inodes) if size is not None else None
        return Record(id_, key, Kind(kind), parent, parent_ids, fastjson.loads(labels), created,
                      updated, usage)

    def find(self, key: str) -> Record | None:
        row = self._c.execute(_SELECT + " WHERE s.key = ?", (key,)).fetchone()
        return self._row(row) if row else None

    def get(self, key: str) -> Record:
        check_key(key)
        rec = self.find(key)
        if rec is None:
            raise NotFound(f"snapshot {key!r} not found", key=key)
        return rec

    def create(self, kind: Kind, key: str, parent: str | None,
               labels: dict[str, str] | None) -> Record:
        check_key(key)
        labels = _labels(labels)
        parent_id = None
        if parent is not None:
            check_key(parent, "parent")
            prec = self.find(parent)
            if prec is None:
                raise NotFound(f"parent snapshot {parent!r} not found", key=key, parent=parent)
            if prec.kind is not Kind.COMMITTED:
                raise FailedPrecondition(
                    f"parent snapshot {parent!r} is {prec.kind.value}, not committed",
                    hint="commit it first", key=key, parent=parent)
            parent_id = prec.id
        if self.find(key) is not None:
            raise AlreadyExists(f"snapshot {key!r} already exists", key=key)
        now = time.time()
        cur = self._c.execute(
            "INSERT INTO snapshots (key, kind, parent, labels, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key, kind.value, parent_id, fastjson.dumps_sorted(labels), now, now))
        rec = self._row(self._c.execute(_SELECT + " WHERE s.id = ?", (cur.lastrowid,)).fetchone())
        return rec

    def active(self, key: str) -> Record:
        """The active snapshot `key`, ready to be committed."""
        rec = self.get(key)
        if rec.kind is not Kind.ACTIVE:
            raise FailedPrecondition(
                f"snapshot {key!r} is {rec.kind.value}; only an active snapshot can be "
                "committed", key=key)
        return rec

    def commit(self, rec: Record, name: str, usage: Usage,
               labels: dict[str, str] | None = None) -> Record:
        check_key(name, "name")
        merged = dict(rec.labels)
        merged.update(_labels(labels))
        if self.find(name) is not None:
            raise AlreadyExists(f"snapshot {name!r} already exists", key=rec.key, name=name)
        self._c.execute(
            "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, updated = ?, "
            "size = ?, inodes = ? WHERE id = ?",
            (name, fastjson.dumps_sorted(merged), time.time(), usage.size, usage.inodes,
             rec.id))
        return self.get(name)

    def remove(self, key: str) -> Record:
        rec = self.get(key)
        (n,) = self._c.execute("SELECT COUNT(*) FROM snapshots WHERE parent = ?",
                               (rec.id,)).fetchone()
        if n:
            raise FailedPrecondition(
                f"snapshot {key!r} has {n} child snapshot{'s' if n > 1 else ''}",
                hint="remove its children first", key=key)
        self._c.execute("DELETE FROM snapshots WHERE id = ?", (rec.id,))
        return rec

    def walk(self) -> list[Record]:
        return [self._row(r, chain=False) for r in self._c.execute(_SELECT + " ORDER BY s.id")]

    def ids(self) -> set[int]:
        return {r[0] for r in self._c.execute("SELECT id FROM snapshots")}


class MetaStore:
    """The SQLite database at `path`. Safe to share between threads and processes:
    writers take SQLite's write lock up front (BEGIN IMMEDIATE) and wait for it."""

    def __init__(self, path: str, *, timeout: float = 60.0) -> None:
        self.path = path
        self._lock = _thread.RLock()
        self._c = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                  check_same_thread=False)
        try:
            enable_wal(self._c, timeout)
        except sqlite3.OperationalError as e:
            self._c.close()
            raise Unavailable(f"snapshot metadata {path}: {e}", path=path) from None
        # NORMAL is consistent after a crash in WAL mode (a power cut may lose the last
        # transactions; their directories are then debris that cleanup() removes).
        self._c.execute("PRAGMA synchronous=NORMAL")
        no_checkpoint_on_close(self._c, path)
        self._c.execute("PRAGMA foreign_keys=ON")
        # An existing file takes no write lock (opening must not queue behind another
        # process's long transaction); a new one gets its tables under the write lock.
        if self._c.execute("SELECT 1 FROM sqlite_master WHERE name = 'snapshots_parent'"
                           ).fetchone() is None:  # SCHEMA's last statement
            with self.write():
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self._c.execute(stmt)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: committed when the block ends, rolled back on an error.
        File system work done inside the block must be undone by the caller if the block
        raises (the database cannot roll that back)."""
        with self._lock:
            self._c.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._c)
            except BaseException:
                self._c.execute("ROLLBACK")
                raise
            try:
                self._c.execute("COMMIT")
            except BaseException:
                if self._c.in_transaction:
                    self._c.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock:
            self._c.execute("BEGIN")
            try:
                yield Tx(self._c)
            finally:
                self._c.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            close_connection(self._c, self.path)
