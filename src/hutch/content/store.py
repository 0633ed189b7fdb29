"""LocalContentStore: blobs addressed by digest in a directory tree, standard library only.

Layout (containerd's content/local, which the field knows):
  <root>/blobs/<alg>/<hex>          verified blobs, read-only, immutable
  <root>/ingest/<sha256(ref)>/      one in-progress write: data + ingest.json; the
                                    directory fd is flock()ed by its writer
Nothing appears under blobs/ before its size and digest were checked (see writer.py).
Blobs are only ever created by rename() and removed by unlink(), so a reader that
opened one keeps a consistent file whatever happens next.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections import namedtuple

from hutch.content._digests import ALGORITHMS, is_hex_for, new_hasher, split_digest
from hutch.content.writer import DATA, STATUS, Writer
from hutch.errors import InvalidArgument, NotFound, Unavailable
from hutch.util import fastjson

_CHUNK = 1 << 20
DEFAULT_READ_LIMIT = 4 << 20  # manifests and configs; registries cap manifests at 4 MiB


TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~6 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

# collections.namedtuple, not typing.NamedTuple: `typing` costs ~6 ms of start-up.


class BlobInfo(namedtuple("BlobInfo", ["size", "mtime"])):
    """(size: int, mtime: float) of a stored blob."""

    __slots__ = ()


class IngestStatus(
    namedtuple(
        "IngestStatus", ["ref", "expected_digest", "expected_size", "offset", "updated", "active"]
    )
):
    """An ingest on disk: ref: str, expected_digest: str | None, expected_size: int | None,
    offset: int (bytes held so far), updated: float (mtime of the data), active: bool (a
    live writer holds it)."""

    __slots__ = ()


class LocalContentStore:
    """A content-addressed blob store rooted at `root` (created if missing).

    Safe for many processes at once: one writer per ref (others wait), atomic commits,
    unlink-only deletes. Not shared between threads without external locking of writers.
    """

    def __init__(self, root: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.root = os.fspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._ingest = os.path.join(self.root, "ingest")
        self._clock = clock
        os.makedirs(os.path.join(self._blobs, "sha256"), exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)

    # -- reading -------------------------------------------------------------------------

    def path(self, digest: str) -> str:
        """Where the blob lives (or would live). Validates the digest."""
        algorithm, hexpart = split_digest(digest)
        return os.path.join(self._blobs, algorithm, hexpart)

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def info(self, digest: str) -> BlobInfo:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store", digest=digest) from None
        return BlobInfo(st.st_size, st.st_mtime)

    def open(self, digest: str) -> BinaryIO:
        """The blob for reading (binary, buffered). The caller closes it."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store", digest=digest) from None

    def read_bytes(self, digest: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """The whole blob, refusing (InvalidArgument) one larger than `limit` bytes:
        manifests and configs are small, and a hostile one must not exhaust memory."""
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise InvalidArgument(
                    f"blob {digest} is {size} bytes, more than the {limit} allowed here",
                    digest=digest,
                )
            return f.read(limit + 1)[:limit]

    def walk(self) -> Iterator[str]:
        """Every blob's digest (unordered). Stray files in blobs/ are skipped."""
        for algorithm in ALGORITHMS:
            try:
                entries = os.scandir(os.path.join(self._blobs, algorithm))
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    if is_hex_for(algorithm, entry.name) and entry.is_file(follow_symlinks=False):
                        yield f"{algorithm}:{entry.name}"

    def verify(self, digest: str) -> bool:
        """Re-hash the blob: True if its content still matches its name."""
        algorithm, hexpart = split_digest(digest)
        hasher = new_hasher(algorithm)
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest() == hexpart

    def verify_all(self) -> list[str]:
        """Digests of the blobs whose content no longer matches (bit rot, tampering)."""
        bad = []
        for digest in self.walk():
            try:
                if not self.verify(digest):
                    bad.append(digest)
            except NotFound:
                continue  # deleted meanwhile
        return sorted(bad)

    # -- deleting ------------------------------------------------------------------------

    def delete(self, digest: str) -> int:
        """Remove the blob; returns the bytes freed (0 if it was not there)."""
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    # -- writing -------------------------------------------------------------------------

    def writer(
        self,
        ref: str,
        expected_digest: str | None,
        expected_size: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Writer:
        """Open (or resume) the ingest named `ref` — usually the digest itself.

        Blocks while another process writes the same ref (raises Unavailable after
        `timeout` seconds if one is given). When the blob is in the store already —
        before or after waiting — the writer has `exists` True and nothing to do.
        `expected_digest` None means "unknown": commit() names the blob by what it hashed
        (sha256), for content we produce ourselves.
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument(f"invalid ingest ref {ref!r}", ref=ref)
        if expected_size is not None and (
            type(expected_size) is not int or expected_size < 0  # bool is not a size
        ):
            raise InvalidArgument(f"invalid expected size {expected_size!r} for {ref}", ref=ref)
        algorithm = "sha256"
        if expected_digest is not None:
            algorithm, _ = split_digest(expected_digest)
            if self.exists(expected_digest) and not os.path.exists(self._ingest_dir(ref)):
                # Stored already, and no leftover ingest of this ref to clean up.
                return Writer(self, ref, expected_digest, expected_size, None, None, algorithm)
        directory, lock_fd = self._lock_ingest(ref, timeout)
        return Writer(self, ref, expected_digest, expected_size, directory, lock_fd, algorithm)

    def put_bytes(self, digest: str | None, data: bytes) -> str:
        """Store a small blob (manifest, config) in one go; returns its digest. InvalidArgument
        if `data` does not match `digest`."""
        import hashlib  # OpenSSL's start-up costs ~2 ms: not on the read-only paths

        ref = digest if digest is not None else "sha256:" + hashlib.sha256(data).hexdigest()
        with self.writer(ref, ref, len(data)) as w:
            if not w.exists:
                if w.offset:
                    w.truncate(0)
                w.write(data)
            return w.commit()

    # -- ingests -------------------------------------------------------------------------

    def _ingest_dir(self, ref: str) -> str:
        import hashlib

        return os.path.join(self._ingest, hashlib.sha256(ref.encode()).hexdigest())

    def _lock_ingest(self, ref: str, timeout: float | None) -> tuple[str, int]:
        path = self._ingest_dir(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # its writer committed and removed it between our mkdir and open
            try:
                self._flock(fd, ref, deadline)
                # The previous holder may have removed the directory before unlocking (it
                # committed or aborted): our lock is then on a dead inode. Start again.
                st = os.fstat(fd)
                try:
                    now = os.stat(path)
                except FileNotFoundError:
                    now = None
                if st.st_nlink and now is not None and os.path.samestat(now, st):
                    return path, fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    @staticmethod
    def _flock(fd: int, ref: str, deadline: float | None) -> None:
        if deadline is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        pause = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"another process is still writing {ref}",
                        ref=ref,
                        hint="wait for the other pull to finish, or retry",
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def ingests(self) -> list[IngestStatus]:
        """Every ingest on disk, with its progress and whether a writer holds it."""
        result = []
        try:
            names = sorted(os.listdir(self._ingest))
        except FileNotFoundError:
            return []
        for name in names:
            status = self._ingest_status(os.path.join(self._ingest, name))
            if status is not None:
                result.append(status)
        return result

    def _ingest_status(self, path: str) -> IngestStatus | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                active = False
            except BlockingIOError:
                active = True
            try:
                with open(os.path.join(path, STATUS), "rb") as f:
                    status = fastjson.loads(f.read())
                if not isinstance(status, dict):
                    status = {}
            except (OSError, ValueError):
                status = {}
            try:
                st = os.stat(os.path.join(path, DATA))
                offset, updated = st.st_size, st.st_mtime
            except FileNotFoundError:
                offset, updated = 0, os.fstat(fd).st_mtime
            return IngestStatus(
                ref=str(status.get("ref", "")),
                expected_digest=status.get("expected"),
                expected_size=status.get("size"),
                offset=offset,
                updated=updated,
                active=active,
            )
        finally:
            os.close(fd)

    def clean_ingests(self, older_than: float) -> int:
        """Remove ingests no writer holds whose data has not changed for `older_than`
        seconds (abandoned pulls). Returns how many were removed."""
        cutoff = self._clock() - older_than
        removed = 0
        try:
            names = os.listdir(self._ingest)
        except FileNotFoundError:
            return 0
        for name in names:
            path = os.path.join(self._ingest, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer is busy with it
                if os.fstat(fd).st_nlink == 0:
                    continue
                newest = os.fstat(fd).st_mtime
                for entry in (DATA, STATUS):
                    try:
                        newest = max(newest, os.stat(os.path.join(path, entry)).st_mtime)
                    except FileNotFoundError:
                        pass
                if newest > cutoff:
                    continue
                for entry in os.listdir(path):
                    os.unlink(os.path.join(path, entry))
                os.rmdir(path)
                removed += 1
            finally:
                os.close(fd)
        return removed

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # some filesystems cannot
                raise
        finally:
            os.close(fd)
