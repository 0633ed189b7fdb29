"""Persistent network namespaces: a namespace kept alive by a bind mount of its nsfs file
(what `ip netns add` does), so it exists before the container's process and outlives its
restarts: the network is set up once per start, the process (re)joins it by path.

Created without forking: unshare(CLONE_NEWNET) moves only the calling thread, which
bind-mounts its /proc/thread-self/ns/net onto the file and setns()es back.
"""

from __future__ import annotations

import errno
import os

from hutch.linux import libc


def create(path: str) -> None:
    """A new network namespace pinned at `path` (a new file). Only its loopback exists,
    down."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.unshare(libc.CLONE_NEWNET)
        try:
            libc.mount("/proc/thread-self/ns/net", path, None, libc.MS_BIND)
        finally:
            libc.setns(here, libc.CLONE_NEWNET, path="/proc/thread-self/ns/net")
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(here)


def remove(path: str) -> None:
    """Unpin and delete. The namespace itself goes when its last user does (the
    container's processes are gone by then). Quiet if already gone."""
    try:
        libc.umount2(path, libc.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
