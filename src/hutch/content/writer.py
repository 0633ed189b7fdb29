"""One ingest: a resumable, verified, atomic write of one blob into a LocalContentStore.

On disk an ingest is `ingest/<sha256(ref)>/` holding `data` (the bytes so far, always a
prefix of what the writer was given) and `ingest.json` (ref, expected digest and size,
start time). The directory itself is the lock: the writer holds `flock(LOCK_EX)` on an fd
of the directory for its whole life, so two processes ingesting the same ref never
interleave, and the kernel drops the lock when a writer dies, even by SIGKILL.

Crash safety, step by step (a SIGKILL may land between any two):
  write      appends to data; data stays a prefix of the stream, nothing under blobs/.
  commit     checks size and digest, fsyncs data, renames it to blobs/<alg>/<hex> (atomic),
             fsyncs blobs/<alg>/, then removes the ingest directory. A crash after the
             rename leaves an ingest without data; the next writer sees the blob and
             cleans the ingest up.
A resumed writer re-hashes the partial data (there is no portable way to persist a
hash state), so `offset` is where the caller resumes with an HTTP Range request.
"""

from __future__ import annotations

import os
import time

from hutch.content._digests import new_hasher
from hutch.errors import FailedPrecondition, InvalidArgument
from hutch.util import fastjson

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~6 ms
if TYPE_CHECKING:
    from types import TracebackType

    from hutch.content.store import LocalContentStore

DATA = "data"
STATUS = "ingest.json"
_CHUNK = 1 << 20


class Writer:
    """Returned by `LocalContentStore.writer()`; use it as a context manager.

    `offset` is how many bytes the ingest holds (resume from there); `exists` is True when
    the blob is already in the store (then write nothing and call `commit()`, which only
    cleans up). Leaving the `with` block without `commit()` keeps the partial data for a
    later writer to resume; `abort()` throws it away.
    """

    def __init__(
        self,
        store: LocalContentStore,
        ref: str,
        expected_digest: str | None,
        expected_size: int | None,
        directory: str | None,
        lock_fd: int | None,
        algorithm: str,
    ) -> None:
        # The writer owns lock_fd from here on: every path out releases it exactly once.
        self._lock_fd = lock_fd
        self._fd: int | None = None
        self._closed = False
        self.store = store
        self.ref = ref
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self._dir = directory
        self._algorithm = algorithm
        self._offset = 0
        self.exists = False
        try:
            self._hasher = new_hasher(algorithm)
            self.exists = expected_digest is not None and store.exists(expected_digest)
            if not self.exists and directory is not None:
                self._open_data()
        except BaseException:
            self.close()
            raise

    # -- state ---------------------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Bytes received so far (including those a previous, interrupted writer wrote)."""
        return self._offset

    @property
    def closed(self) -> bool:
        return self._closed

    def digest(self) -> str:
        """The digest of the bytes written so far."""
        return f"{self._algorithm}:{self._hasher.hexdigest()}"

    # -- opening and resuming ------------------------------------------------------------

    def _status_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, STATUS)

    def _read_status(self) -> dict[str, object] | None:
        try:
            with open(self._status_path(), "rb") as f:
                status = fastjson.loads(f.read())
        except (OSError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    def _write_status(self) -> None:
        # Write-temp-then-rename: a torn ingest.json would otherwise make a later writer
        # throw away good partial data (harmless, but a wasted download).
        status = {
            "ref": self.ref,
            "expected": self.expected_digest,
            "size": self.expected_size,
            "started": time.time(),
        }
        tmp = self._status_path() + ".tmp"
        with open(tmp, "wb") as f:
            f.write(fastjson.dumps(status).encode())
        os.replace(tmp, self._status_path())

    def _open_data(self) -> None:
        assert self._dir is not None
        path = os.path.join(self._dir, DATA)
        status = self._read_status()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fd = fd
        size = os.fstat(fd).st_size
        same = (
            status is not None
            and status.get("ref") == self.ref
            and status.get("expected") == self.expected_digest
            and status.get("size") == self.expected_size
        )
        too_long = self.expected_size is not None and size > self.expected_size
        if not same or too_long:
            # Another target for this ref, a torn status or more bytes than the blob has:
            # start over rather than trust the partial data.
            os.ftruncate(fd, 0)
            size = 0
            self._write_status()
        elif size:
            self._rehash(size)
        os.lseek(fd, size, os.SEEK_SET)
        self._offset = size

    def _rehash(self, size: int) -> None:
        assert self._fd is not None
        hasher = new_hasher(self._algorithm)
        done = 0
        while done < size:
            chunk = os.pread(self._fd, min(_CHUNK, size - done), done)
            if not chunk:
                break
            hasher.update(chunk)
            done += len(chunk)
        self._hasher = hasher
        self._offset = done

    def read_back(self, chunk: int = 1 << 20):
        """Yield the bytes already in the ingest (e.g. to prime a verifier on resume)."""
        if self._fd is None:
            return
        done = 0
        while done < self._offset:
            data = os.pread(self._fd, min(chunk, self._offset - done), done)
            if not data:
                return
            yield data
            done += len(data)

    # -- writing -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"content writer for {self.ref!r} is closed", ref=self.ref)
        if self.exists:
            raise FailedPrecondition(
                f"blob {self.expected_digest} is already in the store: nothing to write",
                ref=self.ref,
            )

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data` and hash it. Exceeding the expected size is a mismatch: the
        ingest is removed and InvalidArgument raised."""
        self._check_open()
        assert self._fd is not None
        view = memoryview(data).cast("B")
        n = len(view)
        if self.expected_size is not None and self._offset + n > self.expected_size:
            got = self._offset + n
            self._discard()
            raise InvalidArgument(
                f"size mismatch for {self.expected_digest or self.ref}: "
                f"expected {self.expected_size} bytes, got at least {got}",
                ref=self.ref,
                digest=self.expected_digest,
            )
        written = 0
        try:
            while written < n:
                written += os.write(self._fd, view[written:])
        except BaseException:
            # ENOSPC, EIO, an interrupt: keep data and hash in step (the hash only ever
            # covers bytes on disk), so the caller may retry or resume from `offset`.
            os.ftruncate(self._fd, self._offset)
            os.lseek(self._fd, self._offset, os.SEEK_SET)
            raise
        self._hasher.update(view)
        self._offset += n
        return n

    def truncate(self, size: int = 0) -> None:
        """Forget everything after `size` bytes: for a server that ignored our Range
        request and sent the whole blob again (truncate(0), then write it all)."""
        self._check_open()
        assert self._fd is not None
        if not 0 <= size <= self._offset:
            raise InvalidArgument(f"cannot truncate to {size}: ingest holds {self._offset} bytes")
        os.ftruncate(self._fd, size)
        self._rehash(size)
        os.lseek(self._fd, size, os.SEEK_SET)

    def commit(self) -> str:
        """Verify size and digest, then make the blob visible atomically. Returns the
        digest. On a mismatch the ingest is removed and InvalidArgument raised."""
        if self._closed:
            raise FailedPrecondition(f"content writer for {self.ref!r} is closed", ref=self.ref)
        if self.exists:
            assert self.expected_digest is not None
            actual_size = self.store.info(self.expected_digest).size
            self._discard()
            if self.expected_size is not None and actual_size != self.expected_size:
                raise InvalidArgument(
                    f"size mismatch for {self.expected_digest}: expected {self.expected_size} "
                    f"bytes, the stored blob has {actual_size}",
                    digest=self.expected_digest,
                )
            return self.expected_digest
        assert self._fd is not None and self._dir is not None
        actual = self.digest()
        if self.expected_size is not None and self._offset != self.expected_size:
            got = self._offset
            self._discard()
            raise InvalidArgument(
                f"size mismatch for {self.expected_digest or self.ref}: "
                f"expected {self.expected_size} bytes, got {got}",
                ref=self.ref,
                digest=self.expected_digest,
            )
        if self.expected_digest is not None and actual != self.expected_digest:
            self._discard()
            raise InvalidArgument(
                f"digest mismatch: expected {self.expected_digest}, got {actual}",
                ref=self.ref,
                digest=self.expected_digest,
            )
        # Durable before visible: the data reaches the disk before the name does.
        os.fsync(self._fd)
        os.fchmod(self._fd, 0o444)  # blobs are immutable; catch accidental writes early
        target = self.store.path(actual)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # rename() is atomic and both writers of one digest verified the same bytes, so a
        # concurrent commit of the same digest under another ref is harmless either way.
        os.rename(os.path.join(self._dir, DATA), target)
        self.store._fsync_dir(os.path.dirname(target))
        self._discard()
        return actual

    def abort(self) -> None:
        """Throw the partial data away and release the ref."""
        if not self._closed:
            self._discard()

    def close(self) -> None:
        """Release the ref and keep the partial data so a later writer resumes."""
        if self._closed:
            return
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.exists and self._dir is not None:
            self._remove_dir()
        self._unlock()

    def _discard(self) -> None:
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir is not None:
            self._remove_dir()
        self._unlock()

    def _remove_dir(self) -> None:
        # Still under our lock: a waiting writer will notice the directory is gone
        # (st_nlink 0 on its fd) and start afresh.
        assert self._dir is not None
        for name in (STATUS, DATA, STATUS + ".tmp"):
            try:
                os.unlink(os.path.join(self._dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self._dir)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil  # rare: stray files in the ingest; keep start-up cheap

            shutil.rmtree(self._dir, ignore_errors=True)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last fd drops the flock
            self._lock_fd = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten writer must not keep its ref locked for the life of the process.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown, nothing to report to
            pass
