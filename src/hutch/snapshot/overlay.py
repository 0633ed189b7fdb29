"""The overlay snapshotter (the default), after containerd's snapshots/overlay.

Layout under root:  snapshots/<id>/fs    the layer's own files (the upperdir while active)
                    snapshots/<id>/work  overlayfs' workdir (active snapshots only)
A committed layer is just its fs directory; preparing on top of a chain of any length
creates two empty directories and returns one overlay mount (O(1) in image size):
    lowerdir=<parent fs>:<grandparent fs>:... (top first), upperdir=<fs>, workdir=<work>
Whiteouts in a layer are overlayfs' own (a 0:0 character device, "trusted.overlay.opaque"
on an opaque directory): the archive package writes them so when applying into overlay.
"""

from __future__ import annotations

import os

from hutch.errors import InvalidArgument, NotSupported
from hutch.mount import Mount, mount_all, unmount_all
from hutch.snapshot.api import Kind
from hutch.snapshot.base import BaseSnapshotter, DirLayout
from hutch.snapshot.fsutil import supports_d_type
from hutch.snapshot.metadata import Record

# Present when the overlay module knows the inode index feature (Linux >= 4.13).
_INDEX_PARAM = "/sys/module/overlay/parameters/index"


def _escape(path: str) -> str:
    # overlayfs splits lowerdir on ':' (a backslash escapes it); mount(2) data on ','.
    return path.replace("\\", "\\\\").replace(":", "\\:")


class OverlaySnapshotter(DirLayout, BaseSnapshotter):
    """`index_off`: add "index=off" (None: when the kernel knows the option, as
    containerd does; index=on would tie every layer to one upper fs and refuse reuse of
    a lower layer by another mount). `check_d_type`: refuse a root whose file system
    does not report d_type (overlayfs would show whiteouts as files)."""

    name = "overlay"

    def __init__(self, root: str, *, index_off: bool | None = None,
                 check_d_type: bool = True) -> None:
        if "," in os.path.abspath(root):
            raise InvalidArgument(f"overlay snapshotter root {root!r} contains ','",
                                  hint="mount(2) option data is ','-separated; pick "
                                       "another root", path=root)
        super().__init__(root)
        if check_d_type and not supports_d_type(self.root):
            raise NotSupported(
                f"overlay snapshotter: the file system of {self.root} does not support "
                "d_type", hint="use xfs with ftype=1, ext4 or btrfs, or the native "
                "snapshotter", path=self.root)
        self._index_off = os.path.exists(_INDEX_PARAM) if index_off is None else index_off

    @staticmethod
    def check_supported(root: str) -> None:
        """Raise NotSupported unless overlayfs can be mounted with an upper directory on
        `root`'s file system here (a test mount, as containerd's overlayutils.Supported).
        Needs root (CAP_SYS_ADMIN)."""
        os.makedirs(root, mode=0o700, exist_ok=True)
        if not supports_d_type(root):
            raise NotSupported(f"overlay: {root} does not support d_type", path=root)
        import tempfile  # once per store: not on every start's import path

        td = tempfile.mkdtemp(prefix="overlay-check-", dir=root)
        try:
            for d in ("lower1", "lower2", "upper", "work", "merged"):
                os.mkdir(os.path.join(td, d))
            m = Mount("overlay", "overlay", [
                f"lowerdir={td}/lower2:{td}/lower1", f"upperdir={td}/upper",
                f"workdir={td}/work"])
            merged = os.path.join(td, "merged")
            try:
                mount_all([m], merged)
            except Exception as e:
                raise NotSupported(f"overlay: a test mount on {root} failed: {e}",
                                   hint="modprobe overlay; overlayfs needs root and an "
                                        "upper file system that is not itself overlayfs",
                                   path=root) from e
            unmount_all(merged, detach=True)
        finally:
            import shutil  # here: with bz2 and lzma it costs ~1.5 ms at start-up

            shutil.rmtree(td, ignore_errors=True)

    @classmethod
    def supported(cls, root: str) -> bool:
        try:
            cls.check_supported(root)
            return True
        except (NotSupported, OSError):
            return False

    # -- layout ---------------------------------------------------------------------------
    def _make(self, rec: Record, tmp: str) -> None:
        os.mkdir(tmp, 0o700)
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs, 0o755)
        if rec.kind is Kind.ACTIVE:
            os.mkdir(os.path.join(tmp, "work"), 0o711)
        if rec.parent_ids:
            # The merged root takes the upper directory's owner: keep the parent's (so a
            # user-namespaced image with a remapped root stays owned by its root).
            st = os.stat(self._fs(rec.parent_ids[0]))
            os.chown(fs, st.st_uid, st.st_gid)

    def _tree_dir(self, rec: Record) -> str | None:
        # A layer's fs holds only its own changes: the whole tree for a base layer alone.
        return None if rec.parent_ids else self._fs(rec.id)

    def _base_options(self) -> list[str]:
        return ["index=off"] if self._index_off else []

    def _mounts(self, rec: Record) -> list[Mount]:
        fs = self._fs(rec.id)
        if not rec.parent_ids:
            # No lower layer: overlayfs needs one, so a bind mount of the directory.
            return [Mount("bind", fs, ["ro" if rec.kind is Kind.VIEW else "rw", "rbind"])]
        lower = "lowerdir=" + ":".join(_escape(self._fs(i)) for i in rec.parent_ids)
        if rec.kind is Kind.VIEW:
            if len(rec.parent_ids) == 1:
                return [Mount("bind", self._fs(rec.parent_ids[0]), ["ro", "rbind"])]
            # Only lower directories: overlayfs is read-only by itself; "ro" says so.
            return [Mount("overlay", "overlay", [*self._base_options(), "ro", lower])]
        work = os.path.join(self._path(rec.id, rec.kind), "work")
        return [Mount("overlay", "overlay", [
            *self._base_options(), f"workdir={work}", f"upperdir={fs}", lower])]
