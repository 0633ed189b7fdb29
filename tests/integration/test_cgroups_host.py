"""cgroup managers on the real kernel (root; this host is cgroup v1 hybrid).

Every test puts its cgroups under a unique /hutch-test-<random> name and its finalizers
kill the processes it started and remove those cgroups, also when an assert fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time

import pytest

from hutch.errors import NotSupported
from hutch.linux import libc
from hutch.runtime.cgroups import CgroupFS, manager_from_state, open_manager
from hutch.runtime.cgroups.base import remove_path

pytestmark = pytest.mark.integration

MEM = 32 * 1024 * 1024


def _is_v1_host() -> bool:
    try:
        return open_manager("/hutch-probe", "p").version == 1
    except Exception:
        return False


needs_root_v1 = pytest.mark.skipif(os.geteuid() != 0 or not _is_v1_host(),
                                   reason="needs root on a cgroup v1/hybrid host")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _cleanup_dirs(paths: list[str]) -> None:
    for p in paths:
        if os.path.isdir(p):
            try:
                remove_path(CgroupFS(), p)
            except OSError:
                pass


@pytest.fixture
def sleepers(request):
    """Start `sleep` processes; all are killed and reaped at teardown."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        p = subprocess.Popen(["sleep", "300"])
        procs.append(p)
        return p

    def fin() -> None:
        for p in procs:
            p.kill()
            p.wait()
    request.addfinalizer(fin)
    return start


@pytest.fixture
def host_manager(request):
    name = f"/hutch-test-{secrets.token_hex(4)}"
    m = open_manager(name, "hutch-test")
    paths = list(m.paths().values())

    def fin() -> None:
        for pid in m.pids():
            _kill(pid)
        time.sleep(0.05)
        try:
            m.destroy()
        finally:
            _cleanup_dirs(paths)
        assert not [p for p in paths if os.path.exists(p)]
    request.addfinalizer(fin)
    return m


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@needs_root_v1
def test_v1_manager_limits_a_real_process_and_leaves_nothing_behind(host_manager, sleepers):
    m = host_manager
    m.create()
    paths = m.paths()
    assert all(os.path.isdir(p) for p in paths.values())
    warnings = m.apply({"memory": {"limit": MEM},
                        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                        "pids": {"limit": 64}})
    assert warnings == []
    child = sleepers()
    m.add_pid(child.pid)
    assert m.pids() == [child.pid]
    own = _read(f"/proc/{child.pid}/cgroup")
    name = paths["memory"].rsplit("/", 1)[1]
    for ctrl in ("memory", "cpu", "pids", "devices"):
        assert f":{ctrl}:/{name}" in own
    assert f"0::/{name}" in own  # the hybrid cgroup2 directory, as runc does
    assert _read(paths["memory"] + "/memory.limit_in_bytes") == str(MEM)
    assert _read(paths["cpu"] + "/cpu.shares") == "512"
    assert _read(paths["cpu"] + "/cpu.cfs_quota_us") == "50000"
    assert _read(paths["cpu"] + "/cpu.cfs_period_us") == "100000"
    assert _read(paths["pids"] + "/pids.max") == "64"
    assert _read(paths["cpuset"] + "/cpuset.cpus") != ""  # copied, else the join fails

    child.kill()
    child.wait()
    again = manager_from_state(json.loads(json.dumps(m.to_state())))
    again.destroy()
    again.destroy()
    assert not [p for p in paths.values() if os.path.exists(p)]


@needs_root_v1
def test_v1_swap_and_devices_on_the_real_kernel(host_manager, sleepers):
    m = host_manager
    m.create()
    w = m.apply({"memory": {"limit": MEM, "swap": 2 * MEM, "kernel": MEM},
                 "devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 3,
                              "access": "rwm"}]})
    assert len(w) == 1 and "kernel" in w[0]
    p = m.paths()
    assert _read(p["memory"] + "/memory.memsw.limit_in_bytes") == str(2 * MEM)
    assert _read(p["devices"] + "/devices.list") == "c 1:3 rwm"
    # Lowering both later works only in the right order (limit before memsw).
    m.apply({"memory": {"limit": MEM // 2, "swap": MEM}})
    assert _read(p["memory"] + "/memory.limit_in_bytes") == str(MEM // 2)
    assert _read(p["memory"] + "/memory.memsw.limit_in_bytes") == str(MEM)


RUNC = shutil.which("runc") or "/usr/sbin/runc"
COMPARED = ["memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes",
            "memory/memory.soft_limit_in_bytes", "memory/memory.swappiness",
            "cpu/cpu.shares", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us",
            "cpuset/cpuset.cpus", "cpuset/cpuset.mems", "pids/pids.max",
            "devices/devices.list"]


@needs_root_v1
@pytest.mark.skipif(not os.path.exists(RUNC) or not os.path.exists("/bin/busybox"),
                    reason="needs runc and busybox-static")
def test_v1_files_match_what_runc_writes(host_manager, sleepers, tmp_path, request):
    resources = {"memory": {"limit": MEM, "swap": 2 * MEM, "reservation": MEM // 2,
                            "swappiness": 10},
                 "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "0",
                         "mems": "0"},
                 "pids": {"limit": 99},
                 "devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 3,
                              "access": "rwm"}]}
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", bundle / "rootfs" / "bin" / "busybox")
    for d in ("proc", "dev", "sys"):
        (bundle / "rootfs" / d).mkdir()
    subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    runc_cg = f"/hutch-test-runc-{secrets.token_hex(4)}"
    spec["process"].update(args=["/bin/busybox", "sleep", "300"], terminal=False)
    spec["linux"]["cgroupsPath"] = runc_cg
    spec["linux"]["resources"] = resources
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = f"hutch-test-{secrets.token_hex(4)}"
    root = tmp_path / "runc-root"

    def fin() -> None:
        subprocess.run([RUNC, "--root", str(root), "delete", "-f", cid],
                       capture_output=True)
        _cleanup_dirs([f"/sys/fs/cgroup/{c}{runc_cg}" for c in os.listdir("/sys/fs/cgroup")])
    request.addfinalizer(fin)
    # A detached container inherits runc's stdio: no pipes, or run() waits for its EOF.
    with open(tmp_path / "runc.log", "w+") as log:
        rc = subprocess.run([RUNC, "--root", str(root), "run", "-d", cid], cwd=bundle,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            timeout=30).returncode
        log.seek(0)
        assert rc == 0, log.read()

    # runc adds its default device allow list in spec conversion; the runtime passes
    # the complete list to us, so compare with the same list here.
    runc_devices = _read(f"/sys/fs/cgroup/devices{runc_cg}/devices.list").splitlines()
    ours = dict(resources)
    ours["devices"] = [{"allow": False, "access": "rwm"}] + [
        {"allow": True, "type": t, "major": None if ma == "*" else int(ma),
         "minor": None if mi == "*" else int(mi), "access": acc}
        for t, (ma, mi), acc in ((ln.split()[0], ln.split()[1].split(":"), ln.split()[2])
                                 for ln in runc_devices)]
    m = host_manager
    m.create()
    m.apply(ours)
    child = sleepers()
    m.add_pid(child.pid)
    p = m.paths()
    for f in COMPARED:
        ctrl, name = f.split("/")
        assert _read(f"{p[ctrl]}/{name}") == _read(f"/sys/fs/cgroup/{ctrl}{runc_cg}/{name}"), f


# --- cgroup v2 in a private mount namespace --------------------------------------------

def _v2_child(mnt: str, name: str, out: int) -> dict:
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("cgroup2", mnt, "cgroup2", 0)
    fs = CgroupFS(mountinfo=f"99 1 0:99 / {mnt} rw,relatime - cgroup2 cgroup2 rw\n",
                  self_cgroup="0::/\n")
    m = open_manager(name, "hutch-test", fs=fs)
    res: dict = {"version": m.version, "path": m.paths()[""]}
    m.create()
    res["created"] = os.path.isdir(m.paths()[""])
    sleeper = os.fork()
    if sleeper == 0:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        time.sleep(300)
        os._exit(0)
    try:
        m.add_pid(sleeper)
        res["procs"] = m.pids()
        res["sleeper"] = sleeper
        with open(f"/proc/{sleeper}/cgroup") as f:
            res["proc_cgroup"] = [ln for ln in f.read().splitlines() if ln.startswith("0::")]
        for key, resources in (("memory", {"memory": {"limit": MEM}}),
                               ("pids", {"pids": {"limit": 64}}),
                               ("cpu", {"cpu": {"quota": 50000, "period": 100000}})):
            try:
                m.apply(resources)
                res[key] = "applied"
            except NotSupported as e:
                res[key] = str(e)
        res["warnings"] = m.apply({"memory": {"swappiness": 10}, "network": {"classID": 1}})
        # The v2 freezer is core (no controller to enable): cgroup.freeze + cgroup.events.
        m.freeze()
        res["frozen"] = m.frozen()
        with open(f"{m.paths()['']}/cgroup.events") as f:
            res["events"] = f.read()
        m.thaw()
        res["thawed"] = not m.frozen()
        res["stats"] = m.stats()
        res["oom_kills"] = m.oom_kill_count()
    finally:
        os.kill(sleeper, signal.SIGKILL)
        os.waitpid(sleeper, 0)
    time.sleep(0.05)
    m.destroy()
    res["exists_after"] = os.path.exists(m.paths()[""])
    return res


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_v2_manager_on_a_cgroup2_mounted_in_a_private_mount_namespace(tmp_path, request):
    mnt = tmp_path / "cg2"
    mnt.mkdir()
    name = f"/hutch-test-v2-{secrets.token_hex(4)}"
    # The cgroup2 hierarchy is one per host: what we create shows up in the host's mount.
    host_views = [f"{m.split()[4]}{name}" for m in open("/proc/self/mountinfo")
                  if " - cgroup2 " in m]
    request.addfinalizer(lambda: _cleanup_dirs(host_views))
    # create() enables the available controllers in the root's subtree_control as runc
    # does on v2; on this hybrid host that root is the host's: undo what we enabled.
    roots = [p.rsplit(name, 1)[0] + "/cgroup.subtree_control" for p in host_views]
    before = {r: set(_read(r).split()) for r in roots if os.path.exists(r)}

    def restore() -> None:
        for r, had in before.items():
            for c in set(_read(r).split()) - had:
                with open(r, "w") as f:
                    f.write("-" + c)
    request.addfinalizer(restore)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            result = _v2_child(str(mnt), name, w)
        except BaseException as e:  # report, never return into pytest in the child
            result, code = {"error": repr(e)}, 1
        try:
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    res = json.loads(data)
    assert "error" not in res, res
    assert os.waitstatus_to_exitcode(status) == 0
    assert res["version"] == 2
    assert res["path"] == f"{mnt}{name}"
    assert res["created"] is True
    assert res["procs"] == [res["sleeper"]]
    assert res["proc_cgroup"] == [f"0::{name}"]
    for key in ("memory", "pids", "cpu"):
        assert "not available" in res[key] and repr(key) in res[key], res[key]
    assert any("swappiness" in x for x in res["warnings"])
    assert any("network" in x for x in res["warnings"])
    assert res["exists_after"] is False
    assert not [p for p in host_views if os.path.exists(p)]
    assert res["frozen"] is True and "frozen 1" in res["events"]
    assert res["thawed"] is True
    assert res["stats"]["pids"] == {"current": 1}  # counted from cgroup.procs
    assert res["stats"]["cpu"]["usage"]["kernel"] >= 0 and res["oom_kills"] == 0


# --- freezer, stats and update against runc on the same kernel ---------------------------

@pytest.fixture
def runc_container(tmp_path, request):
    """runc_container(resources) -> (id, cgroupsPath, runc argv prefix): a detached
    busybox sleep started by runc; deleted and its cgroups removed at teardown."""
    root = tmp_path / "runc-root"
    made: list[tuple[str, str]] = []

    def fin() -> None:
        for cid, cg in made:
            subprocess.run([RUNC, "--root", str(root), "delete", "-f", cid],
                           capture_output=True)
            _cleanup_dirs([f"/sys/fs/cgroup/{c}{cg}" for c in os.listdir("/sys/fs/cgroup")])
    request.addfinalizer(fin)

    def start(resources: dict) -> tuple[str, str, list[str]]:
        bundle = tmp_path / f"bundle{len(made)}"
        (bundle / "rootfs" / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", bundle / "rootfs" / "bin" / "busybox")
        for d in ("proc", "dev", "sys"):
            (bundle / "rootfs" / d).mkdir()
        subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
        spec = json.loads((bundle / "config.json").read_text())
        cg = f"/hutch-test-runc-{secrets.token_hex(4)}"
        spec["process"].update(args=["/bin/busybox", "sleep", "300"], terminal=False)
        spec["linux"]["cgroupsPath"] = cg
        spec["linux"]["resources"] = resources
        (bundle / "config.json").write_text(json.dumps(spec))
        cid = f"hutch-test-{secrets.token_hex(4)}"
        made.append((cid, cg))
        with open(tmp_path / "runc.log", "w+") as log:
            rc = subprocess.run([RUNC, "--root", str(root), "run", "-d", cid], cwd=bundle,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, timeout=30).returncode
            log.seek(0)
            assert rc == 0, log.read()
        return cid, cg, [RUNC, "--root", str(root)]

    return start


def _runc(argv: list[str], *args: str) -> str:
    res = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


needs_runc = pytest.mark.skipif(not os.path.exists(RUNC) or not os.path.exists("/bin/busybox"),
                                reason="needs runc and busybox-static")


@needs_root_v1
@needs_runc
def test_v1_freeze_and_runc_pause_agree(runc_container):
    cid, cg, runc = runc_container({})
    m = open_manager(cg, cid)
    pid = json.loads(_runc(runc, "state", cid))["pid"]
    m.freeze()
    assert m.frozen()
    assert json.loads(_runc(runc, "state", cid))["status"] == "paused"
    m.thaw()
    assert not m.frozen()
    assert json.loads(_runc(runc, "state", cid))["status"] == "running"
    _runc(runc, "pause", cid)
    assert m.frozen()
    _runc(runc, "resume", cid)
    assert not m.frozen()
    assert os.path.exists(f"/proc/{pid}")


def _shape(x):
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_shape(v) for v in x[:1]]
    return type(x).__name__


@needs_root_v1
@needs_runc
def test_v1_stats_have_the_shape_and_values_of_runc_events_stats(runc_container):
    cid, cg, runc = runc_container({"memory": {"limit": MEM}, "pids": {"limit": 50},
                                    "cpu": {"quota": 50000, "period": 100000}})
    mine = open_manager(cg, cid).stats()
    ev = json.loads(_runc(runc, "events", "--stats", cid))
    theirs = ev["data"]
    assert ev["type"] == "stats" and ev["id"] == cid
    # The sleeping container's numbers can move a little between the two reads (page
    # cache, a timer tick); keys, structure and the limits cannot.
    for key in ("memory", "cpu"):
        theirs[key].pop("raw", None), mine[key].pop("raw", None)
    assert _shape(mine) == _shape(theirs)
    assert list(mine) == list(theirs)
    assert mine["pids"] == theirs["pids"] == {"current": 1, "limit": 50}
    assert mine["cpuset"] == theirs["cpuset"]
    assert mine["memory"]["usage"]["limit"] == theirs["memory"]["usage"]["limit"] == MEM
    assert mine["memory"]["swap"]["limit"] == theirs["memory"]["swap"]["limit"]
    assert abs(mine["memory"]["usage"]["usage"] - theirs["memory"]["usage"]["usage"]) < MEM
    assert mine["cpu"]["usage"]["total"] <= theirs["cpu"]["usage"]["total"] + 50_000_000
    assert mine["blkio"] == theirs["blkio"] and mine["hugetlb"] == theirs["hugetlb"]


@needs_root_v1
@needs_runc
@pytest.mark.parametrize("flags", [
    {"memory": "48m", "memory-swap": "96m", "cpu-quota": "10000", "pids-limit": "33"},
    {"memory": "128m", "memory-swap": "256m", "cpu-period": "50000"},  # raise: memsw first
    {"cpu-share": "300", "cpuset-cpus": "0", "memory-reservation": "8m"},
], ids=["lower", "raise", "others"])
def test_v1_update_writes_what_runc_update_writes(runc_container, host_manager, sleepers,
                                                  flags):
    from hutch.runtime.cgroups.update import changes_from_flags, merge_update

    resources = {"memory": {"limit": 2 * MEM, "swap": 4 * MEM, "swappiness": 10},
                 "cpu": {"shares": 512, "quota": 20000, "period": 100000},
                 "pids": {"limit": 99}}
    cid, cg, runc = runc_container(resources)
    argv = [f"--{k}={v}" for k, v in flags.items()]
    _runc(runc, "update", *argv, cid)
    m = host_manager
    m.create()
    m.apply(resources)
    m.add_pid(sleepers().pid)
    assert m.update(merge_update(resources, changes_from_flags(flags))) == []
    p = m.paths()
    for f in COMPARED[:-1]:  # devices are not updated
        ctrl, name = f.split("/")
        assert _read(f"{p[ctrl]}/{name}") == _read(f"/sys/fs/cgroup/{ctrl}{cg}/{name}"), f
