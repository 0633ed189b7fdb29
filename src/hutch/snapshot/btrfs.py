"""The btrfs snapshotter: every snapshot is a btrfs subvolume; prepare on a parent is a
writable snapshot of it, commit a read-only snapshot of the active one, so both are O(1)
(copy-on-write in the file system). Returns bind mounts (containerd's snapshots/btrfs).

Layout under root (which must be on btrfs):
  active/<id>     writable subvolumes (prepare)
  view/<id>       read-only snapshots (view)
  snapshots/<id>  read-only snapshots (commit)
Subvolumes are made with the btrfs ioctls through fcntl.ioctl (no btrfs-progs needed):
BTRFS_IOC_SUBVOL_CREATE, BTRFS_IOC_SNAP_CREATE_V2 (+ BTRFS_SUBVOL_RDONLY) and
BTRFS_IOC_SNAP_DESTROY, with the argument structs of include/uapi/linux/btrfs.h.
usage() walks the subvolume, so it counts extents shared with the parent too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from hutch.errors import NotSupported
from hutch.mount import Mount
from hutch.mount.mountinfo import lookup
from hutch.snapshot.api import Kind
from hutch.snapshot.base import BaseSnapshotter
from hutch.snapshot.fsutil import remove_tree
from hutch.snapshot.metadata import Record


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (0x94 << 8) | nr  # _IOW(BTRFS_IOCTL_MAGIC, nr, size)


_VOL_ARGS_SIZE = 4096      # struct btrfs_ioctl_vol_args: __s64 fd; char name[4088]
_VOL_ARGS_V2_SIZE = 4096   # __s64 fd; __u64 transid, flags; __u64 unused[4]; char name[4040]
BTRFS_IOC_SUBVOL_CREATE = _iow(14, _VOL_ARGS_SIZE)
BTRFS_IOC_SNAP_DESTROY = _iow(15, _VOL_ARGS_SIZE)
BTRFS_IOC_SNAP_CREATE_V2 = _iow(23, _VOL_ARGS_V2_SIZE)
BTRFS_SUBVOL_RDONLY = 1 << 1
BTRFS_FIRST_FREE_OBJECTID = 256  # the inode number of every subvolume's root directory


def _vol_args(name: str, fd: int = 0) -> bytearray:
    b = os.fsencode(name)
    if len(b) > 4087 or b"/" in b:
        raise ValueError(f"bad subvolume name {name!r}")
    buf = bytearray(_VOL_ARGS_SIZE)
    struct.pack_into("<q", buf, 0, fd)
    buf[8:8 + len(b)] = b
    return buf


def _vol_args_v2(name: str, fd: int, flags: int) -> bytearray:
    b = os.fsencode(name)
    if len(b) > 4039 or b"/" in b:
        raise ValueError(f"bad subvolume name {name!r}")
    buf = bytearray(_VOL_ARGS_V2_SIZE)
    struct.pack_into("<qQQ", buf, 0, fd, 0, flags)
    buf[56:56 + len(b)] = b
    return buf


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class BtrfsSubvolumes:
    """The btrfs operations the snapshotter needs; a fake with plain directories stands
    in for it in unit tests."""

    def check(self, root: str) -> None:
        m = lookup(root)
        if m.fstype != "btrfs":
            raise NotSupported(
                f"btrfs snapshotter: {root} is on {m.fstype} ({m.mountpoint}), not btrfs",
                hint="put the root on a btrfs file system, or use the overlay or native "
                     "snapshotter", path=root, fstype=m.fstype)

    def _ioctl(self, name: str, path: str, fd: int, req: int, buf: bytearray) -> None:
        try:
            fcntl.ioctl(fd, req, buf, True)
        except OSError as e:
            raise OSError(e.errno, f"{name}: {os.strerror(e.errno or 0)}", path) from e

    def create(self, path: str) -> None:
        pfd = _open_dir(os.path.dirname(path))
        try:
            self._ioctl("BTRFS_IOC_SUBVOL_CREATE", path, pfd, BTRFS_IOC_SUBVOL_CREATE,
                        _vol_args(os.path.basename(path)))
        finally:
            os.close(pfd)

    def snapshot(self, source: str, path: str, readonly: bool) -> None:
        sfd = _open_dir(source)
        try:
            pfd = _open_dir(os.path.dirname(path))
            try:
                self._ioctl("BTRFS_IOC_SNAP_CREATE_V2", path, pfd, BTRFS_IOC_SNAP_CREATE_V2,
                            _vol_args_v2(os.path.basename(path), sfd,
                                         BTRFS_SUBVOL_RDONLY if readonly else 0))
            finally:
                os.close(pfd)
        finally:
            os.close(sfd)

    def is_subvolume(self, path: str) -> bool:
        st = os.lstat(path)
        return os.path.isdir(path) and st.st_ino == BTRFS_FIRST_FREE_OBJECTID

    def delete(self, path: str) -> None:
        """Destroy subvolume `path` (read-only ones too); plain directories and files,
        e.g. debris of a failed create, are removed as such."""
        if not os.path.lexists(path):
            return
        if not self.is_subvolume(path):
            remove_tree(path)
            return
        pfd = _open_dir(os.path.dirname(path))
        try:
            self._ioctl("BTRFS_IOC_SNAP_DESTROY", path, pfd, BTRFS_IOC_SNAP_DESTROY,
                        _vol_args(os.path.basename(path)))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        finally:
            os.close(pfd)


class BtrfsSnapshotter(BaseSnapshotter):
    name = "btrfs"

    def __init__(self, root: str, *, subvolumes: BtrfsSubvolumes | None = None) -> None:
        self._sv = subvolumes or BtrfsSubvolumes()
        os.makedirs(root, mode=0o700, exist_ok=True)
        self._sv.check(root)
        super().__init__(root)

    def _storage_dirs(self) -> list[str]:
        return [os.path.join(self.root, d) for d in ("active", "view", "snapshots")]

    def _path(self, id_: int, kind: Kind) -> str:
        d = {Kind.ACTIVE: "active", Kind.VIEW: "view", Kind.COMMITTED: "snapshots"}[kind]
        return os.path.join(self.root, d, str(id_))

    def _destroy(self, path: str) -> None:
        self._sv.delete(path)

    def _make(self, rec: Record, tmp: str) -> None:
        if rec.parent_ids:
            self._sv.snapshot(self._path(rec.parent_ids[0], Kind.COMMITTED), tmp,
                              readonly=rec.kind is Kind.VIEW)
        else:
            self._sv.create(tmp)

    def _commit_storage(self, rec: Record) -> None:
        self._place(self._path(rec.id, Kind.COMMITTED),
                    lambda tmp: self._sv.snapshot(self._path(rec.id, Kind.ACTIVE), tmp,
                                                  readonly=True))

    def _commit_done(self, rec: Record) -> None:
        self._destroy_quietly(self._path(rec.id, Kind.ACTIVE))

    def _tree_dir(self, rec: Record) -> str | None:
        return self._path(rec.id, Kind.COMMITTED)  # a full read-only subvolume

    def _mounts(self, rec: Record) -> list[Mount]:
        return [Mount("bind", self._path(rec.id, rec.kind),
                      ["ro" if rec.kind is Kind.VIEW else "rw", "rbind"])]
