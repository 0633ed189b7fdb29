"""Make layer tars from directories: a whole tree (`hutch import`) or an overlayfs upper
directory (commit), deterministic so the same tree gives the same diff_id.

Entries are sorted by name bytes, parents before children; mode (with setuid/setgid/
sticky), uid/gid, mtime (whole seconds, as docker and containerd write), xattrs (PAX
SCHILY.xattr.*), hard links (the first name carries the data, later names are type '1'),
devices and fifos are preserved; sockets are skipped (tar cannot hold them). uname/gname
are left empty: the numeric ids are what a container sees.

Overlay upper dirs (Documentation/filesystems/overlayfs.rst): a 0:0 character device is
a whiteout and becomes ".wh.<name>"; a directory with trusted.overlay.opaque=y (or
user.overlay.opaque=y in userxattr mode) becomes the directory plus ".wh..wh..opq".
Other overlay xattrs (origin, impure, redirect, metacopy) are overlay's bookkeeping and
are dropped; redirect_dir and metacopy must be off on mounts whose upper dir is diffed.

Two full trees (native and btrfs snapshots, which copy rather than stack): write_tree_diff
compares them as containerd's continuity does (same_stat) and writes what changed, with
whiteouts for what went. write_entry writes one file or directory under a chosen name
(`hutch cp`). Trees that a running container may change while they are read (an upper
directory, a container's rootfs) are walked by file descriptor: every directory is
opened O_NOFOLLOW relative to its parent's fd and every file O_NOFOLLOW, so a directory
swapped for a symlink mid-walk can never make us read the host's files (CVE-2018-15664).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from hutch.archive import tar
from hutch.archive.apply import WHITEOUT_OPAQUE, WHITEOUT_PREFIX
from hutch.errors import InvalidArgument

_CHUNK = 1 << 20
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def _xattrs(path: str, *, skip_overlay: bool) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        if skip_overlay and name.startswith(_OVERLAY_XATTR_PREFIXES):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _walk(root: str, rel: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative name, absolute path, lstat) depth-first, sorted by name bytes."""
    base = os.path.join(root, rel) if rel else root
    names = sorted(os.listdir(base), key=os.fsencode)
    for name in names:
        r = f"{rel}/{name}" if rel else name
        path = os.path.join(root, r)
        st = os.lstat(path)
        yield r, path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, r)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def _seconds(ns: int) -> int:
    return ns // 1_000_000_000 * 1_000_000_000


def _at(dfd: int, name: str) -> str:
    """`name` in the directory open as `dfd`, for calls that have no dir_fd (xattrs,
    readlink in _TarWriter.entry). The magic link is that very directory; the callers
    never follow the last component."""
    return f"/proc/self/fd/{dfd}/{name}"


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _walk_at(dfd: int, rel: str = "", skip: Callable[[str], bool] | None = None
             ) -> Iterator[tuple[str, int, str, os.stat_result]]:
    """(relative name, parent directory fd, name, lstat) depth-first, sorted by name
    bytes; the fd is valid until the next item is asked for. Directories are opened
    O_NOFOLLOW relative to their parent. `skip(rel)`: leave out rel and what is below.
    Entries that vanish (or turn into symlinks) while walked are left out."""
    for name in sorted(os.listdir(dfd), key=os.fsencode):
        r = f"{rel}/{name}" if rel else name
        if skip is not None and skip(r):
            continue
        st = _lstat_at(dfd, name)
        if st is None:
            continue
        yield r, dfd, name, st
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as e:
                if e.errno in _GONE:
                    continue
                raise
            try:
                yield from _walk_at(sub, r, skip)
            finally:
                os.close(sub)


class _TarWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.links: dict[tuple[int, int], str] = {}

    def add(self, e: tar.TarEntry, path: str | None = None) -> None:
        self.out.write(tar.encode_header(e))
        if e.type == tar.REGTYPE and e.size and path is not None:
            written = 0
            with open(path, "rb") as f:
                while written < e.size:
                    chunk = f.read(min(_CHUNK, e.size - written))
                    if not chunk:
                        raise InvalidArgument(f"{path}: file shrank while being archived")
                    self.out.write(chunk)
                    written += len(chunk)
            self.out.write(tar.padding(e.size))

    def add_at(self, e: tar.TarEntry, dfd: int, name: str, st: os.stat_result) -> None:
        """add() for `name` in the directory open as `dfd`: the file is opened without
        following a symlink and must still be the inode `st` describes (a running
        container may swap it between our lstat and open)."""
        if e.type != tar.REGTYPE or not e.size:
            self.out.write(tar.encode_header(e))
            return
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise InvalidArgument(f"{e.name}: replaced while being archived")
            self.out.write(tar.encode_header(e))
            written = 0
            while written < e.size:
                chunk = os.read(fd, min(_CHUNK, e.size - written))
                if not chunk:
                    raise InvalidArgument(f"{e.name}: file shrank while being archived")
                self.out.write(chunk)
                written += len(chunk)
            self.out.write(tar.padding(e.size))
        finally:
            os.close(fd)

    def entry(self, rel: str, path: str, st: os.stat_result, xattrs: dict[str, bytes]
              ) -> tar.TarEntry | None:
        mode = st.st_mode
        e = tar.TarEntry(name=rel, type=tar.REGTYPE, mode=stat.S_IMODE(mode),
                         uid=st.st_uid, gid=st.st_gid,
                         mtime_ns=st.st_mtime_ns // 1_000_000_000 * 1_000_000_000,
                         xattrs=xattrs)
        if stat.S_ISDIR(mode):
            e.type, e.name = tar.DIRTYPE, rel + "/"
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                e.type, e.linkname = tar.LNKTYPE, self.links[key]
            else:
                if st.st_nlink > 1:
                    self.links[key] = rel
                e.size = st.st_size
        elif stat.S_ISLNK(mode):
            e.type, e.linkname = tar.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            e.type = tar.CHRTYPE if stat.S_ISCHR(mode) else tar.BLKTYPE
            e.devmajor, e.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            e.type = tar.FIFOTYPE
        else:
            return None  # sockets (and doors): not representable
        return e


def _excluded(rel: str, exclude: frozenset[str]) -> bool:
    parts = rel.split("/")
    return any("/".join(parts[:i]) in exclude for i in range(1, len(parts) + 1))


def write_tar(root: str | os.PathLike[str], out: BinaryIO, *,
              exclude: Iterable[str] = ()) -> None:
    """A deterministic layer tar of the whole tree under `root` (root itself excluded),
    written to `out` (a file, or a compress.LayerWriter). `exclude`: relative paths to
    leave out with everything below them."""
    root = os.fspath(root)
    skip = frozenset(p.strip("/") for p in exclude)
    w = _TarWriter(out)
    for rel, path, st in _walk(root):
        if skip and _excluded(rel, skip):
            continue
        e = w.entry(rel, path, st, _xattrs(path, skip_overlay=False))
        if e is not None:
            w.add(e, path)
    out.write(tar.end_of_archive())


def write_diff(upper_dir: str | os.PathLike[str], out: BinaryIO, *,
               exclude: Iterable[str] = ()) -> None:
    """The OCI layer for an overlayfs upper directory: whiteout devices and opaque
    directories become .wh. entries (image-spec layer.md "Whiteouts"). `exclude`:
    relative paths to leave out with everything below them. Walked by fd: safe on the
    upper directory of a running container."""
    skip = frozenset(p.strip("/") for p in exclude)
    w = _TarWriter(out)
    rfd = os.open(os.fspath(upper_dir), _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for rel, dfd, name, st in _walk_at(rfd, "", skip.__contains__ if skip else None):
            parent = rel.rpartition("/")[0]
            prefix = parent + "/" if parent else ""
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                w.add(tar.TarEntry(name=prefix + WHITEOUT_PREFIX + name, type=tar.REGTYPE,
                                   mtime_ns=_seconds(st.st_mtime_ns)))
                continue
            path = _at(dfd, name)
            e = w.entry(rel, path, st, _xattrs(path, skip_overlay=True))
            if e is None:
                continue
            w.add_at(e, dfd, name, st)
            if e.type == tar.DIRTYPE and _is_opaque(path):
                w.add(tar.TarEntry(name=f"{rel}/{WHITEOUT_OPAQUE}", type=tar.REGTYPE,
                                   mtime_ns=e.mtime_ns))
    finally:
        os.close(rfd)
    out.write(tar.end_of_archive())


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


# -- two full trees (native, btrfs) ------------------------------------------------------

def same_stat(old, new) -> bool:
    """Whether two lstat results (or objects with the same st_* fields) describe an
    unchanged entry, as containerd's continuity sameFile decides without reading
    contents: file type and mode, owner and device numbers; for non-directories also
    size and mtime to the nanosecond. A directory's size and mtime are not compared:
    they change whenever an entry comes or goes, and the entries tell that (moby #9874).
    """
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != \
            (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return False
    if stat.S_ISDIR(new.st_mode):
        return True
    return old.st_size == new.st_size and old.st_mtime_ns == new.st_mtime_ns


def _getxattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def same_entry_at(lfd: int, ufd: int, name: str, old: os.stat_result,
                  new: os.stat_result) -> bool:
    """same_stat, then what it cannot see: a symlink's target and a file's capabilities
    (continuity compares security.capability too)."""
    if not same_stat(old, new):
        return False
    if stat.S_ISLNK(new.st_mode):
        return os.readlink(name, dir_fd=lfd) == os.readlink(name, dir_fd=ufd)
    if stat.S_ISREG(new.st_mode):
        return (_getxattr(_at(lfd, name), "security.capability")
                == _getxattr(_at(ufd, name), "security.capability"))
    return True


class _TreeDiff:
    """write_tree_diff's walk. A directory present and unchanged in both trees is only
    written when something below it is (its header goes out just before that entry), so
    the layer restores the owners and modes of the directories it writes into."""

    def __init__(self, w: _TarWriter, skip: Callable[[str], bool] | None) -> None:
        self.w = w
        self.skip = skip
        self.pending: list[tuple[str, int, str, os.stat_result]] = []

    def _flush(self) -> None:
        for rel, dfd, name, st in self.pending:
            path = _at(dfd, name)
            e = self.w.entry(rel, path, st, _xattrs(path, skip_overlay=True))
            if e is not None:
                self.w.add(e)
        self.pending.clear()

    def emit(self, rel: str, dfd: int, name: str, st: os.stat_result) -> bool:
        self._flush()
        path = _at(dfd, name)
        e = self.w.entry(rel, path, st, _xattrs(path, skip_overlay=True))
        if e is None:
            return False
        self.w.add_at(e, dfd, name, st)
        return True

    def whiteout(self, rel: str, mtime_ns: int) -> None:
        self._flush()
        parent, _, name = rel.rpartition("/")
        prefix = parent + "/" if parent else ""
        self.w.add(tar.TarEntry(name=prefix + WHITEOUT_PREFIX + name, type=tar.REGTYPE,
                                mtime_ns=_seconds(mtime_ns)))

    def added(self, rel: str, dfd: int, name: str, st: os.stat_result) -> None:
        if not self.emit(rel, dfd, name, st) or not stat.S_ISDIR(st.st_mode):
            return
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError as e:
            if e.errno in _GONE:
                return
            raise
        try:
            for r, pfd, n, cst in _walk_at(sub, rel, self.skip):
                self.emit(r, pfd, n, cst)
        finally:
            os.close(sub)

    def dir(self, lfd: int, ufd: int, rel: str, ust: os.stat_result) -> None:
        lower = set(os.listdir(lfd))
        upper = set(os.listdir(ufd))
        for name in sorted(lower | upper, key=os.fsencode):
            r = f"{rel}/{name}" if rel else name
            if self.skip is not None and self.skip(r):
                continue
            new = _lstat_at(ufd, name) if name in upper else None
            old = _lstat_at(lfd, name) if name in lower else None
            if new is None:
                if old is not None:
                    self.whiteout(r, ust.st_mtime_ns)
                continue
            if old is None:
                self.added(r, ufd, name, new)
                continue
            if stat.S_ISDIR(old.st_mode) and stat.S_ISDIR(new.st_mode):
                self._both_dirs(lfd, ufd, name, r, old, new)
                continue
            if same_entry_at(lfd, ufd, name, old, new):
                continue
            if stat.S_ISDIR(new.st_mode):
                self.added(r, ufd, name, new)   # a file became a directory
            elif not self.emit(r, ufd, name, new):
                self.whiteout(r, ust.st_mtime_ns)  # became a socket: gone for a tar

    def _both_dirs(self, lfd: int, ufd: int, name: str, rel: str, old: os.stat_result,
                   new: os.stat_result) -> None:
        if same_stat(old, new):
            self.pending.append((rel, ufd, name, new))
        else:
            self.emit(rel, ufd, name, new)
        try:
            sub_l = os.open(name, _DIR_FLAGS, dir_fd=lfd)
            try:
                sub_u = os.open(name, _DIR_FLAGS, dir_fd=ufd)
            except BaseException:
                os.close(sub_l)
                raise
        except OSError as e:
            if e.errno not in _GONE:
                raise
        else:
            try:
                self.dir(sub_l, sub_u, rel, new)
            finally:
                os.close(sub_l)
                os.close(sub_u)
        if self.pending and self.pending[-1][0] == rel:
            self.pending.pop()


def write_tree_diff(lower: str | os.PathLike[str], upper: str | os.PathLike[str],
                    out: BinaryIO, *, exclude: Iterable[str] = ()) -> None:
    """The layer that turns the tree `lower` into the tree `upper` (a container's
    native or btrfs snapshot and its parent): entries that are new or differ
    (same_stat, symlink targets, capabilities) with the directories above them, and a
    ".wh.<name>" for each entry that is gone (one for a whole removed directory).
    File contents are not compared (continuity does when both mtimes are whole
    seconds; a write that keeps size and mtime to the nanosecond is not seen).
    `exclude`: relative paths of `upper` to leave out with everything below them.
    Applied on `lower` with hutch.archive.apply_layer, it reproduces `upper`."""
    skip = frozenset(p.strip("/") for p in exclude)
    w = _TarWriter(out)
    lfd = os.open(os.fspath(lower), _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        ufd = os.open(os.fspath(upper), _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            _TreeDiff(w, skip.__contains__ if skip else None).dir(lfd, ufd, "",
                                                                  os.fstat(ufd))
        finally:
            os.close(ufd)
    finally:
        os.close(lfd)
    out.write(tar.end_of_archive())


# -- one entry under a chosen name (hutch cp) ----------------------------------------------

def write_entry(dir_fd: int, name: str, out: BinaryIO, *, arcname: str,
                skip: Callable[[str], bool] | None = None) -> None:
    """A tar of entry `name` of the directory open as `dir_fd` ("." for that directory
    itself) and, for a directory, everything below it, named `arcname` in the tar. An
    empty `arcname` puts a directory's contents at the top level (docker cp's "dir/.").
    Nothing is followed: a symlink is written as a symlink, directories are opened
    O_NOFOLLOW from their parent's fd, so a tree a running container changes while it
    is read stays the container's tree. `skip(tar name)`: leave an entry (and what is
    below it) out."""
    w = _TarWriter(out)
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    is_dir = stat.S_ISDIR(st.st_mode)
    if arcname:
        path = _at(dir_fd, name)
        e = w.entry(arcname, path, st, _xattrs(path, skip_overlay=True))
        if e is not None:
            w.add_at(e, dir_fd, name, st)
    elif not is_dir:
        raise InvalidArgument(f"{name}: only a directory can be written without a name")
    if is_dir:
        sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            for rel, dfd, n, cst in _walk_at(sub, arcname, skip):
                path = _at(dfd, n)
                e = w.entry(rel, path, cst, _xattrs(path, skip_overlay=True))
                if e is not None:
                    w.add_at(e, dfd, n, cst)
        finally:
            os.close(sub)
    out.write(tar.end_of_archive())
