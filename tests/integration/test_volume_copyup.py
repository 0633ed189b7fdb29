"""copy_up on real trees: a root-owned host tree full of symlinks, the busybox rootfs
(whose /usr/bin is an absolute symlink that must resolve inside the rootfs, not on the
host), and an overlay mount (what a container's rootfs is) with a whiteout."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from hutch.engine.copyup import copy_up
from hutch.engine.volumes import VolumeStore
from hutch.linux import libc

pytestmark = pytest.mark.integration


def tree(path) -> dict:
    """Everything copy_up promises to keep, per path below `path` and for `path` itself."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in ["", *dirnames, *filenames]:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            info: list = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                          st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                info.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                info += [hashlib.sha256(Path(p).read_bytes()).hexdigest(), st.st_mtime_ns]
            elif not name and stat.S_ISDIR(st.st_mode):
                info.append(st.st_mtime_ns)
            out[os.path.relpath(p, path)] = info
    return out


@pytest.fixture
def store(tmp_path) -> VolumeStore:
    return VolumeStore(str(tmp_path / "volumes"))


def test_copy_up_of_a_root_owned_tree_with_symlinks_keeps_everything(store):
    source = "/etc/ssl"  # hundreds of relative symlinks, a 0700 private dir
    if not os.path.isdir(source):
        pytest.skip(f"no {source} on this host")
    vol = store.create("ssl")
    assert copy_up(vol.mountpoint, "/", source) is True
    assert tree(vol.mountpoint) == tree(source)


def test_an_absolute_symlink_in_the_image_resolves_inside_the_rootfs(store, busybox_rootfs):
    assert os.readlink(busybox_rootfs / "usr" / "bin") == "/bin"  # the host has a /bin too
    vol = store.create("bin")
    assert copy_up(vol.mountpoint, str(busybox_rootfs), "/usr/bin") is True
    assert tree(vol.mountpoint) == tree(busybox_rootfs / "bin")
    assert os.readlink(Path(vol.mountpoint, "sh")) == "busybox"


def test_copy_up_from_an_overlay_rootfs_sees_the_merged_view(store, tmp_path):
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower / "data" / "sub", upper / "data", work, merged):
        d.mkdir(parents=True)
    (lower / "data" / "keep").write_text("lower")
    (lower / "data" / "gone").write_text("deleted in the upper layer")
    (lower / "data" / "changed").write_text("old")
    (lower / "data" / "sub" / "f").write_text("f")
    os.symlink("/etc/shadow", lower / "data" / "link")
    os.mknod(upper / "data" / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # whiteout
    (upper / "data" / "changed").write_text("new")
    (upper / "data" / "added").write_text("upper")
    libc.mount("overlay", str(merged), "overlay", 0,
               f"lowerdir={lower},upperdir={upper},workdir={work}")
    try:
        vol = store.create("data")
        assert copy_up(vol.mountpoint, str(merged), "/data") is True
        assert tree(vol.mountpoint) == tree(merged / "data")
    finally:
        libc.umount2(str(merged), libc.MNT_DETACH)
    got = Path(vol.mountpoint)
    assert sorted(os.listdir(got)) == ["added", "changed", "keep", "link", "sub"]
    assert (got / "changed").read_text() == "new"
    assert os.readlink(got / "link") == "/etc/shadow"
