"""Many create/start/kill/delete cycles, then nothing may be left: no cgroup directory
under the test's cgroupsPath prefix in any hierarchy, no mount mentioning the bundle or
the runtime root, no process, no fd leaked into the calling process, an empty --root.

A leak of one cgroup or one mount a cycle is invisible in a single-container test and
fatal on a node that has run a million pods. 200 cycles under each runtime (runc, the
reference, must pass the same checks; ~95 ms a cycle here). The time a cycle takes is
printed (run pytest with -s to see it).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from bundles import (
    PREFIX,
    Bundle,
    Runtime,
    cgroup_controllers,
    cmdline,
    find_processes,
    kill_quietly,
    make_bundle,
    remove_cgroup,
    unmount_under,
)

pytestmark = pytest.mark.integration

CYCLES = {"runc": 200, "hutch-runtime": 200}
BUDGET_SECONDS = 100.0  # the whole loop; the issue asks for well under two minutes


def _cgroup_leftovers(prefix: str) -> list[Path]:
    """Every directory named prefix* at any depth-1 of each mounted hierarchy."""
    out = []
    for mnt in sorted(set(cgroup_controllers().values())):
        try:
            out += [p for p in mnt.iterdir() if p.name.startswith(prefix) and p.is_dir()]
        except OSError:
            pass
    return out


def _mounts_mentioning(needles: list[str]) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if any(n in line for n in needles)]


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd listdir itself used
    return out


def _pid_from(path: Path) -> int:
    return int(path.read_text().strip())


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _one_cycle(rt: Runtime, bundle: Bundle, cid: str, pid_file: Path) -> None:
    bundle.write()
    res = rt.cmd("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid)
    assert res.ok, res
    pid = _pid_from(pid_file)
    res = rt.cmd("start", cid)
    assert res.ok, res
    res = rt.cmd("kill", cid, "KILL")
    assert res.ok, res
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert _gone(pid), f"{rt.name}: init {pid} of {cid} survives SIGKILL"
    for _ in range(100):  # the runtime may not have seen the exit yet: retry briefly
        res = rt.cmd("delete", cid)
        if res.ok:
            break
        time.sleep(0.01)
    assert res.ok, res
    pid_file.unlink()


def test_create_start_kill_delete_cycles_leave_nothing_behind(runtime, busybox_rootfs,
                                                              bundle_base):
    rt: Runtime = runtime
    n = CYCLES[rt.name]
    prefix = f"{PREFIX}-cyc-{secrets.token_hex(4)}-"
    bundle = make_bundle(busybox_rootfs, bundle_base / "cycles", ["sleep", "1000"])
    bundle.spec["linux"]["resources"].update(
        {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}, "cpu": {"shares": 512}}
    )
    rt.track(bundle)
    pid_file = bundle_base / "init.pid"
    ids: list[str] = []
    cid = ""
    fds_before = _fds()
    started = time.monotonic()
    done = 0
    try:
        for i in range(n):
            cid = f"{prefix}{i}"
            ids.append(cid)
            bundle.spec["linux"]["cgroupsPath"] = f"/{cid}"
            _one_cycle(rt, bundle, cid, pid_file)
            done += 1
        elapsed = time.monotonic() - started
    finally:
        if done < n and cid:  # a cycle failed: force its container away
            rt.cmd("delete", "--force", cid, timeout=15)
            remove_cgroup(f"/{cid}")
    per_cycle = elapsed / n * 1000
    print(f"\n{rt.name}: {n} create/start/kill/delete cycles in {elapsed:.1f}s "
          f"= {per_cycle:.1f} ms per cycle")

    fds_after = _fds()
    leftovers = {
        "cgroups": [str(p) for p in _cgroup_leftovers(prefix)],
        "mounts": _mounts_mentioning([str(bundle.path), str(rt.root)]),
        "processes": [f"{p} {cmdline(p)!r}" for p in
                      find_processes([f"/{c}" for c in ids], [prefix, str(bundle.path)])],
        "fds": sorted(f"{fd} -> {target}" for fd, target in fds_after.items()
                      if fds_before.get(fd) != target),
        "root": sorted(os.listdir(rt.root)),
    }
    try:
        assert leftovers == {k: [] for k in leftovers}, f"{rt.name} after {n} cycles"
    finally:
        for p in find_processes([f"/{c}" for c in ids], [prefix]):
            kill_quietly(p)
        for p in _cgroup_leftovers(prefix):
            remove_cgroup("/" + p.name)
        unmount_under([bundle.path, rt.root])
    assert elapsed < BUDGET_SECONDS, f"{n} cycles took {elapsed:.0f}s"
