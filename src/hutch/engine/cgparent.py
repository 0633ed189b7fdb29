"""The engine's parent cgroup: every container's cgroups live in /hutch/<id> of each
hierarchy. The runtime makes `hutch` with the first container's cgroups (mkdir -p), and
removes only the container's own directory (as runc does); the engine removes `hutch`
again when its last container is gone, so a host where no container runs keeps nothing.

The race to avoid: removing `hutch` between a runtime's mkdir of it and its mkdir of the
container's directory. Creating takes a shared lock; removal takes it exclusively and
gives up when it cannot have it (someone is creating: the parent is in use anyway). Once a
container's directory exists, rmdir of the parent fails with EBUSY: nothing to lock then.
The parent is one per host, whatever HUTCH_RUN says, so the lock is too: flock(2) on the
first cgroup hierarchy's mount point (a directory every hutch on the host sees, and no
file to create or leave behind).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

PARENT = "hutch"


_seen: list[str] | None = None


def hierarchies(mountinfo: str | None = None) -> list[str]:
    """Mount points of the cgroup hierarchies this process sees, sorted. Read from
    /proc/self/mountinfo once per process (a container's start and end ask three times)."""
    global _seen
    from hutch.runtime.cgroups.fs import parse_mountinfo

    if mountinfo is not None:
        return sorted({m.mountpoint for m in parse_mountinfo(mountinfo)})
    if _seen is None:
        with open("/proc/self/mountinfo") as f:
            _seen = sorted({m.mountpoint for m in parse_mountinfo(f.read())})
    return list(_seen)


def _open_lock(mountpoints: list[str]) -> int:
    if not mountpoints:
        return -1
    return os.open(mountpoints[0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


@contextmanager
def creating(mountpoints: list[str] | None = None) -> Iterator[None]:
    """Held while the runtime creates a container's cgroups."""
    fd = _open_lock(hierarchies() if mountpoints is None else mountpoints)
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def _lock_exclusive(fd: int, wait: float) -> bool:
    """LOCK_EX within `wait` seconds. Another remover holds the lock well under a
    millisecond, and must be waited for: it may have found the parent busy with our
    container's directory, which we had not removed yet when it looked. A creator holds
    it for a whole container start: then the parent is in use anyway, and we give up."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)


def remove_if_unused(mountpoints: list[str] | None = None, *,
                     wait: float = 0.05) -> list[str]:
    """rmdir the parent in every hierarchy where it is empty; returns those removed.
    Quiet when it is busy (other containers), gone, or being created into."""
    if mountpoints is None:
        mountpoints = hierarchies()
    fd = _open_lock(mountpoints)
    removed: list[str] = []
    if fd < 0:
        return removed
    try:
        if not _lock_exclusive(fd, wait):
            return removed
        for d in (os.path.join(m, PARENT) for m in mountpoints):
            try:
                os.rmdir(d)
                removed.append(d)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY,
                                   errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
    finally:
        os.close(fd)
    return removed
