"""Pick a snapshotter by name, or the best one this host supports."""

from __future__ import annotations

from hutch.errors import InvalidArgument
from hutch.snapshot.base import BaseSnapshotter
from hutch.snapshot.btrfs import BtrfsSnapshotter
from hutch.snapshot.native import NativeSnapshotter
from hutch.snapshot.overlay import OverlaySnapshotter

SNAPSHOTTERS: dict[str, type[BaseSnapshotter]] = {
    "overlay": OverlaySnapshotter,
    "overlayfs": OverlaySnapshotter,
    "btrfs": BtrfsSnapshotter,
    "native": NativeSnapshotter,
}


def snapshotter_for(name: str, root: str, *, check: bool = True) -> BaseSnapshotter:
    """The snapshotter called `name` ("overlay", "btrfs", "native") rooted at `root`.
    Raises NotSupported if this host cannot run it there (`check=False`: trust that it
    can, the store was made with it)."""
    cls = SNAPSHOTTERS.get(name)
    if cls is None:
        raise InvalidArgument(f"unknown snapshotter {name!r}",
                              hint="choose one of overlay, btrfs, native", name=name)
    if cls is OverlaySnapshotter:
        if check:
            OverlaySnapshotter.check_supported(root)
        else:  # its d_type probe (5 file operations) was made with the store
            return OverlaySnapshotter(root, check_d_type=False)
    return cls(root)


def default_snapshotter(root: str) -> BaseSnapshotter:
    """overlay if the kernel can mount it on `root`'s file system, else native."""
    if OverlaySnapshotter.supported(root):
        return OverlaySnapshotter(root)
    return NativeSnapshotter(root)
