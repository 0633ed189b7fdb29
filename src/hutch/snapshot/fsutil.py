"""File tree helpers the snapshotters share: a faithful tree copy (native), disk usage,
the d_type probe (overlay), removal, and the root's lock file."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from hutch.snapshot.api import Usage

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h: share the extents (reflink)

# Errors that mean "this file system cannot do that", to fall back rather than fail.
_NOT_HERE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL,
             errno.EBADF, errno.EPERM}


class _CopyState:
    def __init__(self) -> None:
        self.reflink = True
        self.copy_file_range = hasattr(os, "copy_file_range")


def _copy_data(src: str, dst: str, st: os.stat_result, state: _CopyState) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600)
        try:
            if st.st_size == 0:
                return
            if state.reflink:
                try:
                    fcntl.ioctl(dfd, FICLONE, sfd)
                    return
                except OSError as e:
                    if e.errno not in _NOT_HERE:
                        raise
                    state.reflink = False
            left = st.st_size
            if state.copy_file_range:
                try:
                    while left > 0:
                        n = os.copy_file_range(sfd, dfd, min(left, 1 << 30))
                        if n == 0:
                            break
                        left -= n
                    return
                except OSError as e:
                    if e.errno not in _NOT_HERE or left != st.st_size:
                        raise
                    state.copy_file_range = False
            while True:
                buf = os.read(sfd, 1 << 20)
                if not buf:
                    return
                while buf:
                    buf = buf[os.write(dfd, buf):]
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return
        raise
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as e:
            # ENODATA: removed meanwhile; EOPNOTSUPP: a namespace the target lacks
            # (user.* on a symlink, security.selinux without SELinux).
            if e.errno in (errno.ENODATA, errno.EOPNOTSUPP, errno.ENOTSUP):
                continue
            raise


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    # Order matters: chown clears S_ISUID/S_ISGID and security.capability, so it goes
    # first; times go last, after anything that would bump them.
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str, dst: str) -> int:
    """Copy the contents of directory `src` into the existing directory `dst`, with
    owners, modes, xattrs, hard links, device nodes, fifos, sockets, symlinks and times
    preserved; data by reflink (FICLONE) or copy_file_range when the file system can.
    Never follows a symlink. Iterative, so deep trees do not hit the recursion limit.
    Returns the number of entries copied."""
    state = _CopyState()
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = [(src, dst, os.lstat(src))]
    stack = [(src, dst)]
    count = 0
    while stack:
        sdir, ddir = stack.pop()
        with os.scandir(sdir) as it:
            entries = list(it)
        for e in entries:
            s, d = e.path, os.path.join(ddir, e.name)
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            count += 1
            if stat.S_ISDIR(mode):
                os.mkdir(d, 0o700)
                dirs.append((s, d, st))
                stack.append((s, d))
                continue
            if st.st_nlink > 1:
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    os.link(first, d, follow_symlinks=False)
                    continue
                links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISREG(mode):
                _copy_data(s, d, st, state)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) \
                    or stat.S_ISSOCK(mode):
                os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            else:
                continue
            _copy_meta(s, d, st)
    # Directories last, children before parents: creating entries bumps a directory's
    # mtime, and a read-only mode would stop us creating them.
    for s, d, st in reversed(dirs):
        _copy_meta(s, d, st)
    return count


def disk_usage(path: str) -> Usage:
    """Allocated bytes and distinct inodes under `path` (containerd's fs.DiskUsage)."""
    seen: set[tuple[int, int]] = set()
    size = 0
    stack = [path]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Usage(0, 0)
    seen.add((st.st_dev, st.st_ino))
    size += st.st_blocks * 512
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                k = (st.st_dev, st.st_ino)
                if k not in seen:
                    seen.add(k)
                    size += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return Usage(size, len(seen))


def supports_d_type(directory: str) -> bool:
    """Whether readdir(3) on `directory`'s file system reports entry types (d_type).
    overlayfs needs it to see whiteouts. Probe: DirEntry.is_dir() answers from d_type
    alone when it is known, and falls back to stat() when it is DT_UNKNOWN; remove the
    entry before asking, and only a d_type answer can still say True."""
    probe = os.path.join(directory, f".d_type-{os.getpid()}")
    os.makedirs(os.path.join(probe, "sub"), exist_ok=True)
    try:
        with os.scandir(probe) as it:
            entry = next(it)
        os.rmdir(entry.path)
        return entry.is_dir(follow_symlinks=False)
    finally:
        remove_tree(probe)


def remove_tree(path: str) -> None:
    """rm -rf, iterative (an image can nest directories deeper than Python's recursion
    limit, which shutil.rmtree hits) and undeterred by read-only directory modes."""
    if not os.path.lexists(path):
        return
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        os.unlink(path)
        return
    stack = [path]
    while stack:
        d = stack[-1]
        try:
            entries = list(os.scandir(d))
        except PermissionError:
            os.chmod(d, 0o700)
            continue
        subdirs = []
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                subdirs.append(e.path)
                continue
            try:
                os.unlink(e.path)
            except FileNotFoundError:
                pass
            except PermissionError:
                os.chmod(d, 0o700)
                os.unlink(e.path)
        if subdirs:
            stack.extend(subdirs)
            continue
        stack.pop()
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except PermissionError:
            os.chmod(os.path.dirname(d), 0o700)
            os.rmdir(d)


@contextmanager
def flocked(path: str, exclusive: bool) -> Iterator[None]:
    """flock(2) on `path`: shared for prepare/commit/remove, exclusive for cleanup, so
    cleanup never takes a half-made snapshot of another process for debris."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
