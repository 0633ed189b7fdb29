"""ps, pause/resume, update, events and kill --all: the same scenario under runc and
hutch-runtime, compared. These are the verbs containerd's shim calls on a running task
(`ps --format json`, `pause`, `resume`, `update --resources -`, `kill --all`); `events`
is what `runc events` users (and older shims) read.

Each test runs once per runtime (`runtime`); `reference` is always runc. When `runtime`
is runc the two are the same object and the scenario runs once.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundles import Bundle, Runtime, cgroup_controllers, cgroup_dirs

pytestmark = pytest.mark.integration

# runc's `ps` runs `ps -ef` on the host and keeps the header plus the container's rows.
PS_EF_HEADER = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


# -- helpers ------------------------------------------------------------------------------
def _runtimes(runtime: Runtime, reference: Runtime) -> list[Runtime]:
    """runc first (the reference), then the runtime under test if it is another one."""
    return [reference] if runtime is reference else [reference, runtime]


def _start(
    rt: Runtime,
    new_bundle: Callable[..., Bundle],
    *args: str,
    prepare: Callable[[Bundle], None] | None = None,
) -> tuple[Bundle, str]:
    bundle = new_bundle(*args)
    if prepare:
        prepare(bundle)
    cid = rt.new_id()
    res = rt.run(bundle, cid, "-d")
    assert res.ok, res
    return bundle, cid


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(out)


def _wait_children(pid: int, n: int, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    kids = _children(pid)
    while len(kids) < n and time.monotonic() < deadline:
        time.sleep(0.02)
        kids = _children(pid)
    return kids


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _is_v2_only() -> bool:
    ctrls = cgroup_controllers()
    return "memory" not in ctrls and "unified" in ctrls


def _cg_file(ctrl: str, bundle: Bundle, name: str) -> Path:
    ctrls = cgroup_controllers()
    base = ctrls["unified"] if _is_v2_only() else ctrls[ctrl]
    return base / bundle.cgroups_path.lstrip("/") / name


def _read(path: Path) -> str:
    return path.read_text().strip()


def _frozen(bundle: Bundle) -> str:
    """FROZEN/THAWED from the v1 freezer, or 1/0 from cgroup.freeze on v2."""
    if _is_v2_only():
        return _read(_cg_file("freezer", bundle, "cgroup.freeze"))
    return _read(_cg_file("freezer", bundle, "freezer.state"))


def _limits(bundle: Bundle) -> dict[str, str]:
    """The limits `update` may change, read back from the container's cgroup files."""
    if _is_v2_only():
        names = {
            "memory": ("memory", "memory.max"),
            "swap": ("memory", "memory.swap.max"),
            "cpu": ("cpu", "cpu.max"),
            "weight": ("cpu", "cpu.weight"),
            "pids": ("pids", "pids.max"),
            "cpuset": ("cpuset", "cpuset.cpus"),
        }
    else:
        names = {
            "memory": ("memory", "memory.limit_in_bytes"),
            "memsw": ("memory", "memory.memsw.limit_in_bytes"),
            "quota": ("cpu", "cpu.cfs_quota_us"),
            "period": ("cpu", "cpu.cfs_period_us"),
            "shares": ("cpu", "cpu.shares"),
            "pids": ("pids", "pids.max"),
            "cpuset": ("cpuset", "cpuset.cpus"),
        }
    out = {}
    for key, (ctrl, name) in names.items():
        path = _cg_file(ctrl, bundle, name)
        out[key] = _read(path) if path.exists() else "<missing>"
    return out


INITIAL_RESOURCES: dict[str, Any] = {
    "memory": {"limit": 64 << 20, "swap": 64 << 20},
    "cpu": {"quota": 50000, "period": 100000, "shares": 512},
    "pids": {"limit": 42},
}


def _with_resources(bundle: Bundle) -> None:
    bundle.spec["linux"]["resources"].update(json.loads(json.dumps(INITIAL_RESOURCES)))


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- ps -------------------------------------------------------------------------------------
def test_ps_json_lists_the_init_and_its_child(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sh", "-c", "sleep 101 & sleep 102")
        init = rt.state(cid)["pid"]
        kids = _wait_children(init, 1)
        assert len(kids) == 1, f"{rt.name}: init {init} has children {kids}"
        res = rt.cmd("ps", "--format", "json", cid)
        assert res.ok, res
        assert sorted(json.loads(res.stdout)) == sorted([init, *kids]), res
        assert _ppid(kids[0]) == init
        # runc writes it with a Go json.Encoder: compact, one line
        assert re.fullmatch(r"\[\d+(,\d+)*\]\n", res.stdout), res


def _role(row: list[str], init: int) -> str:
    """A `ps -ef` row's place in the container: init, or whose child it is."""
    if int(row[1]) == init:
        return "init"
    return "child-of-init" if int(row[2]) == init else f"child-of-{row[2]}"


def test_ps_table_has_the_header_and_rows_of_ps_ef(runtime, reference, new_bundle):
    seen = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sh", "-c", "sleep 103 & sleep 104")
        init = rt.state(cid)["pid"]
        kids = _wait_children(init, 1)
        res = rt.cmd("ps", cid)
        assert res.ok, res
        lines = res.stdout.splitlines()
        assert lines[0].split() == PS_EF_HEADER, res
        rows = [line.split(None, 7) for line in lines[1:]]
        assert sorted(int(r[1]) for r in rows) == sorted([init, *kids]), res
        # what is not a number or a time: user, parent relation, tty, command
        seen[rt.name] = sorted((r[0], _role(r, init), r[5], r[7]) for r in rows)
    assert seen.get(runtime.name) == seen["runc"]


def test_ps_passes_extra_arguments_to_ps(runtime, reference, new_bundle):
    outs = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "105")
        init = rt.state(cid)["pid"]
        res = rt.cmd("ps", cid, "-o", "pid,comm")
        assert res.ok, res
        assert res.stdout.split() == ["PID", "COMMAND", str(init), "sleep"], res
        outs[rt.name] = res.stdout.splitlines()[0]
    assert outs.get(runtime.name) == outs["runc"]


def test_ps_of_a_stopped_container_prints_only_the_header(runtime, reference, new_bundle):
    outs = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "106")
        rt.check("kill", cid, "KILL")
        assert rt.wait_status(cid, "stopped") == "stopped"
        table = rt.cmd("ps", cid)
        js = rt.cmd("ps", "--format", "json", cid)
        outs[rt.name] = (table.returncode, table.stdout.split(), js.returncode, js.stdout.strip())
    assert outs.get(runtime.name) == outs["runc"]
    assert outs["runc"][:2] == (0, PS_EF_HEADER)


def test_ps_of_an_unknown_container_fails(runtime, reference):
    for rt in _runtimes(runtime, reference):
        res = rt.cmd("ps", "--format", "json", "hutch-test-no-such-container")
        assert res.returncode != 0, res
        assert "does not exist" in res.stderr or "not exist" in res.stderr, res


# -- pause / resume -------------------------------------------------------------------------
def test_pause_freezes_every_process_and_resume_thaws_them(runtime, reference, new_bundle):
    spin = "while :; do :; done"
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sh", "-c", f"({spin}) & {spin}")
        init = rt.state(cid)["pid"]
        kids = _wait_children(init, 1)
        pids = [init, *kids]
        assert len(pids) == 2

        res = rt.cmd("pause", cid)
        assert res.ok, res
        assert (res.stdout, res.stderr) == ("", ""), res
        assert rt.status(cid) == "paused"
        assert _frozen(bundle) in ("FROZEN", "1"), f"{rt.name}: freezer not frozen"
        before = [_cpu_ticks(p) for p in pids]
        time.sleep(0.3)
        assert [_cpu_ticks(p) for p in pids] == before, f"{rt.name}: paused tasks still run"
        # a frozen task sleeps uninterruptibly (D) in /proc/<pid>/stat
        assert [_proc_state(p) for p in pids] == ["D", "D"], rt.name
        assert [s["status"] for s in rt.list_json() if s["id"] == cid] == ["paused"]

        res = rt.cmd("resume", cid)
        assert res.ok, res
        assert rt.status(cid) == "running"
        assert _frozen(bundle) in ("THAWED", "0")
        before = [_cpu_ticks(p) for p in pids]
        time.sleep(0.3)
        after = [_cpu_ticks(p) for p in pids]
        moved = [a > b for a, b in zip(after, before, strict=True)]
        assert all(moved), f"{rt.name}: cpu ticks {before} -> {after} after resume"


def test_pause_and_resume_refuse_the_wrong_state(runtime, reference, new_bundle):
    outs = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "107")
        resume_running = rt.cmd("resume", cid)
        rt.check("pause", cid)
        pause_paused = rt.cmd("pause", cid)
        rt.check("resume", cid)
        rt.check("kill", cid, "KILL")
        assert rt.wait_status(cid, "stopped") == "stopped"
        pause_stopped = rt.cmd("pause", cid)
        outs[rt.name] = [
            (r.returncode != 0, "not paused" in r.stderr or "not running" in r.stderr)
            for r in (resume_running, pause_paused, pause_stopped)
        ]
        # runc: "container not paused", "container not running", "container not running"
        assert "not paused" in resume_running.stderr, resume_running
        assert "not running" in pause_paused.stderr, pause_paused
        assert "not running" in pause_stopped.stderr, pause_stopped
    assert outs.get(runtime.name) == outs["runc"] == [(True, True)] * 3


def test_delete_force_removes_a_paused_container(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sh", "-c", "sleep 108 & sleep 109")
        init = rt.state(cid)["pid"]
        pids = [init, *_wait_children(init, 1)]
        rt.check("pause", cid)
        res = rt.cmd("delete", "--force", cid, timeout=15)
        assert res.ok, res
        assert all(_wait_dead(p) for p in pids), f"{rt.name}: {pids} survive"
        assert rt.cmd("state", cid).returncode != 0
        assert cgroup_dirs(bundle.cgroups_path) == [], rt.name


def test_kill_of_a_paused_container_takes_effect_on_resume(runtime, reference, new_bundle):
    outs = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "110")
        init = rt.state(cid)["pid"]
        rt.check("pause", cid)
        res = rt.cmd("kill", cid, "KILL")
        rt.cmd("resume", cid)
        dead = _wait_dead(init)
        outs[rt.name] = (res.returncode, dead, rt.wait_status(cid, "stopped"))
    assert outs.get(runtime.name) == outs["runc"]


# -- update ---------------------------------------------------------------------------------
UPDATE_FLAGS = [
    "--memory", str(32 << 20), "--memory-swap", str(48 << 20),
    "--cpu-quota", "20000", "--cpu-period", "50000", "--cpu-share", "256",
    "--pids-limit", "30", "--cpuset-cpus", "0",
]


def test_update_flags_change_the_cgroup_files(runtime, reference, new_bundle):
    seen = {}
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sleep", "111", prepare=_with_resources)
        before = _limits(bundle)
        res = rt.cmd("update", *UPDATE_FLAGS, cid)
        assert res.ok, res
        after = _limits(bundle)
        assert after != before
        seen[rt.name] = after
    if not _is_v2_only():
        assert seen["runc"] == {
            "memory": str(32 << 20), "memsw": str(48 << 20), "quota": "20000",
            "period": "50000", "shares": "256", "pids": "30", "cpuset": "0",
        }
    assert seen.get(runtime.name) == seen["runc"]


def test_update_resources_from_stdin(runtime, reference, new_bundle):
    resources = {
        "memory": {"limit": 24 << 20, "swap": 40 << 20},
        "cpu": {"quota": 30000, "period": 60000, "shares": 128},
        "pids": {"limit": 17},
    }
    seen = {}
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sleep", "112", prepare=_with_resources)
        res = rt.cmd("update", "--resources", "-", cid, input=json.dumps(resources).encode())
        assert res.ok, res
        seen[rt.name] = _limits(bundle)
    if not _is_v2_only():
        assert seen["runc"]["memory"] == str(24 << 20)
        assert seen["runc"]["pids"] == "17"
    assert seen.get(runtime.name) == seen["runc"]


def test_update_resources_file_wins_over_flags_and_keeps_the_rest(
    runtime, reference, new_bundle, tmp_path
):
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"memory": {"limit": 20 << 20, "swap": 30 << 20}}))
    seen = {}
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sleep", "113", prepare=_with_resources)
        res = rt.cmd("update", "--resources", str(path), "--pids-limit", "5", cid)
        assert res.ok, res
        seen[rt.name] = _limits(bundle)
    if not _is_v2_only():
        # runc: "if data is to be read from a file or the standard input, all other
        # options are ignored"; what the file omits stays as it was
        assert seen["runc"]["memory"] == str(20 << 20)
        assert seen["runc"]["pids"] == "42"
        assert seen["runc"]["quota"] == "50000"
    assert seen.get(runtime.name) == seen["runc"]


def test_update_pids_limit_is_enforced_on_new_processes(runtime, reference, new_bundle):
    outs, results = {}, {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "114")
        # Room for the exec itself (runc's exec briefly runs two `runc init`s: with 3 it
        # sometimes failed to start at all), not for ten sleeps.
        rt.check("update", "--pids-limit", "6", cid)
        res = rt.cmd("exec", cid, "sh", "-c",
                     "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; echo all-forked")
        outs[rt.name] = ("can't fork" in res.stderr, "all-forked" in res.stdout)
        results[rt.name] = res
        rt.cmd("kill", "--all", cid, "KILL")
    assert outs["runc"] == (True, False), results["runc"]
    assert outs.get(runtime.name) == outs["runc"], results.get(runtime.name)


def test_update_of_a_stopped_or_unknown_container_fails(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "115")
        rt.check("kill", cid, "KILL")
        assert rt.wait_status(cid, "stopped") == "stopped"
        res = rt.cmd("update", "--memory", str(16 << 20), cid)
        assert res.returncode != 0 and "not running" in res.stderr, res
        res = rt.cmd("update", "--memory", str(16 << 20), "hutch-test-no-such-container")
        assert res.returncode != 0, res


def test_update_with_bad_json_fails_and_changes_nothing(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sleep", "116", prepare=_with_resources)
        before = _limits(bundle)
        res = rt.cmd("update", "--resources", "-", cid, input=b"{not json")
        assert res.returncode != 0, res
        assert res.stderr.strip(), res
        assert _limits(bundle) == before


# -- events ---------------------------------------------------------------------------------
def _stats(rt: Runtime, cid: str) -> dict[str, Any]:
    res = rt.cmd("events", "--stats", cid, timeout=10)
    assert res.ok, res
    objs = _json_lines(res.stdout)
    assert len(objs) == 1, res
    return objs[0]


def _compact(line: str) -> bool:
    """Go's json.Encoder output: no spaces after ':' and ','; keys in struct order."""
    return line == json.dumps(json.loads(line), separators=(",", ":"))


def test_events_prints_compact_json_lines_like_runc(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "116")
        res = rt.cmd("events", "--stats", cid, timeout=10)
        assert res.ok, res
        assert res.stdout.endswith("}\n") and res.stdout.count("\n") == 1, res
        line = res.stdout.rstrip("\n")
        assert line.startswith('{"type":"stats","id":'), f"{rt.name}: {line[:80]}"
        assert _compact(line), f"{rt.name}: not compact JSON: {line[:120]}"


def test_events_stats_prints_one_stats_object_shaped_like_runcs(runtime, reference,
                                                                  new_bundle):
    stats = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sh", "-c", "sleep 117 & sleep 118",
                        prepare=_with_resources)
        _wait_children(rt.state(cid)["pid"], 1)
        obj = _stats(rt, cid)
        assert obj["type"] == "stats" and obj["id"] == cid, obj
        stats[rt.name] = obj
    mine, ref = stats[runtime.name], stats["runc"]
    assert sorted(mine) == sorted(ref) == ["data", "id", "type"]
    assert sorted(mine["data"]) == sorted(ref["data"])


def test_events_stats_values_match_the_cgroup(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sh", "-c",
                             "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
                             "sleep 119 & sleep 120", prepare=_with_resources)
        _wait_children(rt.state(cid)["pid"], 1)
        data = _stats(rt, cid)["data"]
        assert data["pids"]["current"] == 2, (rt.name, data["pids"])
        assert data["memory"]["usage"]["limit"] == 64 << 20, (rt.name, data["memory"])
        assert data["memory"]["usage"]["usage"] > 0, rt.name
        assert data["cpu"]["usage"]["total"] > 0, (rt.name, data["cpu"])
        if not _is_v2_only():
            # "cache" is omitempty in runc's types: present only when the page cache is
            # not empty, which depends on what the container happened to touch.
            assert sorted(set(data["memory"]) - {"cache"}) == [
                "kernel", "kernelTCP", "raw", "swap", "usage"]
            assert len(data["cpu"]["usage"]["percpu"]) == os.cpu_count()
            assert "total_rss" in data["memory"]["raw"], rt.name


def test_events_stats_of_a_stopped_container_fails(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "121")
        rt.check("kill", cid, "KILL")
        assert rt.wait_status(cid, "stopped") == "stopped"
        res = rt.cmd("events", "--stats", cid, timeout=10)
        assert res.returncode != 0, res
        assert "not running" in res.stderr, res


class _Events:
    """`events` running in the background; lines read with a deadline."""

    def __init__(self, rt: Runtime, *args: str) -> None:
        self.proc = subprocess.Popen(
            rt.argv("events", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.buf = b""
        self.lines: list[dict[str, Any]] = []

    def read_until(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float) -> bool:
        """Read lines until pred(all lines so far) holds or the timeout passes."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            if pred(self.lines):
                return True
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.buf += chunk
            *full, self.buf = self.buf.split(b"\n")
            self.lines += [json.loads(x) for x in full if x.strip()]
        return pred(self.lines)

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err


def test_events_streams_stats_at_the_interval(runtime, reference, new_bundle):
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "122")
        ev = _Events(rt, "--interval", "200ms", cid)
        try:
            got = ev.read_until(lambda lines: sum(o["type"] == "stats" for o in lines) >= 3, 5)
        finally:
            err = ev.stop()
        assert got, f"{rt.name}: {ev.lines[:2]} {err}"
        assert {o["id"] for o in ev.lines} == {cid}


def test_events_reports_an_oom_kill(runtime, reference, new_bundle):
    def limit(b: Bundle) -> None:
        b.spec["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}

    # The hog waits for /tmp/go (made from the host) so `events` is listening first.
    script = ("while [ ! -e /tmp/go ]; do usleep 20000; done; "
              "dd if=/dev/zero of=/dev/null bs=64M count=1; echo rc=$?; sleep 123")
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sh", "-c", script, prepare=limit)
        ev = _Events(rt, "--interval", "1s", cid)
        try:
            time.sleep(0.3)
            (bundle.rootfs / "tmp" / "go").touch()
            got = ev.read_until(lambda lines: any(o.get("type") == "oom" for o in lines), 10)
        finally:
            err = ev.stop()
        assert got, f"{rt.name}: no oom event in {[o['type'] for o in ev.lines]}; {err}"
        oom = next(o for o in ev.lines if o["type"] == "oom")
        assert oom["id"] == cid, oom
        assert rt.status(cid) == "running", "the hog (dd) died, not the init"


# -- kill --all -----------------------------------------------------------------------------
def test_kill_all_signals_every_process_in_a_pid_namespace(runtime, reference, new_bundle):
    """sleep as pid 1 of its namespace ignores SIGTERM (no handler), its child does not:
    plain `kill` leaves both alive, `kill --all` kills the child and spares the init."""
    outs = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sh", "-c", "sleep 124 & sleep 125")
        init = rt.state(cid)["pid"]
        (child,) = _wait_children(init, 1)
        rt.check("kill", cid, "TERM")
        time.sleep(0.2)
        after_kill = (_alive(init), _alive(child))
        rt.check("kill", "--all", cid, "TERM")
        _wait_dead(child, 3)
        after_all = (_alive(init), _alive(child))
        res = rt.cmd("kill", "--all", cid, "KILL")
        assert res.ok, res
        dead = _wait_dead(init)
        outs[rt.name] = (after_kill, after_all, dead, rt.wait_status(cid, "stopped"))
    assert outs["runc"] == ((True, True), (True, False), True, "stopped")
    assert outs.get(runtime.name) == outs["runc"]


def test_kill_all_without_a_pid_namespace_kills_every_process(runtime, reference,
                                                               new_bundle):
    """In the host's pid namespace killing the init leaves its children running; only
    --all (which signals everything in the container's cgroup) reaches them."""
    outs = {}
    for rt in _runtimes(runtime, reference):
        bundle, cid = _start(rt, new_bundle, "sh", "-c", "sleep 126 & sleep 127",
                             prepare=lambda b: b.drop_namespace("pid"))
        init = rt.state(cid)["pid"]
        (child,) = _wait_children(init, 1)
        procs = _cg_file("pids", bundle, "cgroup.procs")
        assert sorted(int(p) for p in procs.read_text().split()) == sorted([init, child])
        res = rt.cmd("kill", "--all", cid, "KILL")
        assert res.ok, res
        outs[rt.name] = (_wait_dead(init), _wait_dead(child),
                         rt.wait_status(cid, "stopped"))
        deadline = time.monotonic() + 3
        while procs.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert procs.read_text().split() == [], rt.name
        assert rt.cmd("delete", cid).ok
    assert outs["runc"] == (True, True, "stopped")
    assert outs.get(runtime.name) == outs["runc"]


def test_kill_all_of_a_stopped_container(runtime, reference, new_bundle):
    outs: dict[str, Any] = {}
    for rt in _runtimes(runtime, reference):
        _, cid = _start(rt, new_bundle, "sleep", "128")
        rt.check("kill", cid, "KILL")
        assert rt.wait_status(cid, "stopped") == "stopped"
        outs[rt.name] = rt.cmd("kill", "--all", cid, "KILL")
    # runc 1.1: exit 0 (it signals whatever is left in the cgroup: nothing)
    assert outs["runc"].ok, outs["runc"]
    assert outs[runtime.name].ok == outs["runc"].ok, outs[runtime.name]
