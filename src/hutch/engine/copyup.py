"""Copy-up: image content copied into an empty volume on first use.

As docker does unless nocopy (daemon populateVolumes / copyExistingContents): `copy_up`
does it without ever leaving the container's root (openat2 RESOLVE_IN_ROOT) and copies
symlinks as symlinks. Split out of hutch.engine.volumes, which re-exports `copy_up`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

from hutch.util.record import record

# --- copy-up ------------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def copy_up(volume_dir: str, rootfs: str, target: str) -> bool:
    """Copy the image's content at `target` (inside `rootfs`) into an empty volume.

    True if it copied. Nothing happens if the volume is not empty or `target` is not a
    directory in the image. `target` resolves as if `rootfs` were "/" (openat2
    RESOLVE_IN_ROOT: "/etc" or "../.." symlinks stay inside), and the copy never
    follows a symlink: links are copied as links, every open is O_NOFOLLOW relative to
    its parent's fd. Owners, modes, times, hard links and xattrs (those archive.apply
    keeps) are preserved; the volume's root takes the target's owner and mode, as in
    docker. A flock on the volume dir serialises two containers copying into one volume.
    """
    from hutch.linux import libc

    dst = os.open(volume_dir, _DIR_FLAGS)
    try:
        fcntl.flock(dst, fcntl.LOCK_EX)
        if os.listdir(dst):
            return False
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            src = libc.openat2(root, target.lstrip("/") or ".", os.O_RDONLY | os.O_DIRECTORY,
                               resolve=libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise
        finally:
            os.close(root)
        try:
            _Copier(dst).copy_tree(src)
        finally:
            os.close(src)
        return True
    finally:
        os.close(dst)  # and the flock with it


@record
class _Frame:
    src: int
    dst: int
    names: list[str]
    path: tuple[str, ...]
    st: os.stat_result


class _Copier:
    def __init__(self, dst_root: int) -> None:
        self.dst_root = dst_root
        self.links: dict[tuple[int, int], str] = {}  # (dev, ino) -> path in the volume

    def copy_tree(self, src_root: int) -> None:
        stack = [_Frame(os.dup(src_root), os.dup(self.dst_root), os.listdir(src_root), (),
                        os.fstat(src_root))]
        try:
            while stack:
                fr = stack[-1]
                if not fr.names:
                    stack.pop()
                    try:
                        _set_meta(fr.dst, fr.st, fr.src)
                    finally:
                        os.close(fr.src)
                        os.close(fr.dst)
                    continue
                name = fr.names.pop()
                st = os.stat(name, dir_fd=fr.src, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(self._enter(fr, name, st))
                else:
                    self._copy_entry(fr, name, st)
        finally:
            for fr in stack:
                os.close(fr.src)
                os.close(fr.dst)

    def _enter(self, fr: _Frame, name: str, st: os.stat_result) -> _Frame:
        os.mkdir(name, 0o700, dir_fd=fr.dst)  # real mode once its content is in
        src = os.open(name, _DIR_FLAGS, dir_fd=fr.src)
        try:
            dst = os.open(name, _DIR_FLAGS, dir_fd=fr.dst)
        except BaseException:
            os.close(src)
            raise
        try:
            return _Frame(src, dst, os.listdir(src), (*fr.path, name), st)
        except BaseException:
            os.close(src)
            os.close(dst)
            raise

    def _copy_entry(self, fr: _Frame, name: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            os.link(self.links[key], name, src_dir_fd=self.dst_root, dst_dir_fd=fr.dst,
                    follow_symlinks=False)
            return
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self._copy_file(fr, name, st)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=fr.src), name, dir_fd=fr.dst)
            with contextlib.suppress(PermissionError):
                os.chown(name, st.st_uid, st.st_gid, dir_fd=fr.dst, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=fr.dst,
                     follow_symlinks=False)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            try:
                os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=fr.dst)
            except PermissionError:
                return  # device nodes need CAP_MKNOD; docker would fail, we skip them
            with contextlib.suppress(PermissionError):
                os.chown(name, st.st_uid, st.st_gid, dir_fd=fr.dst, follow_symlinks=False)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=fr.dst)  # just made by us: no link
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=fr.dst,
                     follow_symlinks=False)
        else:
            return  # sockets mean nothing in a copy
        if st.st_nlink > 1:
            self.links[key] = "/".join((*fr.path, name))

    def _copy_file(self, fr: _Frame, name: str, st: os.stat_result) -> None:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                      | os.O_CLOEXEC, dir_fd=fr.src)
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                return  # swapped under us
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=fr.dst)
            try:
                _copy_data(src, dst, st.st_size)
                _set_meta(dst, st, src)
            finally:
                os.close(dst)
        finally:
            os.close(src)


def _copy_data(src: int, dst: int, size: int) -> None:
    offset = 0
    try:
        while True:
            n = os.sendfile(dst, src, offset, max(size - offset, 1 << 20))
            if n == 0:
                return
            offset += n
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    os.lseek(src, offset, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def _set_meta(fd: int, st: os.stat_result, src_fd: int) -> None:
    """Owner, then mode (chown clears set-id bits), xattrs (chown clears file caps),
    then times (last: the rest would change ctime only, but be safe)."""
    from hutch.archive.apply import xattr_skip_reason

    with contextlib.suppress(PermissionError):
        os.chown(fd, st.st_uid, st.st_gid)
    os.chmod(fd, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src_fd)
    except OSError:
        names = []
    for xname in names:
        if xattr_skip_reason(xname) is not None:
            continue
        with contextlib.suppress(OSError):  # ENOTSUP, EPERM: the volume's fs says no
            os.setxattr(fd, xname, os.getxattr(src_fd, xname))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
