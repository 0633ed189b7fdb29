"""hutch.mount: Mount as data, option parsing, and mount_all/unmount/unmount_all driven
through a recording Syscalls (no root, no kernel state)."""

from __future__ import annotations

import errno

import pytest

from hutch.errors import FailedPrecondition, InvalidArgument, NotSupported, PermissionDenied
from hutch.linux import libc
from hutch.mount import Mount, Syscalls, lookup, mount_all, parse_mountinfo, unmount, unmount_all
from hutch.mount.apply import PAGE_SIZE, compact_lowerdir, split_lowerdir
from hutch.mount.types import parse_options

pytestmark = pytest.mark.unit


class RecordingSyscalls(Syscalls):
    """Records every call; `fail` maps a call number (0-based) to an errno to raise;
    `umount_errors` is a list of errnos umount2 raises in turn (then succeeds)."""

    def __init__(self, mountinfo: str = "", fail: dict[int, int] | None = None,
                 umount_errors: list[int] | None = None) -> None:
        self.calls: list[tuple] = []
        self._mountinfo = mountinfo
        self._fail = fail or {}
        self._umount_errors = list(umount_errors or [])
        self.slept = 0.0

    def _maybe_fail(self) -> None:
        n = len(self.calls) - 1
        if n in self._fail:
            raise OSError(self._fail[n], "injected")

    def mount(self, source, target, fstype, flags, data) -> None:
        self.calls.append(("mount", source, target, fstype, flags, data))
        self._maybe_fail()

    def mount_in(self, cwd, source, target, fstype, flags, data) -> None:
        self.calls.append(("mount_in", cwd, source, target, fstype, flags, data))
        self._maybe_fail()

    def umount2(self, target, flags) -> None:
        self.calls.append(("umount2", target, flags))
        if self._umount_errors:
            err = self._umount_errors.pop(0)
            if err:
                raise OSError(err, "injected")

    def mountinfo(self) -> str:
        return self._mountinfo

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


# -- Mount as data -----------------------------------------------------------------------

def test_to_spec_gives_an_oci_mounts_entry() -> None:
    m = Mount("overlay", "overlay", ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"])
    assert m.to_spec("/") == {
        "destination": "/", "type": "overlay", "source": "overlay",
        "options": ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"],
    }


def test_to_spec_copies_options_so_the_spec_cannot_alias_the_mount() -> None:
    m = Mount("bind", "/src", ["ro", "rbind"])
    spec = m.to_spec("/data")
    spec["options"].append("nosuid")
    assert m.options == ["ro", "rbind"]
    assert spec["type"] == "bind" and spec["source"] == "/src"


def test_mount_round_trips_through_a_dict() -> None:
    m = Mount("bind", "/x", ["ro", "rbind"])
    assert Mount.from_dict(m.to_dict()) == m


def test_readonly_and_option_lookup() -> None:
    assert Mount("bind", "/x", ["ro", "rbind"]).readonly
    assert not Mount("bind", "/x", ["rw", "rbind"]).readonly
    assert not Mount("bind", "/x", ["ro", "rw"]).readonly  # the last word wins
    m = Mount("overlay", "overlay", ["upperdir=/u", "lowerdir=/l"])
    assert m.option("upperdir") == "/u" and m.option("workdir") is None


def test_parse_options_splits_flags_propagation_and_data() -> None:
    p = parse_options(["ro", "nosuid", "rbind", "rprivate", "size=64k", "mode=755"])
    assert p.flags == libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_BIND | libc.MS_REC
    assert p.propagation == [libc.MS_PRIVATE | libc.MS_REC]
    assert p.data == "size=64k,mode=755"


def test_parse_options_clearing_words_undo_flags() -> None:
    assert parse_options(["ro", "rw"]).flags == 0
    assert parse_options(["nosuid", "suid", "noexec", "exec", "nodev", "dev"]).flags == 0


# -- mount_all ---------------------------------------------------------------------------

def test_mount_all_rw_bind_is_one_call_without_a_filesystem_type() -> None:
    sys = RecordingSyscalls()
    mount_all([Mount("bind", "/snap/fs", ["rw", "rbind"])], "/mnt/x", syscalls=sys)
    assert sys.calls == [("mount", "/snap/fs", "/mnt/x", None, libc.MS_BIND | libc.MS_REC, None)]


def test_mount_all_ro_bind_remounts_read_only() -> None:
    sys = RecordingSyscalls()
    mount_all([Mount("bind", "/snap/fs", ["ro", "rbind"])], "/mnt/x", syscalls=sys)
    assert len(sys.calls) == 2
    remount = sys.calls[1]
    assert remount[0] == "mount" and remount[1] is None and remount[2] == "/mnt/x"
    assert remount[4] == libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY


def test_mount_all_overlay_passes_options_as_data() -> None:
    sys = RecordingSyscalls()
    m = Mount("overlay", "overlay", ["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs",
                                     "lowerdir=/s/1/fs"])
    mount_all([m], "/mnt/root", syscalls=sys)
    assert sys.calls == [("mount", "overlay", "/mnt/root", "overlay", 0,
                          "index=off,workdir=/s/2/work,upperdir=/s/2/fs,lowerdir=/s/1/fs")]


def test_mount_all_applies_propagation_after_the_mount() -> None:
    sys = RecordingSyscalls()
    mount_all([Mount("tmpfs", "tmpfs", ["nosuid", "size=1m", "rprivate"])], "/t", syscalls=sys)
    assert sys.calls == [("mount", "tmpfs", "/t", "tmpfs", libc.MS_NOSUID, "size=1m"),
                         ("mount", None, "/t", None, libc.MS_PRIVATE | libc.MS_REC, None)]


def _long_overlay(layers: int, root: str) -> Mount:
    lowers = ":".join(f"{root}/snapshots/{i}/fs" for i in range(layers, 0, -1))
    return Mount("overlay", "overlay", ["index=off", f"workdir={root}/snapshots/999/work",
                                        f"upperdir={root}/snapshots/999/fs",
                                        f"lowerdir={lowers}"])


def test_a_lowerdir_list_over_a_page_is_mounted_relative_from_a_helper() -> None:
    root = "/var/lib/hutch/snapshotters/overlay"
    m = _long_overlay(128, root)
    assert len(",".join(m.options)) >= PAGE_SIZE
    sys = RecordingSyscalls()
    mount_all([m], "/mnt/root", syscalls=sys)
    [(call, cwd, source, target, fstype, flags, data)] = sys.calls
    assert call == "mount_in" and cwd == f"{root}/snapshots" and target == "/mnt/root"
    assert len(data) < PAGE_SIZE
    lower = [o for o in data.split(",") if o.startswith("lowerdir=")][0]
    assert lower.startswith("lowerdir=128/fs:127/fs:") and lower.endswith(":1/fs")
    assert f"upperdir={root}/snapshots/999/fs" in data  # only lowerdir is made relative


def test_a_lowerdir_list_that_stays_too_long_is_refused_clearly() -> None:
    lowers = ":".join(f"/{'d' * 40}{i}/fs" for i in range(200))  # no common parent
    sys = RecordingSyscalls()
    with pytest.raises(InvalidArgument, match="mount data limit"):
        mount_all([Mount("overlay", "overlay", [f"lowerdir={lowers}"])], "/m", syscalls=sys)
    assert sys.calls == []


def test_compact_lowerdir_keeps_short_data_and_escapes_colons() -> None:
    assert compact_lowerdir("upperdir=/u") == (None, "upperdir=/u")
    cwd, data = compact_lowerdir("lowerdir=/r/a\\:b/fs:/r/c/fs")
    assert cwd == "/r" and data == "lowerdir=a\\:b/fs:c/fs"
    assert split_lowerdir("a\\:b/fs:c/fs") == ["a:b/fs", "c/fs"]


def test_mount_all_undoes_earlier_mounts_when_a_later_one_fails() -> None:
    sys = RecordingSyscalls(fail={1: errno.EPERM})
    with pytest.raises(PermissionDenied, match="mount tmpfs /m") as ei:
        mount_all([Mount("bind", "/a", ["rbind"]), Mount("tmpfs", "tmpfs", [])], "/m",
                  syscalls=sys)
    assert ei.value.hint and "CAP_SYS_ADMIN" in ei.value.hint
    assert sys.calls[-1] == ("umount2", "/m", libc.MNT_DETACH)


def test_unknown_filesystem_is_not_supported() -> None:
    sys = RecordingSyscalls(fail={0: errno.ENODEV})
    with pytest.raises(NotSupported):
        mount_all([Mount("nosuchfs", "x", [])], "/m", syscalls=sys)


# -- unmount -----------------------------------------------------------------------------

def test_unmount_retries_ebusy_then_succeeds() -> None:
    sys = RecordingSyscalls(umount_errors=[errno.EBUSY, errno.EBUSY, 0])
    unmount("/m", syscalls=sys, delay=0.01)
    assert [c[0] for c in sys.calls] == ["umount2"] * 3 and sys.slept == pytest.approx(0.02)


def test_unmount_gives_up_on_ebusy_with_a_hint() -> None:
    sys = RecordingSyscalls(umount_errors=[errno.EBUSY] * 10)
    with pytest.raises(FailedPrecondition) as ei:
        unmount("/m", syscalls=sys, retries=3, delay=0)
    assert "detach" in (ei.value.hint or "") and len(sys.calls) == 4


def test_unmount_detach_is_mnt_detach_and_not_a_mount_point_is_an_error() -> None:
    sys = RecordingSyscalls()
    unmount("/m", detach=True, syscalls=sys)
    assert sys.calls == [("umount2", "/m", libc.MNT_DETACH)]
    with pytest.raises(InvalidArgument, match="not a mount point"):
        unmount("/m", syscalls=RecordingSyscalls(umount_errors=[errno.EINVAL]))


MOUNTINFO = "\n".join([
    "22 1 0:21 / / rw - ext4 /dev/vda rw",
    "30 22 0:40 / /run/x rw - tmpfs tmpfs rw",
    "31 30 0:41 / /run/x/a rw - tmpfs tmpfs rw",
    "32 31 0:42 / /run/x/a/b rw - tmpfs tmpfs rw",
    "33 30 0:43 / /run/x rw - overlay overlay rw,lowerdir=/l",
    "34 22 0:44 / /run/xy rw - tmpfs tmpfs rw",
    "35 22 0:45 / /run/with\\040space rw - tmpfs tmpfs rw",
])


def test_unmount_all_goes_deepest_first_and_top_of_stack_first() -> None:
    sys = RecordingSyscalls(MOUNTINFO, umount_errors=[0, 0, 0, 0, errno.EINVAL])
    unmount_all("/run/x", syscalls=sys, delay=0)
    assert [c[1] for c in sys.calls] == ["/run/x/a/b", "/run/x/a", "/run/x", "/run/x", "/run/x"]
    # /run/xy shares the prefix but is not below /run/x


def test_unmount_all_is_quiet_when_nothing_is_mounted() -> None:
    sys = RecordingSyscalls(MOUNTINFO, umount_errors=[errno.EINVAL])
    unmount_all("/run/nothing", syscalls=sys)
    assert sys.calls == [("umount2", "/run/nothing", 0)]


class CountingSyscalls(RecordingSyscalls):
    reads = 0

    def mountinfo(self) -> str:
        self.reads += 1
        return super().mountinfo()


def test_lazy_unmount_all_of_a_mount_point_needs_no_mountinfo() -> None:
    # MNT_DETACH takes /run/x/a and /run/x/a/b with /run/x; the stack at /run/x is
    # unmounted until EINVAL.
    sys = CountingSyscalls(MOUNTINFO, umount_errors=[0, 0, errno.EINVAL])
    unmount_all("/run/x", detach=True, syscalls=sys, delay=0)
    assert sys.calls == [("umount2", "/run/x", libc.MNT_DETACH)] * 3
    assert sys.reads == 0


def test_lazy_unmount_all_below_a_plain_directory_finds_the_submounts() -> None:
    sys = CountingSyscalls(MOUNTINFO, umount_errors=[errno.EINVAL, *[0] * 6, errno.EINVAL])
    unmount_all("/run", detach=True, syscalls=sys, delay=0)
    assert sys.reads == 1
    assert [c[1] for c in sys.calls][:2] == ["/run", "/run/x/a/b"]
    assert sys.calls[-1] == ("umount2", "/run", libc.MNT_DETACH)


def test_lazy_unmount_all_of_a_missing_path_is_quiet() -> None:
    sys = CountingSyscalls(MOUNTINFO, umount_errors=[errno.ENOENT])
    unmount_all("/gone", detach=True, syscalls=sys)
    assert sys.calls == [("umount2", "/gone", libc.MNT_DETACH)] and sys.reads == 0


def test_parse_mountinfo_unescapes_paths_and_lookup_finds_the_longest_prefix() -> None:
    infos = parse_mountinfo(MOUNTINFO)
    assert infos[-1].mountpoint == "/run/with space"
    assert infos[4].fstype == "overlay" and infos[4].super_options == "rw,lowerdir=/l"
    assert lookup("/run/x/a/file", MOUNTINFO).id == 31
    assert lookup("/etc/passwd", MOUNTINFO).fstype == "ext4"
    assert lookup("/run/x/other", MOUNTINFO).id == 33  # the last mounted on /run/x
