"""hutch.snapshot without root: the metadata state machine (same rules for every
snapshotter), the mounts each one returns, crash debris, and the native tree copy.

btrfs runs on a fake BtrfsSubvolumes (plain directories), injected through its
constructor; overlay and native need no privileges until something mounts their output.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from hutch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, NotSupported
from hutch.mount import Mount
from hutch.snapshot import (
    BaseSnapshotter,
    BtrfsSnapshotter,
    BtrfsSubvolumes,
    Kind,
    NativeSnapshotter,
    OverlaySnapshotter,
    Snapshotter,
    snapshotter_for,
)
from hutch.snapshot.fsutil import copy_tree, disk_usage, remove_tree, supports_d_type

pytestmark = pytest.mark.unit


class FakeSubvolumes(BtrfsSubvolumes):
    """Subvolumes as plain directories; snapshot = copy. `fail_snapshots` makes the next
    snapshot calls raise, to test roll-back."""

    def __init__(self) -> None:
        self.fail_snapshots = 0
        self.calls: list[tuple] = []

    def check(self, root: str) -> None:
        pass

    def create(self, path: str) -> None:
        self.calls.append(("create", path))
        os.mkdir(path)

    def snapshot(self, source: str, path: str, readonly: bool) -> None:
        self.calls.append(("snapshot", source, path, readonly))
        if self.fail_snapshots:
            self.fail_snapshots -= 1
            os.mkdir(path)  # half made, as a real failure might leave it
            raise OSError(28, "injected ENOSPC", path)
        shutil.copytree(source, path, symlinks=True)

    def is_subvolume(self, path: str) -> bool:
        return False

    def delete(self, path: str) -> None:
        self.calls.append(("delete", path))
        if os.path.lexists(path):
            shutil.rmtree(path)


def make(kind: str, root: Path) -> BaseSnapshotter:
    if kind == "overlay":
        return OverlaySnapshotter(str(root), index_off=True)
    if kind == "native":
        return NativeSnapshotter(str(root))
    return BtrfsSnapshotter(str(root), subvolumes=FakeSubvolumes())


@pytest.fixture(params=["overlay", "native", "btrfs-fake"])
def sn(request: pytest.FixtureRequest, tmp_path: Path):
    s = make(request.param, tmp_path / "root")
    yield s
    s.close()


def writable_dir(mounts: list[Mount]) -> str:
    """Where a test can write into an active snapshot without mounting it."""
    [m] = mounts
    return m.option("upperdir") or m.source


def chain(sn: BaseSnapshotter, n: int, prefix: str = "layer") -> str:
    parent = None
    for i in range(1, n + 1):
        sn.prepare(f"{prefix}-{i}-active", parent)
        sn.commit(f"{prefix}-{i}", f"{prefix}-{i}-active")
        parent = f"{prefix}-{i}"
    return parent or ""


# -- the state machine, for every snapshotter ----------------------------------------------

def test_every_snapshotter_satisfies_the_protocol(sn: BaseSnapshotter) -> None:
    assert isinstance(sn, Snapshotter)


def test_prepare_makes_an_active_snapshot_and_commit_turns_its_key_into_a_name(sn) -> None:
    sn.prepare("k", labels={"a": "b"})
    info = sn.stat("k")
    assert (info.kind, info.name, info.parent, info.labels) == (Kind.ACTIVE, "k", None, {"a": "b"})
    sn.commit("base", "k", labels={"c": "d"})
    with pytest.raises(NotFound, match="'k'"):
        sn.stat("k")
    info = sn.stat("base")
    assert info.kind is Kind.COMMITTED and info.labels == {"a": "b", "c": "d"}
    assert info.created <= info.updated


def test_children_record_their_parent(sn) -> None:
    chain(sn, 2)
    sn.prepare("top", "layer-2")
    assert sn.stat("top").parent == "layer-2" and sn.stat("layer-2").parent == "layer-1"
    assert [(i.name, i.kind) for i in sn.walk()] == [
        ("layer-1", Kind.COMMITTED), ("layer-2", Kind.COMMITTED), ("top", Kind.ACTIVE)]


def test_unknown_keys_are_not_found(sn) -> None:
    for call in (lambda: sn.stat("nope"), lambda: sn.mounts("nope"),
                 lambda: sn.commit("x", "nope"), lambda: sn.remove("nope"),
                 lambda: sn.usage("nope")):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound, match="parent snapshot 'nope'"):
        sn.prepare("k", "nope")
    assert list(sn.walk()) == []


def test_keys_and_names_share_one_namespace(sn) -> None:
    sn.prepare("a")
    with pytest.raises(AlreadyExists):
        sn.prepare("a")
    with pytest.raises(AlreadyExists):
        sn.view("a")
    sn.commit("base", "a")
    with pytest.raises(AlreadyExists):
        sn.prepare("base")
    sn.prepare("b", "base")
    with pytest.raises(AlreadyExists):
        sn.commit("base", "b")
    assert sn.stat("b").kind is Kind.ACTIVE  # a refused commit leaves it as it was


def test_only_active_snapshots_can_be_committed(sn) -> None:
    chain(sn, 1)
    sn.view("v", "layer-1")
    with pytest.raises(FailedPrecondition, match="view"):
        sn.commit("x", "v")
    with pytest.raises(FailedPrecondition, match="committed"):
        sn.commit("x", "layer-1")


def test_only_committed_snapshots_can_be_parents(sn) -> None:
    sn.prepare("a")
    with pytest.raises(FailedPrecondition, match="not committed"):
        sn.prepare("b", "a")
    assert [i.name for i in sn.walk()] == ["a"]


def test_removing_a_parent_with_children_is_refused(sn) -> None:
    chain(sn, 2)
    sn.prepare("top", "layer-2")
    for key in ("layer-1", "layer-2"):
        with pytest.raises(FailedPrecondition, match="child"):
            sn.remove(key)
    sn.remove("top")
    sn.remove("layer-2")
    sn.remove("layer-1")
    assert list(sn.walk()) == []
    assert sn.cleanup() == []  # nothing left on disk either


def test_committed_snapshots_have_no_mounts(sn) -> None:
    chain(sn, 1)
    with pytest.raises(FailedPrecondition, match="committed"):
        sn.mounts("layer-1")


def test_mounts_repeats_what_prepare_returned(sn) -> None:
    chain(sn, 2)
    m = sn.prepare("top", "layer-2")
    assert sn.mounts("top") == m
    v = sn.view("v", "layer-2")
    assert sn.mounts("v") == v and all(x.readonly for x in v)


def test_committed_dir_holds_the_whole_tree_where_the_snapshotter_keeps_one(sn) -> None:
    sn.prepare("a-active")
    Path(writable_dir(sn.mounts("a-active")), "base").write_text("1")
    sn.commit("a", "a-active")
    sn.prepare("b-active", "a")
    Path(writable_dir(sn.mounts("b-active")), "top").write_text("2")
    sn.commit("b", "b-active")
    assert sorted(os.listdir(sn.committed_dir("a"))) == ["base"]
    b = sn.committed_dir("b")
    if isinstance(sn, OverlaySnapshotter):
        assert b is None  # its layer holds only "top": no whole tree to read
    else:
        assert sorted(os.listdir(b)) == ["base", "top"]
    sn.prepare("c", "b")
    with pytest.raises(FailedPrecondition, match="not committed"):
        sn.committed_dir("c")
    with pytest.raises(NotFound):
        sn.committed_dir("nope")


def test_bad_keys_and_labels_are_invalid(sn) -> None:
    with pytest.raises(InvalidArgument):
        sn.prepare("")
    with pytest.raises(InvalidArgument):
        sn.prepare("a\x00b")
    with pytest.raises(InvalidArgument):
        sn.prepare("a", labels={"x": 1})  # type: ignore[dict-item]
    assert list(sn.walk()) == []


def test_files_written_into_an_active_snapshot_are_counted_and_frozen_on_commit(sn) -> None:
    d = writable_dir(sn.prepare("a"))
    Path(d, "f").write_bytes(b"x" * 10000)
    before = sn.usage("a")
    assert before.inodes == 2 and before.size >= 10000
    sn.commit("base", "a")
    assert sn.usage("base") == before


def test_metadata_survives_a_reopen(sn, tmp_path: Path) -> None:
    chain(sn, 2)
    sn.prepare("top", "layer-2")
    root = sn.root
    sn.close()
    kind = {"overlay": "overlay", "native": "native"}.get(type(sn).name, "btrfs-fake")
    again = make(kind, Path(root))
    try:
        assert [i.name for i in again.walk()] == ["layer-1", "layer-2", "top"]
        assert again.stat("top").parent == "layer-2"
        again.prepare("top2", "layer-2")
    finally:
        again.close()


def test_cleanup_removes_crash_debris_and_keeps_live_snapshots(sn) -> None:
    chain(sn, 1)
    sn.prepare("top", "layer-1")
    live = sorted(os.listdir(os.path.join(sn.root, d)) for d in sn._storage_dirs())
    storage = sn._storage_dirs()[0]
    debris = [os.path.join(storage, n) for n in ("new-123abc", "rm-7", "99")]
    for p in debris:
        os.makedirs(os.path.join(p, "fs", "deep"))
    assert sorted(sn.cleanup()) == sorted(debris)
    assert sorted(os.listdir(os.path.join(sn.root, d)) for d in sn._storage_dirs()) == live
    assert sn.cleanup() == []


def test_a_crash_reusing_an_id_does_not_block_the_next_prepare(sn) -> None:
    # A transaction that renamed its directory into place and died before COMMIT leaves
    # snapshots/<id> behind, and SQLite hands the same id out again.
    storage = sn._storage_dirs()[0]
    os.makedirs(os.path.join(storage, "1", "fs"))
    Path(storage, "1", "fs", "stale").write_text("x")
    d = writable_dir(sn.prepare("a"))
    assert os.listdir(d) == []


# -- roll-back when the file system work fails ---------------------------------------------

def test_a_failed_snapshot_leaves_neither_row_nor_directory(tmp_path: Path) -> None:
    fake = FakeSubvolumes()
    sn = BtrfsSnapshotter(str(tmp_path / "root"), subvolumes=fake)
    chain(sn, 1)
    fake.fail_snapshots = 1
    with pytest.raises(OSError, match="ENOSPC"):
        sn.prepare("top", "layer-1")
    with pytest.raises(NotFound):
        sn.stat("top")
    assert os.listdir(os.path.join(sn.root, "active")) == []
    sn.prepare("top", "layer-1")  # and the key is free again
    sn.close()


def test_a_failed_btrfs_commit_keeps_the_active_snapshot(tmp_path: Path) -> None:
    fake = FakeSubvolumes()
    sn = BtrfsSnapshotter(str(tmp_path / "root"), subvolumes=fake)
    d = writable_dir(sn.prepare("a"))
    Path(d, "f").write_text("data")
    fake.fail_snapshots = 1
    with pytest.raises(OSError):
        sn.commit("base", "a")
    assert sn.stat("a").kind is Kind.ACTIVE and Path(d, "f").read_text() == "data"
    assert os.listdir(os.path.join(sn.root, "snapshots")) == []
    sn.commit("base", "a")
    assert os.listdir(os.path.join(sn.root, "active")) == []
    assert Path(sn.root, "snapshots", "1", "f").read_text() == "data"
    assert any(c[0] == "snapshot" and c[1] == d and c[3] is True for c in fake.calls)
    sn.close()


def test_btrfs_refuses_a_root_that_is_not_on_btrfs(tmp_path: Path) -> None:
    with pytest.raises(NotSupported, match="not btrfs"):
        BtrfsSnapshotter(str(tmp_path / "root"))


def test_snapshotter_for_refuses_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown snapshotter"):
        snapshotter_for("zfs", str(tmp_path))
    with snapshotter_for("native", str(tmp_path / "n")) as n:
        assert isinstance(n, NativeSnapshotter)


# -- overlay: the mounts built for chains ----------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2, 50])
def test_overlay_prepare_on_a_chain_lists_every_layer_top_first(tmp_path: Path,
                                                                 layers: int) -> None:
    sn = OverlaySnapshotter(str(tmp_path / "ov"), index_off=True)
    top = chain(sn, layers)
    ids = {i.name: n for n, i in enumerate(sn.walk(), start=1)}
    [m] = sn.prepare("active", top)
    fs = lambda name: f"{sn.root}/snapshots/{ids[name]}/fs"  # noqa: E731
    me = len(ids) + 1
    assert m.type == "overlay" and m.source == "overlay"
    assert m.options == [
        "index=off",
        f"workdir={sn.root}/snapshots/{me}/work",
        f"upperdir={sn.root}/snapshots/{me}/fs",
        "lowerdir=" + ":".join(fs(f"layer-{i}") for i in range(layers, 0, -1)),
    ]
    assert os.path.isdir(m.option("workdir")) and os.path.isdir(m.option("upperdir"))
    assert m.to_spec("/")["options"] == m.options
    sn.close()


def test_overlay_without_a_parent_is_a_bind_mount(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(str(tmp_path / "ov"), index_off=False)
    assert sn.prepare("a") == [Mount("bind", f"{sn.root}/snapshots/1/fs", ["rw", "rbind"])]
    assert sn.view("v") == [Mount("bind", f"{sn.root}/snapshots/2/fs", ["ro", "rbind"])]
    sn.close()


def test_overlay_views_are_read_only(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(str(tmp_path / "ov"), index_off=False)
    chain(sn, 2)
    assert sn.view("v1", "layer-1") == [
        Mount("bind", f"{sn.root}/snapshots/1/fs", ["ro", "rbind"])]
    assert sn.view("v2", "layer-2") == [Mount("overlay", "overlay", [
        "ro", f"lowerdir={sn.root}/snapshots/2/fs:{sn.root}/snapshots/1/fs"])]
    assert not os.path.exists(f"{sn.root}/snapshots/4/work")  # views need no workdir
    sn.close()


def test_overlay_escapes_colons_in_lowerdir(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(str(tmp_path / "a:b"), index_off=False)
    chain(sn, 1)
    [m] = sn.prepare("x", "layer-1")
    assert m.option("lowerdir") == f"{sn.root}/snapshots/1/fs".replace(":", "\\:")
    sn.close()


def test_overlay_refuses_a_root_with_a_comma(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="','"):
        OverlaySnapshotter(str(tmp_path / "a,b"))


# -- native: the copy ----------------------------------------------------------------------

def test_native_prepare_copies_the_parent_and_commits_stay_independent(tmp_path: Path) -> None:
    sn = NativeSnapshotter(str(tmp_path / "n"))
    d = writable_dir(sn.prepare("a"))
    Path(d, "etc").mkdir()
    Path(d, "etc", "hosts").write_text("layer1")
    sn.commit("l1", "a")
    d2 = writable_dir(sn.prepare("b", "l1"))
    assert Path(d2, "etc", "hosts").read_text() == "layer1"
    Path(d2, "etc", "hosts").write_text("changed")
    assert Path(sn.root, "snapshots", "1", "fs", "etc", "hosts").read_text() == "layer1"
    sn.close()


def test_copy_tree_preserves_modes_links_times_and_xattrs(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"hello" * 1000)
    os.chmod(src / "d" / "f", 0o4751)
    os.link(src / "d" / "f", src / "hard")
    os.symlink("d/f", src / "link")
    os.symlink("/nonexistent", src / "dangling")
    os.mkfifo(src / "fifo")
    (src / "empty").touch()
    try:
        os.setxattr(src / "d" / "f", "user.k", b"v")
        xattrs = True
    except OSError:
        xattrs = False
    os.chmod(src / "d", 0o555)  # read-only dir: its children still get copied
    os.utime(src / "d" / "sub", ns=(1_000_000_000, 2_000_000_000))
    os.utime(src / "link", ns=(3_000_000_000, 4_000_000_000), follow_symlinks=False)
    os.utime(src / "d", ns=(5_000_000_000, 6_000_000_000))
    dst.mkdir()
    try:
        assert copy_tree(str(src), str(dst)) == 8
        f = os.lstat(dst / "d" / "f")
        assert stat.S_IMODE(f.st_mode) == 0o4751 and (dst / "d" / "f").read_bytes() == b"hello" * 1000
        assert os.lstat(dst / "hard").st_ino == f.st_ino and f.st_nlink == 2
        assert os.readlink(dst / "link") == "d/f" and os.readlink(dst / "dangling") == "/nonexistent"
        assert os.lstat(dst / "link").st_mtime_ns == 4_000_000_000
        assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
        assert os.lstat(dst / "d").st_mtime_ns == 6_000_000_000
        assert os.lstat(dst / "d" / "sub").st_mtime_ns == 2_000_000_000
        assert stat.S_IMODE(os.lstat(dst / "d").st_mode) == 0o555
        if xattrs:
            assert os.getxattr(dst / "d" / "f", "user.k") == b"v"
    finally:
        os.chmod(src / "d", 0o755)
        if dst.joinpath("d").exists():
            os.chmod(dst / "d", 0o755)


def test_copy_tree_handles_trees_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() + 100
    src = tmp_path / "s"
    src.mkdir()
    rel = "/".join(["a"] * depth)  # 1-char names: stays under PATH_MAX
    for i in range(1, depth + 1):
        os.mkdir(src / "/".join(["a"] * i))
    (tmp_path / "d").mkdir()
    assert copy_tree(str(src), str(tmp_path / "d")) == depth
    assert (tmp_path / "d" / rel).is_dir()
    for top in (src, tmp_path / "d"):  # shutil.rmtree (pytest's clean-up) would recurse
        remove_tree(str(top))
        assert not top.exists()


def test_disk_usage_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 8192)
    os.link(tmp_path / "f", tmp_path / "g")
    u = disk_usage(str(tmp_path))
    assert u.inodes == 2 and u.size >= 8192


def test_d_type_is_reported_on_this_file_system(tmp_path: Path) -> None:
    assert supports_d_type(str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_opening_an_existing_store_waits_for_no_writer(tmp_path) -> None:
    # Opening only reads: it must not queue behind another process's write transaction.
    import sqlite3
    import time

    from hutch.snapshot.metadata import MetaStore

    path = str(tmp_path / "metadata.db")
    MetaStore(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        MetaStore(path, timeout=5).close()
        assert time.monotonic() - started < 1.0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
