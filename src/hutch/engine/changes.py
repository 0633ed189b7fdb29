"""`hutch diff`: what a container changed in its root filesystem, as docker diff lists it.

Each change is (kind, path): "A" added, "C" changed, "D" deleted, sorted by path (plain
string order, as moby's changesByPath). Like docker, the directories above a change are
listed as "C" (moby pkg/archive/changes.go adds the parent of every change).

Overlay (the container's snapshot is an upper directory over the image's layers): read
the upper directory, never the merged mount. A whiteout (0:0 character device) is "D"; a
directory marked opaque (trusted.overlay.opaque=y, or user.overlay.opaque in userxattr
mode) hides what the layers below had in it, so those entries are "D"; anything else in
the upper directory is "C" when the lower layers (merged, honouring their own whiteouts
and opaque directories) had that path, else "A". A directory that overlay only copied up
to hold a change below it is not itself a change unless its mode or owner differ.
redirect_dir and metacopy upper directories (renamed directories, metadata-only
copy-ups) cannot be read this way and are refused; hutch never enables them.

Native and btrfs (every snapshot a full tree): compare the container's tree with its
parent's, as containerd's continuity does (hutch.archive.diff.same_stat: mode, owner,
device numbers, and for non-directories size and mtime; symlink targets; capabilities).

Everything reads through a small TreeReader (DirTree for real directories, never
following a symlink), so unit tests can use in-memory trees. `hide` leaves out the
mount points the runtime made (added empty stubs such as /proc or /etc/hosts, and the
destinations of volumes and binds), which docker keeps in its init layer instead.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Protocol

from hutch.errors import FailedPrecondition, NotSupported
from hutch.linux import libc
from hutch.util.record import record

# Mount points the runtime creates in the root filesystem when the image lacks them
# (engine.spec's default mounts and the files the engine binds over).
DEFAULT_MOUNTPOINTS = ("/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname",
                       "/etc/resolv.conf", "/dev/init")
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_UNREADABLE = ("trusted.overlay.redirect", "user.overlay.redirect",
               "trusted.overlay.metacopy", "user.overlay.metacopy")


@record(frozen=True)
class Node:
    """One entry of a tree, as lstat saw it (field names as os.stat_result's, so
    hutch.archive.diff.same_stat takes it)."""

    st_mode: int
    st_uid: int = 0
    st_gid: int = 0
    st_size: int = 0
    st_mtime_ns: int = 0
    st_rdev: int = 0
    link: str = ""             # a symlink's target
    opaque: bool = False       # overlay: this directory hides the lower layers' content
    caps: bytes | None = None  # security.capability of a regular file
    unreadable: str = ""       # overlay redirect/metacopy xattr name, if any

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st_mode)

    @property
    def is_whiteout(self) -> bool:
        return stat.S_ISCHR(self.st_mode) and self.st_rdev == 0


class TreeReader(Protocol):
    """A directory tree addressed by relative paths ("a/b"; "" is the root)."""

    def stat(self, rel: str) -> Node | None:
        """The entry at `rel`, never following a symlink (in any component); None if
        there is none."""
        ...

    def names(self, rel: str) -> list[str]:
        """The names in directory `rel` ([] if it is not a directory)."""
        ...


class DirTree:
    """A real directory. Each parent is opened with openat2(RESOLVE_BENEATH |
    RESOLVE_NO_SYMLINKS), so a running container that swaps a directory for a symlink
    cannot make us look outside the tree."""

    _RESOLVE = libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS

    def __init__(self, root: str) -> None:
        self.root = root
        self._fd: int | None = None

    def _root_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self, rel: str, flags: int) -> int | None:
        try:
            return libc.openat2(self._root_fd(), rel or ".", flags | os.O_DIRECTORY,
                                resolve=self._RESOLVE)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
                return None
            raise

    def stat(self, rel: str) -> Node | None:
        parent, _, base = rel.rpartition("/")
        if not base:
            st = os.fstat(self._root_fd())
            return Node(st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
        pfd = self._open(parent, os.O_PATH)
        if pfd is None:
            return None
        try:
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            path = f"/proc/self/fd/{pfd}/{base}"
            try:
                xattrs = os.listxattr(path, follow_symlinks=False)
            except OSError:
                xattrs = []
            mode = st.st_mode
            link = os.readlink(base, dir_fd=pfd) if stat.S_ISLNK(mode) else ""
            opaque = stat.S_ISDIR(mode) and any(
                n in xattrs and _getxattr(path, n) == b"y" for n in _OPAQUE)
            caps = None
            if stat.S_ISREG(mode) and "security.capability" in xattrs:
                caps = _getxattr(path, "security.capability")
            odd = next((n for n in _UNREADABLE if n in xattrs), "")
            return Node(mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                        st.st_rdev, link, opaque, caps, odd)
        finally:
            os.close(pfd)

    def names(self, rel: str) -> list[str]:
        fd = self._open(rel, os.O_RDONLY)
        if fd is None:
            return []
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)


class EmptyTree:
    """The parent of a snapshot that has none."""

    def stat(self, rel: str) -> Node | None:
        return Node(stat.S_IFDIR | 0o755) if not rel else None

    def names(self, rel: str) -> list[str]:
        return []


def _getxattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _same(old: Node, new: Node) -> bool:
    from hutch.archive.diff import same_stat

    if not same_stat(old, new):
        return False
    return old.link == new.link and old.caps == new.caps


# -- overlay -----------------------------------------------------------------------------

class LowerView:
    """The merged view of overlay lower layers (top first), as overlayfs shows it:
    the topmost layer that has a path wins; a whiteout, a non-directory or an opaque
    directory in a layer hides the same path (or what is below it) in the layers under
    it."""

    def __init__(self, layers: list[TreeReader]) -> None:
        self.layers = layers
        self._dirs: dict[tuple[int, str], Node | None] = {}  # parents, looked up often

    def _parent(self, i: int, rel: str) -> Node | None:
        key = (i, rel)
        if key not in self._dirs:
            self._dirs[key] = self.layers[i].stat(rel)
        return self._dirs[key]

    def stat(self, rel: str) -> Node | None:
        parts = rel.split("/") if rel else []
        for index, layer in enumerate(self.layers):
            hidden = False
            missing = False
            for i in range(1, len(parts)):
                node = self._parent(index, "/".join(parts[:i]))
                if node is None:
                    missing = True
                    break
                if not node.is_dir:
                    return None  # a whiteout or a file hides the whole path below
                hidden = hidden or node.opaque
            if not missing:
                node = layer.stat(rel)
                if node is not None:
                    return None if node.is_whiteout else node
            if hidden:
                return None
        return None

    def names(self, rel: str) -> list[str]:
        candidates: set[str] = set()
        for layer in self.layers:
            candidates.update(layer.names(rel))
        return sorted(n for n in candidates if self.stat(_join(rel, n)) is not None)


def overlay_changes(upper: TreeReader, lowers: list[TreeReader]) -> dict[str, str]:
    """{relative path: kind} of an overlay upper directory over `lowers` (top first),
    without the parents rule (see finish())."""
    lower = LowerView(lowers)
    out: dict[str, str] = {}

    def walk(rel: str) -> None:
        for name in sorted(upper.names(rel)):
            r = _join(rel, name)
            node = upper.stat(r)
            if node is None:
                continue
            if node.unreadable:
                raise NotSupported(f"/{r} carries {node.unreadable}: hutch cannot read "
                                   "changes from overlay redirect_dir or metacopy upper "
                                   "directories", hint="mount overlay with "
                                   "redirect_dir=off,metacopy=off")
            old = lower.stat(r)
            if node.is_whiteout:
                if old is not None:
                    out[r] = "D"
                continue
            if old is None:
                out[r] = "A"
            elif not (node.is_dir and old.is_dir) or not _same(old, node):
                out[r] = "C"
            if node.is_dir:
                if node.opaque and old is not None and old.is_dir:
                    here = set(upper.names(r))
                    for gone in lower.names(r):
                        if gone not in here:
                            out[_join(r, gone)] = "D"
                walk(r)

    walk("")
    return out


# -- full trees --------------------------------------------------------------------------

def tree_changes(old: TreeReader, new: TreeReader) -> dict[str, str]:
    """{relative path: kind} between two full trees, without the parents rule."""
    out: dict[str, str] = {}

    def added(rel: str) -> None:
        for name in sorted(new.names(rel)):
            r = _join(rel, name)
            out[r] = "A"
            node = new.stat(r)
            if node is not None and node.is_dir:
                added(r)

    def walk(rel: str) -> None:
        new_names = set(new.names(rel))
        old_names = set(old.names(rel))
        for name in sorted(new_names | old_names):
            r = _join(rel, name)
            n = new.stat(r) if name in new_names else None
            o = old.stat(r) if name in old_names else None
            if n is None:
                if o is not None:
                    out[r] = "D"
                continue
            if o is None:
                out[r] = "A"
                if n.is_dir:
                    added(r)
                continue
            if not _same(o, n):
                out[r] = "C"
            if n.is_dir and o.is_dir:
                walk(r)
            elif n.is_dir:
                added(r)

    walk("")
    return out


def finish(found: dict[str, str], hide: Iterable[str] = ()) -> list[tuple[str, str]]:
    """docker's list: the `hide` paths that were added (mount points) left out with
    what is below them, every parent of a change listed as "C", sorted by path."""
    out = dict(found)
    for h in hide:
        rel = h.strip("/")
        if rel and out.get(rel) == "A":
            prefix = rel + "/"
            for p in [p for p in out if p == rel or p.startswith(prefix)]:
                del out[p]
    for p in list(out):
        parent = p.rpartition("/")[0]
        while parent and parent not in out:
            out[parent] = "C"
            parent = parent.rpartition("/")[0]
    return sorted(((kind, "/" + p) for p, kind in out.items()), key=lambda c: c[1])


# -- snapshots ---------------------------------------------------------------------------

@record
class SnapshotDiff:
    """How a container snapshot relates to its parent, found from its mounts.

    overlay: `upper` is the upper directory, `lowers` the lower ones (top first).
    full trees: `upper` is the snapshot's directory, `parent` its parent's (None when it
    has no parent)."""

    overlay: bool
    upper: str
    lowers: list[str]
    parent: str | None = None


def split_lowerdir(value: str) -> list[str]:
    """overlayfs' lowerdir list: ':'-separated, '\\' escapes (snapshot.overlay)."""
    out, cur, it = [], [], iter(value)
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p for p in out if p]


def _committed_dir(snapshotter, name: str) -> str | None:
    """The full tree of committed snapshot `name`, when the snapshotter has one to read
    in place (BaseSnapshotter.committed_dir); None for one that cannot say."""
    committed_dir = getattr(snapshotter, "committed_dir", None)
    return committed_dir(name) if committed_dir is not None else None


@contextmanager
def snapshot_diff(snapshotter, key: str, mounts=None) -> Iterator[SnapshotDiff]:
    """The SnapshotDiff of active snapshot `key` (`mounts`: its mounts, if the caller
    has them). For a full-tree parent the snapshotter cannot name, a temporary view of
    it is made and removed afterwards."""
    if mounts is None:
        mounts = snapshotter.mounts(key)
    if len(mounts) != 1:
        raise NotSupported(f"snapshot {key!r}: {len(mounts)} mounts; expected one")
    m = mounts[0]
    if m.type == "overlay":
        upper = m.option("upperdir")
        if upper is None:
            raise FailedPrecondition(f"snapshot {key!r} is read-only: nothing changed")
        yield SnapshotDiff(True, upper, split_lowerdir(m.option("lowerdir") or ""))
        return
    if m.type != "bind":
        raise NotSupported(f"snapshot {key!r}: cannot diff a {m.type!r} mount")
    parent = snapshotter.stat(key).parent
    if parent is None:
        yield SnapshotDiff(False, m.source, [], None)
        return
    path = _committed_dir(snapshotter, parent)
    if path is not None:
        yield SnapshotDiff(False, m.source, [], path)
        return
    view = f"diff-{uuid.uuid4().hex[:12]} {parent}"
    vm = snapshotter.view(view, parent)
    try:
        if len(vm) != 1 or vm[0].type != "bind":
            raise NotSupported(f"snapshot {key!r}: cannot read its parent {parent!r}")
        yield SnapshotDiff(False, m.source, [], vm[0].source)
    finally:
        snapshotter.remove(view)


OpenTree = Callable[[str], TreeReader]


def _open_all(stack: ExitStack, open_tree: OpenTree, paths: list[str]) -> list[TreeReader]:
    trees = []
    for p in paths:
        tree = open_tree(p)
        close = getattr(tree, "close", None)
        if close is not None:
            stack.callback(close)
        trees.append(tree)
    return trees


def _readers(stack: ExitStack, d: SnapshotDiff, open_tree: OpenTree
             ) -> tuple[TreeReader, TreeReader | list[TreeReader]]:
    """(upper, lowers) for overlay, (new, old) for full trees."""
    if d.overlay:
        upper, *lowers = _open_all(stack, open_tree, [d.upper, *d.lowers])
        return upper, lowers
    if d.parent is None:
        return _open_all(stack, open_tree, [d.upper])[0], EmptyTree()
    new, old = _open_all(stack, open_tree, [d.upper, d.parent])
    return new, old


def _found(d: SnapshotDiff, open_tree: OpenTree) -> dict[str, str]:
    with ExitStack() as stack:
        upper, other = _readers(stack, d, open_tree)
        if isinstance(other, list):
            return overlay_changes(upper, other)
        return tree_changes(other, upper)


def changes(snapshotter, key: str, *, hide: Iterable[str] = (), mounts=None,
            open_tree: OpenTree = DirTree) -> list[tuple[str, str]]:
    """docker diff of active snapshot `key`: [(kind, "/path")], sorted by path."""
    with snapshot_diff(snapshotter, key, mounts) as d:
        return finish(_found(d, open_tree), hide)


def added_paths(d: SnapshotDiff, paths: Iterable[str], *,
                open_tree: OpenTree = DirTree) -> list[str]:
    """Which of `paths` (absolute, in the container) the snapshot added: present now,
    absent from its parent. Commit leaves these mount points out of the layer."""
    out = []
    with ExitStack() as stack:
        upper, other = _readers(stack, d, open_tree)
        lower = LowerView(other) if isinstance(other, list) else other
        for p in paths:
            rel = posixpath.normpath("/" + p).strip("/")
            if not rel:
                continue
            node = upper.stat(rel)
            if node is None or node.is_whiteout or lower.stat(rel) is not None:
                continue
            out.append("/" + rel)
    return out


def mountpoints(config: dict) -> list[str]:
    """The paths the runtime mounts over in a container of this record's config (docker
    keeps their stubs in the init layer, so diff and commit never see them)."""
    out = list(DEFAULT_MOUNTPOINTS)
    for m in config.get("mounts") or []:
        dest = m.get("destination") if isinstance(m, dict) else None
        if isinstance(dest, str) and dest.startswith("/"):
            out.append(posixpath.normpath(dest))
    return sorted(set(out))
