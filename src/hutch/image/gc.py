"""Garbage collection: unreferenced blobs and unused snapshots.

Blobs go through metadata.collect (under the metadata write lock, so a pull's lease can
never race it). Snapshots are removed children first: a snapshotter refuses to remove a
parent that still has children, so we sweep until nothing more goes.
"""

from __future__ import annotations

from hutch.errors import FailedPrecondition, NotFound


class PruneResult:
    def __init__(self, blobs: list[str], bytes_freed: int, snapshots: list[str]) -> None:
        self.blobs = blobs
        self.bytes_freed = bytes_freed
        self.snapshots = snapshots


def prune(svc) -> PruneResult:
    from hutch.image.metadata import collect

    result = collect(svc.content, svc.meta)
    removed: list[str] = []
    name = svc.snapshotter_name
    pending = [s.chain_id for s in svc.meta.unused_snapshots(name)]
    while pending:
        progress = False
        for chain_id in list(pending):
            try:
                svc.snapshotter.remove(chain_id)
            except NotFound:
                pass
            except FailedPrecondition:
                continue  # a child is still there; next sweep
            svc.meta.remove_snapshot(chain_id, name)
            pending.remove(chain_id)
            removed.append(chain_id)
            progress = True
        if not progress:
            break
    return PruneResult(result.removed, result.bytes_freed, removed)
