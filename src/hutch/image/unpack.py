"""Unpack an image's layers into a chain of committed snapshots (containerd's unpacker).

Each layer becomes a snapshot named by its chain id (image-spec config.md#layer-chainid),
so images sharing a base share its snapshots and a layer is unpacked once. A layer is
applied into an active snapshot on top of its parent and committed under the chain id;
for overlay the active snapshot is mounted, so a whiteout in the tar becomes the
kernel's own whiteout in the upper directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hutch.errors import AlreadyExists, InvalidArgument
from hutch.oci.digest import chain_ids

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import BinaryIO


class LayerToUnpack:
    """One layer: how to open its (compressed) blob, and the diff_id the config promises."""

    def __init__(self, open_blob: Callable[[], BinaryIO], diff_id: str,
                 digest: str = "") -> None:
        self.open_blob = open_blob
        self.diff_id = diff_id
        self.digest = digest


def unpack(snapshotter, layers: list[LayerToUnpack], *, work_dir: str,
           apply=None, mount_all=None, unmount=None) -> tuple[str, list[str]]:
    """Make sure every layer's snapshot exists; return (top chain id, warnings).

    `apply`, `mount_all` and `unmount` default to hutch.archive / hutch.mount and are
    injectable for tests.
    """
    if apply is None:
        from hutch.archive.apply import apply_layer as apply
    if mount_all is None or unmount is None:
        from hutch.mount import mount_all as _mount_all
        from hutch.mount import unmount as _unmount

        mount_all = mount_all or _mount_all
        unmount = unmount or _unmount
    from hutch.errors import NotFound

    warnings: list[str] = []
    ids = chain_ids(layer.diff_id for layer in layers)
    parent: str | None = None
    for layer, chain_id in zip(layers, ids, strict=True):
        try:
            snapshotter.stat(chain_id)
            parent = chain_id
            continue
        except NotFound:
            pass
        key = f"{_owner_tag()}-{os.urandom(4).hex()} {chain_id}"
        mounts = snapshotter.prepare(key, parent)
        try:
            warnings += _apply_into(mounts, layer, work_dir, apply, mount_all, unmount)
            try:
                snapshotter.commit(chain_id, key)
            except AlreadyExists:
                # Another pull committed the same layer meanwhile: use theirs.
                snapshotter.remove(key)
        except BaseException:
            try:
                snapshotter.remove(key)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        parent = chain_id
    if parent is None:
        raise InvalidArgument("image has no layers to unpack")
    return parent, warnings


def _apply_into(mounts, layer: LayerToUnpack, work_dir: str, apply, mount_all,
                unmount) -> list[str]:
    # A lone rw bind (a first layer, or native/btrfs) is just a directory: no mount needed.
    if len(mounts) == 1 and mounts[0].type == "bind" and not mounts[0].readonly:
        return _apply(layer, mounts[0].source, apply)
    os.makedirs(work_dir, exist_ok=True)
    import tempfile  # (and uuid/platform with it) only when a layer is unpacked

    target = tempfile.mkdtemp(prefix=f"unpack-{_owner_tag()[8:]}-", dir=work_dir)
    try:
        mount_all(mounts, target)
        try:
            return _apply(layer, target, apply)
        finally:
            unmount(target)
    finally:
        os.rmdir(target)


def _owner_tag() -> str:
    """"extract-<pid>.<start time>": names what a pull creates while it unpacks, so a
    later pull can tell a dead one's leftovers (SIGKILL mid-unpack) from a live one's."""
    return f"extract-{os.getpid()}.{_start_time(os.getpid())}"


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2:].split()[19])


def _owner_dead(tag: str) -> bool:
    """True when the pid.start in `tag` names no live process (or another one now)."""
    pid_s, _, start_s = tag.partition(".")
    if not pid_s.isdigit():
        return False
    start = _start_time(int(pid_s))
    return start is None or str(start) != start_s


def clean_stale(snapshotter, work_dir: str, *, unmount=None) -> list[str]:
    """Remove what pulls killed mid-unpack left: their mount points under `work_dir`
    (unmounted first) and their active extract-* snapshots. Returns what went."""
    if unmount is None:
        from hutch.mount import unmount_all as unmount
    gone: list[str] = []
    try:
        names = os.listdir(work_dir)
    except FileNotFoundError:
        names = []
    for name in names:
        parts = name.split("-")
        if len(parts) >= 2 and parts[0] == "unpack" and _owner_dead(parts[1]):
            path = os.path.join(work_dir, name)
            unmount(path, detach=True)
            try:
                os.rmdir(path)
            except OSError:
                continue
            gone.append(path)
    for info in list(snapshotter.walk()):
        key = info.name
        if not key.startswith("extract-") or info.kind != "active":
            continue
        tag = key.split(" ", 1)[0].removeprefix("extract-").rsplit("-", 1)[0]
        if _owner_dead(tag):
            try:
                snapshotter.remove(key)
                gone.append(key)
            except Exception:  # noqa: BLE001 - best effort; the next pull tries again
                continue
    return gone


def _apply(layer: LayerToUnpack, root: str, apply) -> list[str]:
    with layer.open_blob() as blob:
        result = apply(blob, root, diff_id=layer.diff_id)
    return list(getattr(result, "warnings", []) or [])
