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
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
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


def write_diff(upper_dir: str | os.PathLike[str], out: BinaryIO) -> None:
    """The OCI layer for an overlayfs upper directory: whiteout devices and opaque
    directories become .wh. entries (image-spec layer.md "Whiteouts")."""
    root = os.fspath(upper_dir)
    w = _TarWriter(out)
    for rel, path, st in _walk(root):
        parent, _, name = rel.rpartition("/")
        prefix = parent + "/" if parent else ""
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            w.add(tar.TarEntry(name=prefix + WHITEOUT_PREFIX + name, type=tar.REGTYPE,
                               mtime_ns=st.st_mtime_ns // 1_000_000_000 * 1_000_000_000))
            continue
        e = w.entry(rel, path, st, _xattrs(path, skip_overlay=True))
        if e is None:
            continue
        w.add(e, path)
        if e.type == tar.DIRTYPE and _is_opaque(path):
            w.add(tar.TarEntry(name=f"{rel}/{WHITEOUT_OPAQUE}", type=tar.REGTYPE,
                               mtime_ns=e.mtime_ns))
    out.write(tar.end_of_archive())


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False
