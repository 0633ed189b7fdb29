"""Mounts: the container's mount table, readonly rootfs, tmpfs/bind/rbind with options,
rootfsPropagation, /dev contents and linux.devices."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from bundles import normalise_mountinfo, unmount_under

pytestmark = pytest.mark.integration


def _rows(obs_result, bundle):
    assert obs_result.ok, obs_result
    return normalise_mountinfo(obs_result.stdout, bundle)


def test_default_mount_table_matches_runc(observe):
    obs = observe("cat", "/proc/self/mountinfo")
    ref = _rows(obs.ref, obs.ref_bundle)
    mine = _rows(obs.mine, obs.bundle)
    points = [r[0] for r in ref]
    for p in ("/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert p in points
    assert [r[0] for r in mine] == points, "different mount points"
    assert mine == ref


def test_default_root_is_readonly_and_the_mounts_have_their_flags(observe):
    obs = observe("sh", "-c", "grep -E ' / | /proc | /dev | /sys ' /proc/self/mountinfo; "
                  "touch /x 2>&1; echo rc=$?")
    assert "Read-only file system" in obs.ref.stdout
    assert obs.mine.stdout.splitlines()[-2:] == obs.ref.stdout.splitlines()[-2:], obs.mine
    assert _rows(obs.mine, obs.bundle) == _rows(obs.ref, obs.ref_bundle)


def test_writable_rootfs_when_root_readonly_is_false(observe):
    def prepare(b):
        b.spec["root"]["readonly"] = False

    obs = observe("sh", "-c", "touch /x && echo wrote", prepare=prepare)
    assert obs.ref.stdout == "wrote\n"
    assert obs.mine.stdout == "wrote\n", obs.mine
    assert (obs.bundle.rootfs / "x").exists()


def test_tmpfs_mount_with_options(observe):
    def prepare(b):
        b.add_mount("/mnt/t", "tmpfs", "tmpfs",
                    ["nosuid", "noexec", "nodev", "size=1m", "mode=700"])

    obs = observe("sh", "-c", "grep ' /mnt/t ' /proc/self/mountinfo; stat -c %a /mnt/t; "
                  "echo x > /mnt/t/f && cat /mnt/t/f", prepare=prepare)
    ref = obs.ref.stdout
    assert "nosuid,nodev,noexec" in ref and "size=1024k" in ref and "mode=700" in ref, ref
    assert ref.splitlines()[1:] == ["700", "x"]
    assert _rows(obs.mine, obs.bundle) == _rows(obs.ref, obs.ref_bundle)
    assert obs.mine.stdout.splitlines()[1:] == ["700", "x"]


@pytest.fixture
def host_dir(bundle_base):
    d = bundle_base / "hostdir"
    d.mkdir()
    (d / "hello").write_text("from the host\n")
    return d


def test_readonly_bind_mount(observe, host_dir):
    def prepare(b):
        b.add_mount("/mnt/b", "bind", str(host_dir), ["rbind", "ro"])

    obs = observe("sh", "-c", "cat /mnt/b/hello; touch /mnt/b/new 2>&1; "
                  "grep ' /mnt/b ' /proc/self/mountinfo", prepare=prepare)
    assert obs.ref.stdout.startswith("from the host\n")
    assert "Read-only file system" in obs.ref.stdout
    assert not (host_dir / "new").exists()
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout.splitlines()[:2] == obs.ref.stdout.splitlines()[:2]
    assert _rows(obs.mine, obs.bundle) == _rows(obs.ref, obs.ref_bundle)


def test_writable_bind_mount_writes_through_to_the_host(observe, host_dir):
    def prepare(b):
        b.add_mount("/mnt/b", "none", str(host_dir), ["bind", "rw"])

    obs = observe("sh", "-c", "echo hi > /mnt/b/from-container-$RANDOM && echo ok",
                  prepare=prepare)
    assert obs.ref.stdout == "ok\n"
    assert obs.mine.stdout == "ok\n", obs.mine
    written = list(host_dir.glob("from-container-*"))
    assert len(written) == (1 if obs.mine is obs.ref else 2)


@pytest.fixture
def host_dir_with_submount(host_dir):
    sub = host_dir / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "hutchsub", str(sub)], check=True)
    (sub / "inner").write_text("in submount\n")
    try:
        yield host_dir
    finally:
        unmount_under([host_dir])


@pytest.mark.parametrize("kind", ["bind", "rbind"])
def test_bind_and_rbind_differ_in_submounts(observe, host_dir_with_submount, kind):
    def prepare(b):
        b.add_mount("/mnt/b", "bind", str(host_dir_with_submount), [kind])

    obs = observe("sh", "-c", "cat /mnt/b/sub/inner 2>/dev/null || echo no-submount",
                  prepare=prepare)
    want = "in submount\n" if kind == "rbind" else "no-submount\n"
    assert obs.ref.stdout == want
    assert obs.mine.stdout == want, obs.mine


def test_mount_destination_directories_are_created(observe):
    def prepare(b):
        b.add_mount("/new/deep/dir", "tmpfs", "tmpfs", ["size=1m"])

    obs = observe("sh", "-c", "grep -c ' /new/deep/dir ' /proc/self/mountinfo", prepare=prepare)
    assert obs.ref.stdout == "1\n"
    assert obs.mine.stdout == "1\n", obs.mine


@pytest.mark.parametrize("propagation", ["private", "slave", "shared", "rprivate", "rslave"])
def test_rootfs_propagation(observe, propagation):
    def prepare(b):
        b.spec["linux"]["rootfsPropagation"] = propagation

    obs = observe("awk", "$5 == \"/\"", "/proc/self/mountinfo", prepare=prepare)
    assert obs.ref.ok, obs.ref
    assert obs.mine.ok, obs.mine
    assert _rows(obs.mine, obs.bundle) == _rows(obs.ref, obs.ref_bundle)


def _ls_dev(text: str) -> list[str]:
    """`ls -l /dev` without dates, sizes of directories and the total line."""
    out = []
    for line in text.splitlines():
        if line.startswith("total"):
            continue
        f = line.split()
        # perms links owner group (size | major, minor) month day time name [-> target]
        if f[0].startswith("c") or f[0].startswith("b"):
            out.append(" ".join([f[0], f[2], f[3], f[4], f[5], *f[9:]]))
        elif f[0].startswith("d"):
            out.append(" ".join([f[0], f[2], f[3], *f[8:]]))
        else:
            out.append(" ".join([f[0], f[2], f[3], *f[8:]]))
    return out


def test_dev_has_the_default_devices_and_symlinks(observe):
    obs = observe("ls", "-l", "/dev")
    ref = _ls_dev(obs.ref.stdout)
    names = {line.split()[-1] if "->" not in line else line.split()[-3] for line in ref}
    for n in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "fd", "stdin", "pts"):
        assert n in names, ref
    assert obs.mine.ok, obs.mine
    assert _ls_dev(obs.mine.stdout) == ref


def test_default_devices_work(observe):
    obs = observe("sh", "-c", "echo x > /dev/null && head -c 4 /dev/zero | wc -c && "
                  "head -c 4 /dev/urandom | wc -c && echo ok")
    assert obs.ref.stdout.split() == ["4", "4", "ok"]
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def _add_device(b, path, major, minor, allow=True):
    b.spec["linux"].setdefault("devices", []).append(
        {"path": path, "type": "c", "major": major, "minor": minor,
         "fileMode": 0o666, "uid": 0, "gid": 0}
    )
    if allow:
        b.spec["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        )


def test_linux_devices_creates_a_made_up_char_device(observe):
    obs = observe("sh", "-c", "ls -l /dev/mynull; echo data > /dev/mynull && echo wrote",
                  prepare=lambda b: _add_device(b, "/dev/mynull", 1, 3))
    assert re.match(r"crw-rw-rw-\s+1 root\s+root\s+1,\s+3 ", obs.ref.stdout), obs.ref
    assert obs.ref.stdout.endswith("wrote\n")
    assert obs.mine.ok, obs.mine
    assert _ls_dev(obs.mine.stdout.splitlines()[0]) == _ls_dev(obs.ref.stdout.splitlines()[0])
    assert obs.mine.stdout.endswith("wrote\n")


@pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse on the host")
@pytest.mark.parametrize("allow", [True, False], ids=["allowed", "denied"])
def test_device_cgroup_decides_whether_a_device_opens(observe, allow):
    # fuse (c 10:229) is not among the runtimes' default allowed devices; opening it
    # without a mount has no side effect.
    obs = observe("sh", "-c", "(exec 3<>/dev/myfuse) 2>/dev/null && echo opened || echo denied",
                  prepare=lambda b: _add_device(b, "/dev/myfuse", 10, 229, allow=allow))
    want = "opened" if allow else "denied"
    assert want in obs.ref.stdout, obs.ref
    assert want in obs.mine.stdout, obs.mine


@pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse on the host")
def test_linux_devices_fuse(observe):
    obs = observe("ls", "-l", "/dev/fuse", prepare=lambda b: _add_device(b, "/dev/fuse", 10, 229))
    assert obs.ref.ok, obs.ref
    assert _ls_dev(obs.mine.stdout) == _ls_dev(obs.ref.stdout), obs.mine
