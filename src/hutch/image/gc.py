"""Garbage collection: unreferenced blobs and unused snapshots.

Blobs go through collect() (under the metadata write lock, so a pull's lease can
never race it). Snapshots are removed children first: a snapshotter refuses to remove a
parent that still has children, so we sweep until nothing more goes.
"""

from __future__ import annotations

from hutch.errors import FailedPrecondition, NotFound
from hutch.util.record import record

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from hutch.content import LocalContentStore
    from hutch.image.metadata import MetadataStore


@record(frozen=True)
class GcResult:
    removed: list[str]
    bytes_freed: int


def garbage(store: LocalContentStore, meta: MetadataStore) -> list[str]:
    """Blobs in `store` nothing references (sorted). Deleting them is the caller's call:
    a blob written after this returns may still need a lease — see collect()."""
    # Walk before reading the roots: a blob committed after the walk is not a candidate,
    # and one committed before it had its lease added before the walk.
    on_disk = list(store.walk())
    live = meta.gc_roots()
    return sorted(d for d in on_disk if d not in live)


def collect(store: LocalContentStore, meta: MetadataStore) -> GcResult:
    """Delete unreferenced blobs and forget unreachable metadata, holding the metadata
    write lock throughout so no pull can add a lease in between."""
    removed: list[str] = []
    freed = 0
    with meta.transaction():
        meta.expire_leases()
        live = meta.gc_roots()
        for digest in list(store.walk()):
            if digest not in live:
                freed += store.delete(digest)
                removed.append(digest)
        meta.forget_unreferenced(live)
    return GcResult(sorted(removed), freed)


class PruneResult:
    def __init__(self, blobs: list[str], bytes_freed: int, snapshots: list[str]) -> None:
        self.blobs = blobs
        self.bytes_freed = bytes_freed
        self.snapshots = snapshots


def prune(svc) -> PruneResult:
    svc.clean_stale_unpacks()
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
