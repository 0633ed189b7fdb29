"""Snapshotters on the real kernel: overlay on the host file system, native, and btrfs on
a loop-mounted image made for the session. Layers are built by prepare / write / commit,
the snapshots' mounts are applied with hutch.mount, and every mount, loop device and
directory is removed at the end, also when a test fails.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from loopfs import btrfs_loop

from hutch.errors import FailedPrecondition
from hutch.mount import Mount, mount_all, mounts_under, unmount_all
from hutch.snapshot import (
    BaseSnapshotter,
    BtrfsSnapshotter,
    BtrfsSubvolumes,
    Kind,
    NativeSnapshotter,
    OverlaySnapshotter,
    default_snapshotter,
)

pytestmark = pytest.mark.integration

KINDS = ["overlay", "native", "btrfs"]


# -- fixtures: a btrfs file system on a loop device, one snapshotter root per test -----

@pytest.fixture(scope="module")
def btrfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with btrfs_loop(tmp_path_factory.mktemp("btrfs")) as mnt:
        yield mnt


@pytest.fixture
def no_mounts_left(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, checked (and cleaned) for mounts left under it when the test ends."""
    yield tmp_path
    left = [m.mountpoint for m in mounts_under(str(tmp_path))]
    unmount_all(str(tmp_path), detach=True)
    assert left == [], f"mounts left behind: {left}"


def make_snapshotter(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                     cls: type[BaseSnapshotter] | None = None) -> BaseSnapshotter:
    if kind == "btrfs":
        root = request.getfixturevalue("btrfs_mount") / request.node.name.replace("/", "_")
        return (cls or BtrfsSnapshotter)(str(root))
    root = tmp_path / kind
    if kind == "overlay":
        OverlaySnapshotter.check_supported(str(root))
        return (cls or OverlaySnapshotter)(str(root))
    return (cls or NativeSnapshotter)(str(root))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return request.param


@pytest.fixture
def sn(kind: str, no_mounts_left: Path, request: pytest.FixtureRequest
       ) -> Iterator[BaseSnapshotter]:
    s = make_snapshotter(kind, no_mounts_left, request)
    yield s
    # Remove whatever the test left, children first, so btrfs subvolumes go too.
    for info in reversed(list(s.walk())):
        s.remove(info.name)
    s.cleanup()
    s.close()


@contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, str(target))
    try:
        yield target
    finally:
        unmount_all(str(target))


def whiteout(sn: BaseSnapshotter, mounts: list[Mount], merged: Path, name: str) -> None:
    """Delete `name` in the layer being built, the way the archive package will: an
    overlay whiteout (0:0 character device) in the upper directory for overlay, a plain
    deletion for snapshotters whose layers are full copies."""
    if sn.name == "overlay":
        upper = mounts[0].option("upperdir")
        assert upper is not None
        os.mknod(os.path.join(upper, name), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    else:
        os.unlink(merged / name)


def build_layer(sn: BaseSnapshotter, name: str, parent: str | None, tmp: Path,
                write: Callable[[Path, list[Mount]], None]) -> None:
    key = f"{name}-extract"
    mounts = sn.prepare(key, parent)
    with mounted(mounts, tmp / f"mnt-{name}") as root:
        write(root, mounts)
    sn.commit(name, key)


# -- the merged view ---------------------------------------------------------------------

def test_layers_merge_and_committed_layers_stay_unchanged(sn: BaseSnapshotter,
                                                          no_mounts_left: Path) -> None:
    tmp = no_mounts_left

    def layer1(root: Path, _: list[Mount]) -> None:
        (root / "a").write_text("layer1")
        (root / "gone").write_text("deleted by layer 2")
        (root / "dir").mkdir()
        (root / "dir" / "x").write_text("x")

    def layer2(root: Path, mounts: list[Mount]) -> None:
        (root / "a").write_text("layer2")
        (root / "c").write_text("new in layer 2")
        whiteout(sn, mounts, root, "gone")

    build_layer(sn, "l1", None, tmp, layer1)
    build_layer(sn, "l2", "l1", tmp, layer2)
    top = sn.prepare("top", "l2")
    with mounted(top, tmp / "merged") as root:
        assert sorted(os.listdir(root)) == ["a", "c", "dir"]
        assert (root / "a").read_text() == "layer2"
        assert (root / "dir" / "x").read_text() == "x"
        (root / "a").write_text("container")
        (root / "dir" / "new").write_text("container")
        os.unlink(root / "c")
    with mounted(sn.view("v2", "l2"), tmp / "v2") as v2, \
            mounted(sn.view("v1", "l1"), tmp / "v1") as v1:
        assert (v2 / "a").read_text() == "layer2" and (v2 / "c").exists()
        assert not (v2 / "dir" / "new").exists()
        assert (v1 / "a").read_text() == "layer1" and (v1 / "gone").exists()
        with pytest.raises(OSError) as ei:
            (v2 / "w").write_text("no")
        assert ei.value.errno == errno.EROFS
    # The active snapshot keeps its changes across mounts.
    with mounted(sn.mounts("top"), tmp / "again") as root:
        assert (root / "a").read_text() == "container" and not (root / "c").exists()
    assert sn.usage("top").inodes >= 2
    assert sn.stat("l2").kind is Kind.COMMITTED and sn.usage("l2").inodes >= 3

    with pytest.raises(FailedPrecondition):
        sn.remove("l2")
    for key in ("top", "v2", "v1", "l2", "l1"):
        sn.remove(key)
    assert list(sn.walk()) == []
    for d in sn._storage_dirs():
        assert os.listdir(d) == []


def test_a_view_without_parent_and_an_empty_active_snapshot_mount(sn: BaseSnapshotter,
                                                                  no_mounts_left: Path) -> None:
    with mounted(sn.prepare("empty"), no_mounts_left / "e") as root:
        assert os.listdir(root) == []
        (root / "f").write_text("x")
    with mounted(sn.view("ev"), no_mounts_left / "ev") as root:
        with pytest.raises(OSError):
            (root / "f").write_text("x")


# -- crashes -----------------------------------------------------------------------------

def crash_in_child(fn: Callable[[], object]) -> None:
    """Run fn in a forked child that dies (os._exit) wherever fn says; like a kill -9."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 99, "the child was meant to die mid-way"


def crashing(base: type[BaseSnapshotter], where: str) -> type[BaseSnapshotter]:
    """A snapshotter that dies at `where`: "_make" (after building, before the rename),
    "_mounts" (after the rename, before COMMIT), "_destroy_quietly" (remove: after
    COMMIT, before the directory is deleted)."""
    def die(self, *args):
        if where == "_make":
            base._make(self, *args)
        os._exit(99)
    return type(f"Crashing{base.__name__}", (base,), {where: die})


@pytest.mark.parametrize("where", ["_make", "_mounts", "_destroy_quietly"])
def test_cleanup_removes_what_a_crash_left(sn: BaseSnapshotter, where: str,
                                           no_mounts_left: Path) -> None:
    build_layer(sn, "l1", None, no_mounts_left,
                lambda root, _: (root / "f").write_text("1"))
    live = {d: sorted(os.listdir(d)) for d in sn._storage_dirs()}
    cls = crashing(type(sn), where)

    def doomed() -> None:
        s = cls(sn.root)
        if where == "_destroy_quietly":
            s.remove("l1")
        else:
            s.prepare("k", "l1")

    crash_in_child(doomed)
    debris = [os.path.join(d, n) for d in sn._storage_dirs() for n in os.listdir(d)
              if n not in live[d]]
    assert debris, "the crash was meant to leave something behind"
    assert sorted(sn.cleanup()) == sorted(debris)
    if where == "_destroy_quietly":
        assert list(sn.walk()) == []  # the removal had committed
    else:
        assert [i.name for i in sn.walk()] == ["l1"]  # the prepare had not
        with mounted(sn.prepare("k", "l1"), no_mounts_left / "m") as root:
            assert (root / "f").read_text() == "1"
    assert sn.cleanup() == []


def test_btrfs_cleanup_destroys_leftover_subvolumes(btrfs_mount: Path) -> None:
    sn = BtrfsSnapshotter(str(btrfs_mount / "leftovers"))
    sv = BtrfsSubvolumes()
    try:
        sv.create(os.path.join(sn.root, "active", "new-abc"))
        sv.create(os.path.join(sn.root, "snapshots", "77"))
        assert sv.is_subvolume(os.path.join(sn.root, "snapshots", "77"))
        assert len(sn.cleanup()) == 2
        out = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_mount)],
                             capture_output=True, text=True, check=True).stdout
        assert "leftovers/" not in out
    finally:
        sn.close()


# -- native copies faithfully ------------------------------------------------------------

def test_native_copy_keeps_owners_devices_and_trusted_xattrs(no_mounts_left: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sn = NativeSnapshotter(str(no_mounts_left / "native"))
    try:
        fs = Path(sn.prepare("a")[0].source)
        (fs / "dev").mkdir()
        os.mknod(fs / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        (fs / "owned").write_text("x")
        os.chown(fs / "owned", 1234, 5678)
        os.chmod(fs / "owned", 0o4755)
        os.setxattr(fs / "owned", "trusted.overlay.opaque", b"y")
        sn.commit("l1", "a")
        fs2 = Path(sn.prepare("b", "l1")[0].source)
        st = os.lstat(fs2 / "dev" / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        st = os.lstat(fs2 / "owned")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)
        assert os.getxattr(fs2 / "owned", "trusted.overlay.opaque") == b"y"
    finally:
        sn.close()


# -- overlay specifics -------------------------------------------------------------------

def test_overlay_mounts_a_chain_longer_than_the_mount_data_page(no_mounts_left: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = no_mounts_left / ("overlay-with-a-deliberately-long-root-path-" + "x" * 40)
    OverlaySnapshotter.check_supported(str(root))
    sn = OverlaySnapshotter(str(root))
    try:
        parent = None
        for i in range(130):
            fs = Path(sn.prepare(f"k{i}", parent)[0].option("upperdir")
                      or sn.mounts(f"k{i}")[0].source)
            (fs / f"f{i}").write_text(str(i))
            sn.commit(f"l{i}", f"k{i}")
            parent = f"l{i}"
        [m] = sn.prepare("top", parent)
        assert len(",".join(m.options)) > os.sysconf("SC_PAGE_SIZE")
        with mounted([m], no_mounts_left / "merged") as merged:
            assert len(os.listdir(merged)) == 130
            assert (merged / "f0").read_text() == "0"
    finally:
        sn.close()


def test_default_snapshotter_is_overlay_here(no_mounts_left: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with default_snapshotter(str(no_mounts_left / "d")) as s:
        assert s.name == "overlay"
    # The support probe (a test mount) leaves nothing behind.
    assert not [n for n in os.listdir(no_mounts_left / "d") if n.startswith(("overlay-", ".d_type"))]


# -- how prepare scales ------------------------------------------------------------------

def test_prepare_time_on_a_50_layer_chain_and_a_5000_file_parent(
        sn: BaseSnapshotter, no_mounts_left: Path, capsys: pytest.CaptureFixture) -> None:
    def write_into(key: str, parent: str | None) -> Path:
        [m] = sn.prepare(key, parent)
        return Path(m.option("upperdir") or m.source)

    parent = None
    for i in range(50):
        (write_into(f"c{i}", parent) / f"f{i}").write_text(str(i))
        sn.commit(f"chain{i}", f"c{i}")
        parent = f"chain{i}"
    t0 = time.perf_counter()
    top = sn.prepare("chain-top", parent)
    t_chain = time.perf_counter() - t0
    with mounted(top, no_mounts_left / "chain") as root:
        assert len(os.listdir(root)) == 50

    fs = write_into("big", None)
    for d in range(50):
        (fs / f"d{d}").mkdir()
        for f in range(100):
            (fs / f"d{d}" / f"f{f}").write_bytes(b"x" * 64)
    sn.commit("big-layer", "big")
    t0 = time.perf_counter()
    top = sn.prepare("big-top", "big-layer")
    t_big = time.perf_counter() - t0
    with mounted(top, no_mounts_left / "big") as root:
        assert len(os.listdir(root / "d49")) == 100

    with capsys.disabled():
        print(f"\n[{sn.name:8}] prepare on a 50-layer chain: {t_chain * 1000:7.1f} ms; "
              f"on a 5000-file parent: {t_big * 1000:7.1f} ms")
    if sn.name in ("overlay", "btrfs"):  # O(1): nothing is copied
        assert t_chain < 0.5 and t_big < 0.5
