"""cgroups: limits from linux.resources read back from the host's cgroup files (v1
controllers here; v2 when the unified hierarchy has controllers), removed on delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundles import cgroup_controllers, cgroup_dirs

pytestmark = pytest.mark.integration


def _is_v2_only() -> bool:
    return "memory" not in cgroup_controllers() and "unified" in cgroup_controllers()


def _file(ctrl: str, cgroups_path: str, name: str) -> Path:
    ctrls = cgroup_controllers()
    base = ctrls["unified"] if _is_v2_only() else ctrls[ctrl]
    return base / cgroups_path.lstrip("/") / name


RESOURCES = {
    "memory": {"limit": 64 << 20},
    "cpu": {"quota": 50000, "period": 100000, "shares": 512},
    "pids": {"limit": 42},
}


@pytest.fixture
def limited(runtime, new_bundle):
    bundle = new_bundle("sleep", "100")
    bundle.spec["linux"]["resources"].update(RESOURCES)
    cid = runtime.new_id()
    res = runtime.create(bundle, cid)
    assert res.ok, res
    return runtime, bundle, cid


def test_limits_are_written_to_the_cgroup_files(limited):
    runtime, bundle, cid = limited
    cg = bundle.cgroups_path
    if _is_v2_only():
        assert _file("memory", cg, "memory.max").read_text().strip() == str(64 << 20)
        assert _file("cpu", cg, "cpu.max").read_text().split() == ["50000", "100000"]
        assert _file("pids", cg, "pids.max").read_text().strip() == "42"
        return
    assert _file("memory", cg, "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert _file("cpu", cg, "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert _file("cpu", cg, "cpu.cfs_period_us").read_text().strip() == "100000"
    assert _file("cpu", cg, "cpu.shares").read_text().strip() == "512"
    assert _file("pids", cg, "pids.max").read_text().strip() == "42"


def test_the_container_process_is_in_its_cgroups(limited):
    runtime, bundle, cid = limited
    pid = runtime.state(cid)["pid"]
    for ctrl in ("memory", "cpu", "pids", "devices", "freezer"):
        if ctrl not in cgroup_controllers():
            continue
        procs = _file(ctrl, bundle.cgroups_path, "cgroup.procs").read_text().split()
        assert str(pid) in procs, f"{ctrl}: {procs}"


def test_cgroups_are_removed_on_delete(limited):
    runtime, bundle, cid = limited
    assert cgroup_dirs(bundle.cgroups_path)
    runtime.check("start", cid)
    runtime.check("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped") == "stopped"
    runtime.check("delete", cid)
    assert cgroup_dirs(bundle.cgroups_path) == []


def test_pids_limit_is_enforced(observe):
    def prepare(b):
        b.spec["linux"]["resources"]["pids"] = {"limit": 5}

    obs = observe("sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; echo all-forked; wait",
                  prepare=prepare)
    assert "can't fork" in obs.ref.stderr, obs.ref
    assert "all-forked" not in obs.ref.stdout
    assert "can't fork" in obs.mine.stderr, obs.mine
    assert obs.mine.returncode == obs.ref.returncode


def test_memory_limit_is_visible_inside(observe):
    def prepare(b):
        b.spec["linux"]["resources"]["memory"] = {"limit": 32 << 20}

    obs = observe("sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                  "|| cat /sys/fs/cgroup/memory.max", prepare=prepare)
    assert obs.ref.stdout.strip() == str(32 << 20), obs.ref
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_cgroups_path_relative_and_nested(runtime, new_bundle):
    bundle = new_bundle("sleep", "100")
    nested = bundle.cgroups_path + "/inner"
    bundle.spec["linux"]["cgroupsPath"] = nested
    cid = runtime.new_id()
    runtime.bundles.append(bundle)
    try:
        assert runtime.create(bundle, cid).ok
        assert _file("pids", nested, "cgroup.procs").exists()
        runtime.check("delete", "--force", cid)
        assert cgroup_dirs(nested) == []
    finally:
        from bundles import remove_cgroup

        remove_cgroup(nested)
        remove_cgroup(nested.rsplit("/", 1)[0])
