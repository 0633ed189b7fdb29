"""cgroup managers against fake cgroup trees in a temp directory (no root, no kernel)."""

from __future__ import annotations

import errno
import json
import os

import pytest

from hutch.errors import FailedPrecondition, NotSupported, SpecError
from hutch.runtime.cgroups import (
    CgroupFS,
    manager_from_state,
    open_manager,
    shares_to_weight,
    validate_resources,
)
from hutch.runtime.cgroups.paths import clean_path, expand_slice

pytestmark = pytest.mark.unit

HUGE = "9223372036854771712"
V1_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
            "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0"},
    "cpuacct": {},
    "cpuset": {"cpuset.cpus": "0-3", "cpuset.mems": "0"},
    "memory": {"memory.limit_in_bytes": HUGE, "memory.memsw.limit_in_bytes": HUGE,
               "memory.soft_limit_in_bytes": HUGE, "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0", "memory.usage_in_bytes": "0",
               "memory.max_usage_in_bytes": "0"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {}, "blkio": {}, "pids": {"pids.max": "max"}, "systemd": {},
}
HYBRID_MOUNTINFO = "\n".join(
    [f"{30 + i} 31 0:{40 + i} / /sys/fs/cgroup/{name} rw,relatime - cgroup cgroup rw,"
     f"{'name=systemd' if name == 'systemd' else name}" for i, name in enumerate(V1_FILES)]
    + ["25 1 0:22 / /proc rw - proc proc rw",
       "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"]) + "\n"
OWN_V1 = ("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n3:cpuset:/\n1:cpu:/\n"
          "2:cpuacct:/\n5:devices:/\n6:freezer:/\n7:blkio:/\n0::/\n")
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_ROOT_FILES = {"cgroup.controllers": "cpuset cpu io memory hugetlb pids",
                 "cgroup.subtree_control": "", "cgroup.procs": "1\n", "cgroup.type": "",
                 "cpu.weight": "100", "cpu.max": "max 100000", "memory.max": "max",
                 "memory.swap.max": "max", "memory.low": "0", "pids.max": "max",
                 "cpuset.cpus": "", "cpuset.mems": "", "io.weight": "default 100"}


class FakeCgroupFS(CgroupFS):
    """A temp tree that behaves like cgroupfs where it matters: mkdir creates the
    controller files (cpuset empty, v2 controllers from the parent's subtree_control),
    cgroup.procs appends, rmdir takes the pseudo-files with it and refuses busy cgroups.
    Every write is recorded in order."""

    def __init__(self, root: str, mountinfo: str, self_cgroup: str) -> None:
        super().__init__(root, mountinfo=mountinfo, self_cgroup=self_cgroup)
        self.writes: list[tuple[str, str]] = []

    def put(self, path: str, text: str) -> None:
        os.makedirs(os.path.dirname(self.real(path)), exist_ok=True)
        with open(self.real(path), "w") as f:
            f.write(text)

    def write(self, path: str, data: str) -> None:
        name = os.path.basename(path)
        if not self.exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file", path)
        self.writes.append((path, data))
        if name == "cgroup.procs":
            with open(self.real(path), "a") as f:
                f.write(data + "\n")
            return
        if name == "cgroup.subtree_control":
            allowed = set(self.read(os.path.join(os.path.dirname(path),
                                                 "cgroup.controllers")).split())
            cur = set(self.read(path).split())
            for tok in data.split():
                if tok[1:] not in allowed:
                    raise OSError(errno.ENOENT, "No such file", path)
                (cur.add if tok[0] == "+" else cur.discard)(tok[1:])
            data = " ".join(sorted(cur))
        super().write(path, data)

    def mkdir(self, path: str, mode: int = 0o755) -> bool:
        if not super().mkdir(path, mode):
            return False
        parent = os.path.dirname(path)
        for name in os.listdir(self.real(parent)):
            src = os.path.join(parent, name)
            if self.isdir(src):
                continue
            if name in ("cgroup.procs", "cpuset.cpus", "cpuset.mems", "cgroup.subtree_control",
                        "devices.allow", "devices.deny"):
                text = ""
            elif name == "cgroup.controllers":
                text = self.read(os.path.join(parent, "cgroup.subtree_control"))
            else:
                text = self.read(src)
            self.put(os.path.join(path, name), text)
        return True

    def rmdir(self, path: str) -> None:
        real = self.real(path)
        if not os.path.isdir(real):
            raise FileNotFoundError(errno.ENOENT, "No such file", path)
        if any(os.path.isdir(os.path.join(real, n)) for n in os.listdir(real)):
            raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
        procs = os.path.join(real, "cgroup.procs")
        if os.path.exists(procs) and open(procs).read().strip():
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for n in os.listdir(real):
            os.unlink(os.path.join(real, n))
        os.rmdir(real)


@pytest.fixture
def v1fs(tmp_path):
    fs = FakeCgroupFS(str(tmp_path), HYBRID_MOUNTINFO, OWN_V1)
    for ctrl, files in V1_FILES.items():
        for name, text in {"cgroup.procs": "", **files}.items():
            fs.put(f"/sys/fs/cgroup/{ctrl}/{name}", text)
    fs.put("/sys/fs/cgroup/memory/process_api/abc/cgroup.procs", "")
    fs.put("/sys/fs/cgroup/unified/cgroup.procs", "")
    fs.put("/sys/fs/cgroup/unified/cgroup.controllers", "")
    fs.put("/sys/fs/cgroup/unified/cgroup.subtree_control", "")
    return fs


@pytest.fixture
def v2fs(tmp_path):
    fs = FakeCgroupFS(str(tmp_path), V2_MOUNTINFO, "0::/user.slice/session-1.scope\n")
    for name, text in V2_ROOT_FILES.items():
        fs.put(f"/sys/fs/cgroup/{name}", text)
    return fs


def written(fs: FakeCgroupFS, suffix: str) -> list[str]:
    return [v for p, v in fs.writes if p.endswith(suffix)]


def created(fs, path, *, resources=None):
    m = open_manager(path, "ctr1", fs=fs)
    m.create()
    return m


# --- paths ------------------------------------------------------------------------------

def test_absolute_cgroups_path_is_below_every_hierarchy_mountpoint(v1fs):
    m = open_manager("/hutch/x", "ctr1", fs=v1fs)
    assert m.version == 1
    p = m.paths()
    assert p["memory"] == "/sys/fs/cgroup/memory/hutch/x"
    assert p["name=systemd"] == "/sys/fs/cgroup/systemd/hutch/x"
    assert p[""] == "/sys/fs/cgroup/unified/hutch/x"
    assert set(p) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
                      "pids", "name=systemd", ""}


def test_relative_cgroups_path_is_below_our_own_cgroup_in_each_hierarchy(v1fs):
    p = open_manager("box/x", "ctr1", fs=v1fs).paths()
    assert p["memory"] == "/sys/fs/cgroup/memory/process_api/abc/box/x"
    assert p["cpu"] == "/sys/fs/cgroup/cpu/box/x"


def test_empty_cgroups_path_uses_the_container_id_relative_like_runc(v1fs):
    for empty in (None, ""):
        p = open_manager(empty, "ctr1", fs=v1fs).paths()
        assert p["memory"] == "/sys/fs/cgroup/memory/process_api/abc/ctr1"
        assert p["pids"] == "/sys/fs/cgroup/pids/ctr1"


def test_dotdot_cannot_climb_out_of_the_hierarchy(v1fs):
    assert clean_path("../../etc") == "etc"
    assert clean_path("/a/../../b") == "/b"
    p = open_manager("../../../x", "c", fs=v1fs).paths()
    assert p["cpu"] == "/sys/fs/cgroup/cpu/x"


def test_root_cgroups_path_is_refused(v1fs):
    with pytest.raises(SpecError) as ei:
        open_manager("/", "c", fs=v1fs)
    assert ei.value.field == "linux.cgroupsPath"


def test_systemd_slice_prefix_name_maps_to_a_scope_directory(v1fs):
    p = open_manager("system.slice:docker:abc", "c", systemd=True, fs=v1fs).paths()
    assert p["memory"] == "/sys/fs/cgroup/memory/system.slice/docker-abc.scope"
    p = open_manager("a-b.slice:p:n", "c", systemd=True, fs=v1fs).paths()
    assert p["cpu"] == "/sys/fs/cgroup/cpu/a.slice/a-b.slice/p-n.scope"
    p = open_manager(None, "c9", systemd=True, fs=v1fs).paths()
    assert p["cpu"] == "/sys/fs/cgroup/cpu/system.slice/runc-c9.scope"
    p = open_manager(":p:n", "c9", systemd=True, fs=v1fs).paths()
    assert p["cpu"] == "/sys/fs/cgroup/cpu/system.slice/p-n.scope"


@pytest.mark.parametrize("bad", ["nocolons", "a:b", "bad/slice.slice:p:n", "x:p:n",
                                 "a--b.slice:p:n", "system.slice:p:../x"])
def test_malformed_systemd_cgroups_path_is_a_spec_error(v1fs, bad):
    with pytest.raises(SpecError):
        open_manager(bad, "c", systemd=True, fs=v1fs)


def test_expand_slice_nests_like_systemd():
    assert expand_slice("test-a-b.slice") == "/test.slice/test-a.slice/test-a-b.slice"
    assert expand_slice("-.slice") == "/"


def test_mount_root_below_the_real_root_is_accounted_for(tmp_path):
    mi = ("1 0 0:1 /ctr /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"
          "2 0 0:2 /ctr /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    fs = CgroupFS(str(tmp_path), mountinfo=mi,
                  self_cgroup="5:devices:/ctr/sub\n4:memory:/ctr\n")
    p = open_manager("rel", "c", fs=fs).paths()
    assert p["devices"] == "/sys/fs/cgroup/devices/sub/rel"
    assert p["memory"] == "/sys/fs/cgroup/memory/rel"


def test_comounted_controllers_share_one_directory(tmp_path):
    mi = ("1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
          "2 0 0:2 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n")
    fs = CgroupFS(str(tmp_path), mountinfo=mi, self_cgroup="")
    p = open_manager("/x", "c", fs=fs).paths()
    assert p["cpu"] == p["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/x"


def test_pure_cgroup2_host_gets_the_v2_manager_below_our_parent_cgroup(v2fs):
    m = open_manager("rel", "c", fs=v2fs)
    assert m.version == 2
    # fs2._defaultDirPath: the parent of our own cgroup (ours has processes in it).
    assert m.paths() == {"": "/sys/fs/cgroup/user.slice/rel"}
    assert open_manager("/abs/x", "c", fs=v2fs).paths() == {"": "/sys/fs/cgroup/abs/x"}


def test_no_cgroup_mounts_is_not_supported(tmp_path):
    fs = CgroupFS(str(tmp_path), mountinfo="25 1 0:22 / /proc rw - proc proc rw\n",
                  self_cgroup="")
    with pytest.raises(NotSupported):
        open_manager("/x", "c", fs=fs)


def test_v1_without_devices_controller_is_refused(tmp_path):
    mi = "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    fs = CgroupFS(str(tmp_path), mountinfo=mi, self_cgroup="")
    with pytest.raises(NotSupported, match="devices"):
        open_manager("/x", "c", fs=fs)


# --- v1 create / join / destroy ---------------------------------------------------------

def test_v1_create_makes_the_cgroup_in_every_hierarchy_and_copies_cpuset(v1fs):
    m = created(v1fs, "/a/b")
    for path in m.paths().values():
        assert v1fs.isdir(path)
    for d in ("/sys/fs/cgroup/cpuset/a", "/sys/fs/cgroup/cpuset/a/b"):
        assert v1fs.read(d + "/cpuset.cpus") == "0-3"
        assert v1fs.read(d + "/cpuset.mems") == "0"


def test_v1_add_pid_joins_every_hierarchy_and_pids_lists_it(v1fs):
    m = created(v1fs, "/x")
    m.add_pid(4242)
    assert len(written(v1fs, "/cgroup.procs")) == len(set(m.paths().values()))
    assert m.pids() == [4242]


def test_v1_destroy_is_idempotent_and_works_from_state(v1fs):
    m = created(v1fs, "/x")
    state = json.loads(json.dumps(m.to_state()))
    m2 = manager_from_state(state, fs=v1fs)
    assert m2.paths() == m.paths()
    m2.destroy()
    m2.destroy()
    assert not any(v1fs.exists(p) for p in m.paths().values())
    assert v1fs.isdir("/sys/fs/cgroup/memory")


def test_v1_destroy_of_a_busy_cgroup_raises_after_retrying(v1fs):
    m = created(v1fs, "/x")
    m.rmdir_delays = (0.0, 0.0)
    m.add_pid(7)
    with pytest.raises(FailedPrecondition, match="cannot remove"):
        m.destroy()


# --- v1 apply ---------------------------------------------------------------------------

def test_v1_memory_limit_then_swap_when_swap_is_below_current_limit(v1fs):
    m = created(v1fs, "/x")
    assert m.apply({"memory": {"limit": 33554432, "swap": 67108864,
                               "reservation": 16777216}}) == []
    order = [os.path.basename(p) for p, _ in v1fs.writes
             if "memory." in os.path.basename(p)]
    assert order == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                     "memory.soft_limit_in_bytes"]
    mp = m.paths()["memory"]
    assert v1fs.read(mp + "/memory.limit_in_bytes") == "33554432"
    assert v1fs.read(mp + "/memory.memsw.limit_in_bytes") == "67108864"


def test_v1_swap_is_raised_before_the_limit_when_it_grows_past_the_current_limit(v1fs):
    m = created(v1fs, "/x")
    v1fs.put(m.paths()["memory"] + "/memory.limit_in_bytes", "1048576")
    m.apply({"memory": {"limit": 33554432, "swap": 67108864}})
    order = [os.path.basename(p) for p, _ in v1fs.writes if "limit_in_bytes" in p]
    assert order == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_unlimited_memory_sets_unlimited_swap_too(v1fs):
    m = created(v1fs, "/x")
    m.apply({"memory": {"limit": -1}})
    assert written(v1fs, "memory.memsw.limit_in_bytes") == ["-1"]
    assert written(v1fs, "memory.limit_in_bytes") == ["-1"]


def test_v1_swap_without_swap_accounting_is_a_warning(v1fs):
    m = created(v1fs, "/x")
    os.unlink(v1fs.real(m.paths()["memory"] + "/memory.memsw.limit_in_bytes"))
    w = m.apply({"memory": {"limit": 1 << 25, "swap": 1 << 26}})
    assert any("memory.swap" in x and "memsw" in x for x in w)
    assert written(v1fs, "memory.limit_in_bytes") == [str(1 << 25)]


def test_v1_kernel_memory_is_ignored_with_a_warning_and_other_knobs_written(v1fs):
    m = created(v1fs, "/x")
    w = m.apply({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20, "swappiness": 10,
                            "disableOOMKiller": True}})
    assert len(w) == 1 and "kernel" in w[0]
    assert not written(v1fs, "memory.kmem.limit_in_bytes")
    assert written(v1fs, "memory.swappiness") == ["10"]
    assert written(v1fs, "memory.oom_control") == ["1"]


def test_v1_cpu_files_in_runc_formats(v1fs):
    m = created(v1fs, "/x")
    w = m.apply({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1",
                         "mems": "0", "realtimePeriod": 1000000, "realtimeRuntime": 950000}})
    assert w == []
    assert written(v1fs, "cpu.shares") == ["512"]
    assert written(v1fs, "cpu.cfs_period_us") == ["100000"]
    assert written(v1fs, "cpu.cfs_quota_us") == ["50000"]
    assert written(v1fs, "cpuset.cpus")[-1] == "0-1"
    assert written(v1fs, "cpu.rt_period_us") == ["1000000"]
    assert written(v1fs, "cpu.rt_runtime_us") == ["950000"]


def test_v1_missing_realtime_files_are_warnings(v1fs):
    m = created(v1fs, "/x")
    for f in ("cpu.rt_period_us", "cpu.rt_runtime_us"):
        os.unlink(v1fs.real(m.paths()["cpu"] + "/" + f))
    w = m.apply({"cpu": {"realtimeRuntime": 1000}})
    assert len(w) == 1 and "realtimeRuntime" in w[0] and "cpu.rt_runtime_us" in w[0]


@pytest.mark.parametrize("limit,expected", [(64, ["64"]), (0, []), (-1, ["max"])])
def test_v1_pids_limit_negative_means_max_and_zero_leaves_it_alone(v1fs, limit, expected):
    m = created(v1fs, "/x")
    m.apply({"pids": {"limit": limit}})
    assert written(v1fs, "pids.max") == expected


def test_v1_devices_deny_all_then_rules_in_order(v1fs):
    m = created(v1fs, "/x")
    m.apply({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "access": "rwm"},
        {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"},
    ]})
    devs = [(os.path.basename(p), v) for p, v in v1fs.writes if "/devices." in p]
    assert devs == [("devices.deny", "a"), ("devices.deny", "a *:* rwm"),
                    ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 136:* rwm"),
                    ("devices.deny", "b 8:0 w")]


def test_v1_unified_resources_are_not_supported(v1fs):
    m = created(v1fs, "/x")
    with pytest.raises(NotSupported, match="cgroup v2"):
        m.apply({"unified": {"memory.high": "1000"}})


def test_v1_limit_on_an_unmounted_controller_is_not_supported(v1fs):
    m = created(v1fs, "/x")
    with pytest.raises(NotSupported, match="hugetlb"):
        m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]})

def test_v1_network_classes_without_net_cls_or_net_prio_are_warnings(v1fs):
    m = created(v1fs, "/x")
    w = m.apply({"network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 5}]}})
    assert len(w) == 2
    assert "classID" in w[0] and "net_cls" in w[0]
    assert "priorities" in w[1] and "net_prio" in w[1]


def test_apply_none_or_empty_writes_nothing(v1fs):
    m = created(v1fs, "/x")
    n = len(v1fs.writes)
    assert m.apply(None) == [] and m.apply({}) == []
    assert len(v1fs.writes) == n


# --- v2 ---------------------------------------------------------------------------------

def test_v2_create_enables_all_controllers_in_ancestors_only(v2fs):
    m = open_manager("/a/b", "c", fs=v2fs)
    m.create()
    assert v2fs.read("/sys/fs/cgroup/cgroup.subtree_control") == "cpu cpuset hugetlb io memory pids"
    assert v2fs.read("/sys/fs/cgroup/a/cgroup.subtree_control") == "cpu cpuset hugetlb io memory pids"
    assert v2fs.read("/sys/fs/cgroup/a/b/cgroup.subtree_control") == ""
    assert set(v2fs.read("/sys/fs/cgroup/a/b/cgroup.controllers").split()) >= {"memory", "pids"}


def test_v2_apply_converts_v1_shaped_values_like_runc(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    w = m.apply({"memory": {"limit": 33554432, "swap": 67108864, "reservation": 1 << 20,
                            "swappiness": 10, "disableOOMKiller": True, "kernel": 5},
                 "cpu": {"shares": 1024, "quota": 50000, "cpus": "0", "mems": "0",
                         "realtimeRuntime": 5},
                 "pids": {"limit": 64}})
    d = "/sys/fs/cgroup/x/"
    assert v2fs.read(d + "memory.max") == "33554432"
    assert v2fs.read(d + "memory.swap.max") == "33554432"
    assert v2fs.read(d + "memory.low") == "1048576"
    assert v2fs.read(d + "cpu.weight") == "39"
    assert v2fs.read(d + "cpu.max") == "50000 100000"
    assert v2fs.read(d + "cpuset.cpus") == "0"
    assert v2fs.read(d + "pids.max") == "64"
    text = " ".join(w)
    for word in ("kernel", "swappiness", "disableOOMKiller", "realtime"):
        assert word in text


def test_v2_swap_equal_to_limit_disables_swap_and_minus_one_is_max(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    m.apply({"memory": {"limit": 1 << 25, "swap": 1 << 25}})
    assert written(v2fs, "memory.swap.max") == ["0"]
    m.apply({"memory": {"limit": -1}, "cpu": {"quota": -1, "period": 200000}})
    assert written(v2fs, "memory.swap.max")[-1] == "max"
    assert written(v2fs, "memory.max")[-1] == "max"
    assert written(v2fs, "cpu.max") == ["max 200000"]


def test_v2_swap_without_memory_limit_is_invalid(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    with pytest.raises(SpecError):
        m.apply({"memory": {"swap": 1 << 25}})


def test_v2_unified_keys_are_written_last(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    m.apply({"memory": {"limit": 1000000}, "unified": {"memory.max": "2000000"}})
    assert written(v2fs, "memory.max") == ["1000000", "2000000"]


def test_v2_unified_key_of_a_missing_controller_is_not_supported(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    with pytest.raises(NotSupported, match="rdma"):
        m.apply({"unified": {"rdma.max": "x"}})


def test_v2_limits_without_the_controller_are_not_supported(v2fs):
    v2fs.put("/sys/fs/cgroup/cgroup.controllers", "cpu")
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    with pytest.raises(NotSupported, match="'memory'"):
        m.apply({"memory": {"limit": 1 << 25}})
    with pytest.raises(NotSupported, match="'pids'"):
        m.apply({"pids": {"limit": 10}})


def test_v2_device_rules_are_reported_not_silently_dropped(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    w = m.apply({"devices": [{"allow": False, "access": "rwm"}]})
    assert len(w) == 1 and "devices" in w[0]


def test_v2_join_state_and_destroy(v2fs):
    m = open_manager("/a/b", "c", fs=v2fs)
    m.create()
    m.add_pid(99)
    assert m.pids() == [99]
    v2fs.put("/sys/fs/cgroup/a/b/cgroup.procs", "")
    m2 = manager_from_state(json.loads(json.dumps(m.to_state())), fs=v2fs)
    m2.destroy()
    m2.destroy()
    assert not v2fs.exists("/sys/fs/cgroup/a/b") and v2fs.isdir("/sys/fs/cgroup/a")


@pytest.mark.parametrize("shares,weight", [(0, 0), (2, 1), (1024, 39), (262144, 10000)])
def test_shares_to_weight_is_runcs_formula(shares, weight):
    assert shares_to_weight(shares) == weight


# --- validate_resources -----------------------------------------------------------------

def test_valid_resources_pass():
    validate_resources(None)
    validate_resources({
        "memory": {"limit": -1, "swap": -1, "swappiness": 0, "disableOOMKiller": False},
        "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-3,5", "mems": ""},
        "pids": {"limit": -1},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}],
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                              "rate": 1000}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "unified": {"memory.high": "max"},
    })


@pytest.mark.parametrize("resources,field", [
    ([], "linux.resources"),
    ({"memory": {"limit": "32M"}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": True}}, "linux.resources.memory.limit"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"limit": 100, "swap": 50}}, "linux.resources.memory.swap"),
    ({"memory": {"disableOOMKiller": 1}}, "linux.resources.memory.disableOOMKiller"),
    ({"cpu": {"shares": -5}}, "linux.resources.cpu.shares"),
    ({"cpu": {"cpus": "0-3; rm"}}, "linux.resources.cpu.cpus"),
    ({"cpu": "fast"}, "linux.resources.cpu"),
    ({"pids": {}}, "linux.resources.pids.limit"),
    ({"pids": {"limit": 1.5}}, "linux.resources.pids.limit"),
    ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow"),
    ({"devices": [{"allow": True, "type": "x"}]}, "linux.resources.devices[0].type"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "linux.resources.devices[0].access"),
    ({"hugepageLimits": [{"pageSize": "../2MB"}]},
     "linux.resources.hugepageLimits[0].pageSize"),
    ({"unified": {"../memory.max": "1"}}, "linux.resources.unified.../memory.max"),
    ({"unified": {"a/b": "1"}}, "linux.resources.unified.a/b"),
    ({"unified": {"memory.max": 5}}, "linux.resources.unified.memory.max"),
])
def test_malformed_resources_are_spec_errors_naming_the_field(resources, field):
    with pytest.raises(SpecError) as ei:
        validate_resources(resources)
    assert ei.value.field == field


def test_apply_validates_before_writing(v1fs):
    m = created(v1fs, "/x")
    n = len(v1fs.writes)
    with pytest.raises(SpecError):
        m.apply({"pids": {"limit": 5}, "memory": {"limit": "lots"}})
    assert len(v1fs.writes) == n


# --- freezer ----------------------------------------------------------------------------

class FreezingFS(FakeCgroupFS):
    """freezer.state / cgroup.events read back "in progress" `busy` times first."""

    def __init__(self, base: FakeCgroupFS, busy: int) -> None:
        super().__init__(base.root, base._mountinfo, base._self_cgroup)
        self.busy = busy

    def read(self, path: str) -> str:
        text = super().read(path)
        if self.busy and path.endswith("freezer.state") and text.strip() == "FROZEN":
            self.busy -= 1
            return "FREEZING\n"
        if path.endswith("cgroup.events") and "frozen" in text:
            if self.busy:
                self.busy -= 1
                return "populated 1\nfrozen 0\n"
            frozen = super().read(os.path.dirname(path) + "/cgroup.freeze").strip()
            return f"populated 1\nfrozen {frozen}\n"
        return text


def _v1_with_freezer(v1fs, busy=0):
    for name, text in {"freezer.state": "THAWED", "freezer.self_freezing": "0"}.items():
        v1fs.put(f"/sys/fs/cgroup/freezer/{name}", text)
    fs = FreezingFS(v1fs, busy)
    m = open_manager("/x", "ctr1", fs=fs)
    m.create()
    return fs, m


def test_v1_freeze_writes_frozen_until_the_kernel_reports_it(v1fs):
    fs, m = _v1_with_freezer(v1fs, busy=3)
    m.freeze()
    assert written(fs, "freezer.state") == ["FROZEN"] * 4
    fs.put(m.paths()["freezer"] + "/freezer.self_freezing", "1")
    assert m.frozen()
    m.thaw()
    assert written(fs, "freezer.state")[-1] == "THAWED"
    fs.put(m.paths()["freezer"] + "/freezer.self_freezing", "0")
    assert not m.frozen()


def test_v1_frozen_by_an_ancestor_only_is_not_paused(v1fs):
    fs, m = _v1_with_freezer(v1fs)
    fs.put(m.paths()["freezer"] + "/freezer.state", "FROZEN")
    fs.put(m.paths()["freezer"] + "/freezer.self_freezing", "0")
    assert not m.frozen()


def test_v1_freeze_stuck_in_freezing_times_out_and_thaws(v1fs):
    from hutch.errors import Unavailable

    fs, m = _v1_with_freezer(v1fs, busy=10**9)
    m.freeze_timeout = 0.05
    with pytest.raises(Unavailable, match="unable to freeze"):
        m.freeze()
    assert fs.read(m.paths()["freezer"] + "/freezer.state") == "THAWED"


def test_v1_freeze_without_the_freezer_controller_is_not_supported(v1fs):
    m = created(v1fs, "/x")
    state = m.to_state()
    del state["paths"]["freezer"]
    m2 = manager_from_state(state, fs=v1fs)
    with pytest.raises(NotSupported, match="freezer"):
        m2.freeze()
    assert not m2.frozen()


def _v2_with_freeze(v2fs, busy=0):
    v2fs.put("/sys/fs/cgroup/cgroup.freeze", "0")
    v2fs.put("/sys/fs/cgroup/cgroup.events", "populated 1\nfrozen 0\n")
    fs = FreezingFS(v2fs, busy)
    m = open_manager("/x", "c", fs=fs)
    m.create()
    return fs, m


def test_v2_freeze_waits_for_frozen_in_cgroup_events(v2fs):
    fs, m = _v2_with_freeze(v2fs, busy=2)
    m.freeze()
    assert written(fs, "cgroup.freeze") == ["1"] and fs.busy == 0
    assert m.frozen()
    m.thaw()
    assert written(fs, "cgroup.freeze") == ["1", "0"]
    assert not m.frozen()


def test_v2_freeze_timeout_unfreezes_again(v2fs):
    from hutch.errors import Unavailable

    fs, m = _v2_with_freeze(v2fs, busy=10**9)
    m.freeze_timeout = 0.03
    with pytest.raises(Unavailable, match="freeze"):
        m.freeze()
    assert fs.read(m.path + "/cgroup.freeze") == "0"


def test_v2_without_cgroup_freeze_cannot_pause_but_thaw_is_a_no_op(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    with pytest.raises(NotSupported, match="cgroup.freeze"):
        m.freeze()
    m.thaw()
    assert not m.frozen()


# --- OOM ----------------------------------------------------------------------------------

def test_v1_oom_kill_count_and_under_oom_from_oom_control(v1fs):
    m = created(v1fs, "/x")
    v1fs.put(m.paths()["memory"] + "/memory.oom_control",
             "oom_kill_disable 1\nunder_oom 1\noom_kill 3\n")
    assert m.oom_kill_count() == 3 and m.under_oom()
    v1fs.put(m.paths()["memory"] + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
    assert m.oom_kill_count() == 0 and not m.under_oom()  # kernel < 4.13: no oom_kill


def test_v2_oom_kill_count_from_memory_events(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    assert m.oom_kill_count() == 0  # no memory controller: no memory.events
    v2fs.put(m.path + "/memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n"
                                        "oom_group_kill 0\n")
    assert m.oom_kill_count() == 2 and not m.under_oom()


# --- stats --------------------------------------------------------------------------------

V1_STAT_FILES = {
    "cpu": {"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\n"},
    "cpuacct": {"cpuacct.usage": "13122204\n", "cpuacct.usage_percpu": "10384120 2738084 \n",
                "cpuacct.stat": "user 0\nsystem 1\n",
                "cpuacct.usage_all": "cpu user system\n0 0 8000000\n1 0 0\n"},
    "cpuset": {"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n", "cpuset.cpu_exclusive": "0",
               "cpuset.mem_hardwall": "0", "cpuset.mem_exclusive": "0",
               "cpuset.memory_migrate": "0", "cpuset.memory_spread_page": "0",
               "cpuset.memory_spread_slab": "0", "cpuset.memory_pressure": "0",
               "cpuset.sched_load_balance": "1", "cpuset.sched_relax_domain_level": "-1"},
    "memory": {"memory.stat": "cache 0\nrss 53248\ntotal_rss 53248\n",
               "memory.usage_in_bytes": "991232", "memory.max_usage_in_bytes": "2793472",
               "memory.failcnt": "0", "memory.limit_in_bytes": "67108864",
               "memory.memsw.usage_in_bytes": "991232",
               "memory.memsw.max_usage_in_bytes": "2793472", "memory.memsw.failcnt": "0",
               "memory.kmem.usage_in_bytes": "487424", "memory.kmem.max_usage_in_bytes": "0",
               "memory.kmem.failcnt": "0", "memory.kmem.limit_in_bytes": HUGE,
               "memory.kmem.tcp.usage_in_bytes": "0", "memory.kmem.tcp.max_usage_in_bytes": "0",
               "memory.kmem.tcp.failcnt": "0", "memory.kmem.tcp.limit_in_bytes": HUGE},
    "pids": {"pids.current": "1", "pids.max": "max"},
    "blkio": {"blkio.bfq.io_serviced_recursive": "",
              "blkio.throttle.io_serviced_recursive": "254:0 Read 3\n254:0 Write 1\nTotal 4\n",
              "blkio.throttle.io_service_bytes_recursive": "254:0 Read 4096\nTotal 4096\n"},
}


def test_v1_stats_have_runc_events_shape_and_go_omitempty(v1fs):
    m = created(v1fs, "/x")
    for ctrl, files in V1_STAT_FILES.items():
        for name, text in files.items():
            v1fs.put(m.paths()[ctrl] + "/" + name, text)
    s = m.stats()
    assert list(s) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                       "network_interfaces"]
    assert s["cpu"] == {
        "usage": {"total": 13122204, "percpu": [10384120, 2738084],
                  "percpu_kernel": [8000000, 0], "percpu_user": [0, 0],
                  "kernel": 10000000, "user": 0},
        "throttling": {"periods": 10, "throttledPeriods": 4, "throttledTime": 123456}}
    assert s["cpuset"]["cpus"] == [0, 1] and s["cpuset"]["sched_relax_domain_level"] == -1
    mem = s["memory"]
    assert "cache" not in mem  # 0: omitted like Go's omitempty
    assert mem["usage"] == {"limit": 67108864, "usage": 991232, "max": 2793472, "failcnt": 0}
    assert mem["kernel"] == {"limit": int(HUGE), "usage": 487424, "failcnt": 0}
    assert mem["kernelTCP"] == {"limit": int(HUGE), "failcnt": 0}
    assert mem["raw"] == {"cache": 0, "rss": 53248, "total_rss": 53248}
    assert s["pids"] == {"current": 1}  # "max" is no limit: 0, omitted
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 254, "op": "Read", "value": 4096}],
        "ioServicedRecursive": [{"major": 254, "op": "Read", "value": 3},
                                {"major": 254, "op": "Write", "value": 1}]}
    assert s["hugetlb"] == {} and s["intel_rdt"] == {} and s["network_interfaces"] is None
    json.dumps(s)


def test_v1_stats_of_an_idle_cgroup_keep_the_always_present_fields(v1fs):
    m = created(v1fs, "/x")
    s = m.stats()
    assert s["cpu"]["usage"] == {"kernel": 0, "user": 0}
    assert s["memory"] == {k: {"limit": 0, "failcnt": 0}
                           for k in ("usage", "swap", "kernel", "kernelTCP")}
    assert s["pids"] == {} and s["cpuset"]["sched_load_balance"] == 0
    assert s["blkio"] == {}


def test_v2_stats_convert_usec_and_report_swap_as_memory_plus_swap(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    files = {"cpu.stat": "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 3\n"
                         "nr_throttled 1\nthrottled_usec 7\n",
             "memory.stat": "anon 4096\nfile 8192\n", "memory.current": "12288",
             "memory.max": "67108864", "memory.swap.current": "100",
             "memory.swap.max": "max", "pids.current": "2", "pids.max": "64",
             "io.stat": "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"}
    for name, text in files.items():
        v2fs.put(m.path + "/" + name, text)
    s = m.stats()
    assert s["cpu"] == {"usage": {"total": 2000000, "kernel": 500000, "user": 1500000},
                        "throttling": {"periods": 3, "throttledPeriods": 1,
                                       "throttledTime": 7000}}
    assert s["memory"]["cache"] == 8192
    assert s["memory"]["usage"] == {"limit": 67108864, "usage": 12288, "failcnt": 0}
    assert s["memory"]["swap"] == {"limit": 2**64 - 1, "usage": 12388, "failcnt": 0}
    assert s["pids"] == {"current": 2, "limit": 64}
    assert s["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 254, "op": "Read", "value": 4096}, {"major": 254, "op": "Write"}]
    assert s["blkio"]["ioServicedRecursive"][0] == {"major": 254, "op": "Read", "value": 1}


def test_v2_stats_without_pids_controller_count_the_processes(v2fs):
    m = open_manager("/x", "c", fs=v2fs)
    m.create()
    m.add_pid(5)
    m.add_pid(6)
    assert m.stats()["pids"] == {"current": 2}


def test_stat_parsers():
    from hutch.runtime.cgroups.stats import (
        hugepage_size_name,
        parse_blkio,
        parse_cpu_list,
        parse_uint,
    )

    assert parse_cpu_list("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8] and parse_cpu_list("") == []
    assert hugepage_size_name("hugepages-2048kB") == "2MB"
    assert hugepage_size_name("hugepages-1048576kB") == "1GB"
    assert hugepage_size_name("hugepages-64kB") == "64KB"
    assert parse_uint("max") == 2**64 - 1 and parse_uint("-5") == 0
    assert parse_blkio("8:0 6792\nTotal 1\n") == [{"major": 8, "minor": 0, "op": "",
                                                   "value": 6792}]
    with pytest.raises(ValueError):
        parse_blkio("garbage\n")


# --- update -------------------------------------------------------------------------------

def test_update_skips_device_rules_and_zero_fields_leave_files_alone(v1fs):
    from hutch.runtime.cgroups.update import merge_update

    m = created(v1fs, "/x")
    stored = {"devices": [{"allow": False, "access": "rwm"}],
              "memory": {"limit": 1 << 26, "swappiness": 10},
              "cpu": {"shares": 512, "quota": 20000, "period": 100000},
              "pids": {"limit": 64}, "blockIO": {"weight": 300}}
    m.apply(stored)
    v1fs.writes.clear()
    merged = merge_update(stored, {"memory": {"limit": 1 << 25}})
    assert m.update(merged) == []
    names = [os.path.basename(p) for p, _ in v1fs.writes]
    assert not [n for n in names if n.startswith("devices.")]
    assert written(v1fs, "memory.limit_in_bytes") == [str(1 << 25)]
    assert written(v1fs, "memory.swappiness") == ["10"]  # kept, re-applied as runc does
    assert not written(v1fs, "pids.max") and not written(v1fs, "cpu.shares")
    assert not written(v1fs, "cpu.cfs_quota_us")


def test_merge_update_follows_runc_update():
    from hutch.runtime.cgroups.update import changes_from_flags, merge_update

    stored = {"devices": [{"allow": False}], "memory": {"limit": 100, "swappiness": 5},
              "cpu": {"quota": 20000, "period": 100000, "shares": 512, "cpus": "0"},
              "pids": {"limit": 10}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}
    merged = merge_update(stored, changes_from_flags({"cpu-period": "50000"}))
    # a lone period keeps the stored quota so both are written together
    assert merged["cpu"]["period"] == 50000 and merged["cpu"]["quota"] == 20000
    # fields not given become 0 / "" (leave alone), the rest is kept
    assert merged["cpu"]["shares"] == 0 and merged["cpu"]["cpus"] == ""
    assert merged["memory"] == {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0,
                                "kernelTCP": 0, "swappiness": 5}
    assert merged["pids"] == {"limit": 0} and merged["devices"] == stored["devices"]
    assert merged["hugepageLimits"] == stored["hugepageLimits"]
    assert stored["cpu"]["period"] == 100000  # not modified in place
    both = merge_update(stored, changes_from_flags({"cpu-quota": "-1", "cpu-period": "1000"}))
    assert (both["cpu"]["quota"], both["cpu"]["period"]) == (-1, 1000)


@pytest.mark.parametrize("text,value", [("100", 100), ("64m", 64 << 20), ("1.5g", 3 << 29),
                                        ("512KiB", 512 << 10), ("2MB", 2 << 20),
                                        ("-1", -1)])
def test_update_memory_flags_take_docker_sizes(text, value):
    from hutch.runtime.cgroups.update import changes_from_flags

    assert changes_from_flags({"memory": text})["memory"]["limit"] == value


@pytest.mark.parametrize("flags", [{"memory": "lots"}, {"cpu-share": "-3"},
                                   {"pids-limit": "x"}, {"nope": "1"}])
def test_update_bad_flags_are_invalid_arguments(flags):
    from hutch.errors import InvalidArgument
    from hutch.runtime.cgroups.update import changes_from_flags

    with pytest.raises(InvalidArgument):
        changes_from_flags(flags)


def test_update_from_a_resources_file_overlays_the_zeros():
    from hutch.runtime.cgroups.update import changes_from_json

    r = changes_from_json({"memory": {"limit": 5}, "unified": {"memory.high": "1"}})
    assert r["memory"]["limit"] == 5 and r["memory"]["swap"] == 0
    assert r["cpu"]["shares"] == 0 and r["unified"] == {"memory.high": "1"}
