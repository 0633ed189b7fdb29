"""The native snapshotter: every snapshot is a full copy of its parent's tree, mounted by
bind mount. Slow to prepare (O(size of the parent)), but works on any file system and is
the reference the others are tested against (containerd's snapshots/native).

Layout under root: snapshots/<id>/fs. Data is copied by reflink or copy_file_range when
the file system can (instant on btrfs and xfs reflink=1).
"""

from __future__ import annotations

import os

from hutch.mount import Mount
from hutch.snapshot.api import Kind
from hutch.snapshot.base import BaseSnapshotter, DirLayout
from hutch.snapshot.fsutil import copy_tree
from hutch.snapshot.metadata import Record


class NativeSnapshotter(DirLayout, BaseSnapshotter):
    name = "native"

    def _make(self, rec: Record, tmp: str) -> None:
        os.mkdir(tmp, 0o700)
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs, 0o755)
        if rec.parent_ids:
            copy_tree(self._fs(rec.parent_ids[0]), fs)

    def _tree_dir(self, rec: Record) -> str | None:
        return self._fs(rec.id)  # every snapshot is a full copy

    def _mounts(self, rec: Record) -> list[Mount]:
        return [Mount("bind", self._fs(rec.id),
                      ["ro" if rec.kind is Kind.VIEW else "rw", "rbind"])]
