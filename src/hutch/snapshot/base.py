"""What every snapshotter shares: the metadata transactions, the on-disk protocol that
keeps directories and rows in step through crashes, walk/stat/usage and cleanup.

Protocol (containerd's, so a crash at any point leaves only debris, never a lie):
  create  in a write transaction: insert the row (gets an id), build the snapshot under a
          temporary name ("new-*") next to its final place, rename it to its id, commit.
          A failure before COMMIT removes what was built.
  remove  in a write transaction: delete the row, rename the directory to "rm-<id>",
          commit; then delete it. A failure before COMMIT renames it back.
  cleanup removes every entry of the storage directories that no row accounts for
          (new-*, rm-*, ids whose transaction never committed).
Subclasses say where a snapshot lives and how it is built, committed and destroyed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from hutch.errors import FailedPrecondition
from hutch.mount import Mount
from hutch.snapshot.api import Info, Kind, Usage
from hutch.snapshot.fsutil import disk_usage, flocked, remove_tree
from hutch.snapshot.metadata import MetaStore, Record


class BaseSnapshotter:
    name = "base"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for d in self._storage_dirs():
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._lock_path = os.path.join(self.root, "lock")
        self._db = MetaStore(os.path.join(self.root, "metadata.db"))

    # -- what subclasses provide ----------------------------------------------------------
    def _storage_dirs(self) -> list[str]:
        raise NotImplementedError

    def _path(self, id_: int, kind: Kind) -> str:
        """Where snapshot `id_` of `kind` lives once made."""
        raise NotImplementedError

    def _make(self, rec: Record, tmp: str) -> None:
        """Build snapshot `rec` at the not-yet-existing path `tmp`."""
        raise NotImplementedError

    def _mounts(self, rec: Record) -> list[Mount]:
        raise NotImplementedError

    def _destroy(self, path: str) -> None:
        remove_tree(path)

    def _usage_path(self, rec: Record) -> str:
        return self._path(rec.id, rec.kind)

    def _commit_storage(self, rec: Record) -> None:
        """Turn active snapshot `rec` into committed storage at _path(id, COMMITTED),
        inside the commit's transaction. Nothing to do when that is the same place."""

    def _commit_done(self, rec: Record) -> None:
        """After the commit's transaction: drop what only the active snapshot needed."""

    def _tree_dir(self, rec: Record) -> str | None:
        """The directory holding committed snapshot `rec`'s whole tree, or None when the
        snapshotter keeps no such directory (layers that need their parents)."""
        return None

    # -- the protocol ---------------------------------------------------------------------
    def _tmp_path(self, final: str) -> str:
        return os.path.join(os.path.dirname(final), f"new-{os.urandom(6).hex()}")

    def _place(self, final: str, build) -> None:
        """Build at a temporary name, then rename into `final` (removing debris a crash
        left there under a reused id)."""
        tmp = self._tmp_path(final)
        try:
            build(tmp)
            if os.path.lexists(final):
                self._destroy(final)
            os.rename(tmp, final)
        except BaseException:
            if os.path.lexists(tmp):
                self._destroy(tmp)
            raise

    def _create(self, kind: Kind, key: str, parent: str | None,
                labels: dict[str, str] | None) -> list[Mount]:
        with flocked(self._lock_path, exclusive=False):
            final = None
            try:
                with self._db.write() as tx:
                    rec = tx.create(kind, key, parent, labels)
                    final = self._path(rec.id, rec.kind)
                    self._place(final, lambda tmp: self._make(rec, tmp))
                    mounts = self._mounts(rec)
            except BaseException:
                if final is not None and os.path.lexists(final):
                    self._destroy(final)
                raise
            return mounts

    def prepare(self, key: str, parent: str | None = None,
                labels: dict[str, str] | None = None) -> list[Mount]:
        """A new active (writable) snapshot `key` on top of committed `parent`."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None = None,
             labels: dict[str, str] | None = None) -> list[Mount]:
        """A new read-only snapshot `key` of committed `parent`."""
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Active snapshot `key` becomes the immutable snapshot `name` (the key is gone
        afterwards). Its usage is measured and stored now."""
        with flocked(self._lock_path, exclusive=False):
            made = None
            try:
                with self._db.write() as tx:
                    rec = tx.active(key)
                    usage = disk_usage(self._usage_path(rec))
                    committed = self._path(rec.id, Kind.COMMITTED)
                    if committed != self._path(rec.id, Kind.ACTIVE):
                        made = committed
                    self._commit_storage(rec)
                    tx.commit(rec, name, usage, labels)
            except BaseException:
                if made is not None and os.path.lexists(made):
                    self._destroy(made)
                raise
            self._commit_done(rec)

    def remove(self, key: str) -> None:
        """Remove snapshot `key` (any kind). Refused while it has children."""
        with flocked(self._lock_path, exclusive=False):
            path = doomed = None
            try:
                with self._db.write() as tx:
                    rec = tx.remove(key)
                    path = self._path(rec.id, rec.kind)
                    if os.path.lexists(path):
                        doomed = os.path.join(os.path.dirname(path), f"rm-{rec.id}")
                        if os.path.lexists(doomed):
                            self._destroy(doomed)
                        os.rename(path, doomed)
            except BaseException:
                # The row is back (rolled back): so must the directory be.
                if doomed and os.path.lexists(doomed) and not os.path.lexists(path):
                    os.rename(doomed, path)
                raise
            if doomed:
                self._destroy_quietly(doomed)

    def _destroy_quietly(self, path: str) -> None:
        try:
            self._destroy(path)
        except OSError:
            pass  # cleanup() retries: rm-* has no row

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of active snapshot or view `key` (again, as prepare/view said)."""
        with self._db.read() as tx:
            rec = tx.get(key)
        if rec.kind is Kind.COMMITTED:
            raise FailedPrecondition(
                f"snapshot {key!r} is committed; only active snapshots and views have mounts",
                hint="view() it, or prepare() a child of it", key=key)
        return self._mounts(rec)

    def committed_dir(self, name: str) -> str | None:
        """The directory holding committed snapshot `name`'s whole tree, to read in place
        without mounting (e.g. to diff a child against it); None when this snapshotter
        keeps no full tree for it (overlay layers on a parent). The caller must not
        write there. NotFound for an unknown name, FailedPrecondition for one that is
        not committed."""
        with self._db.read() as tx:
            rec = tx.get(name)
        if rec.kind is not Kind.COMMITTED:
            raise FailedPrecondition(f"snapshot {name!r} is {rec.kind}, not committed",
                                     key=name)
        return self._tree_dir(rec)

    def stat(self, key: str) -> Info:
        with self._db.read() as tx:
            return tx.get(key).info()

    def walk(self) -> Iterator[Info]:
        with self._db.read() as tx:
            recs = tx.walk()
        return iter([r.info() for r in recs])

    def usage(self, key: str) -> Usage:
        with self._db.read() as tx:
            rec = tx.get(key)
        if rec.usage is not None:
            return rec.usage
        return disk_usage(self._usage_path(rec))

    def cleanup(self) -> list[str]:
        """Remove what crashes left behind; returns the paths removed."""
        with flocked(self._lock_path, exclusive=True):
            with self._db.read() as tx:
                expected = {self._path(r.id, r.kind) for r in tx.walk()}
            removed = []
            for d in self._storage_dirs():
                for name in sorted(os.listdir(d)):
                    p = os.path.join(d, name)
                    if p not in expected:
                        self._destroy(p)
                        removed.append(p)
            return removed

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"


class DirLayout:
    """snapshots/<id>/fs under the root: the layout the overlay and native snapshotters
    share (btrfs keeps subvolumes elsewhere)."""

    root: str

    def _storage_dirs(self) -> list[str]:
        return [os.path.join(self.root, "snapshots")]

    def _path(self, id_: int, kind: Kind) -> str:
        return os.path.join(self.root, "snapshots", str(id_))

    def _fs(self, id_: int) -> str:
        return os.path.join(self.root, "snapshots", str(id_), "fs")

    def _usage_path(self, rec: Record) -> str:
        return self._fs(rec.id)
