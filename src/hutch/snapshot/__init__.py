"""Snapshotters behind one protocol (prepare/view/commit/remove/mounts): overlay
(default), btrfs, native copy. They return Mount lists; they never mount for the caller.

May import: hutch.mount, hutch.linux, hutch.util, hutch.errors, hutch.config.
"""

from hutch.snapshot.api import Info, Kind, Usage
from hutch.snapshot.base import BaseSnapshotter
from hutch.snapshot.btrfs import BtrfsSnapshotter, BtrfsSubvolumes
from hutch.snapshot.factory import SNAPSHOTTERS, default_snapshotter, snapshotter_for
from hutch.snapshot.native import NativeSnapshotter
from hutch.snapshot.overlay import OverlaySnapshotter

__all__ = [
    "SNAPSHOTTERS", "BaseSnapshotter", "BtrfsSnapshotter", "BtrfsSubvolumes", "Info", "Kind",
    "NativeSnapshotter", "OverlaySnapshotter", "Snapshotter", "Usage", "default_snapshotter",
    "snapshotter_for",
]


def __getattr__(name: str):
    if name == "Snapshotter":  # the Protocol: its module imports typing (~2 ms)
        from hutch.snapshot.protocol import Snapshotter

        return Snapshotter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
