"""The container life cycle as the host sees it: run/create/start/state/kill/delete/list,
exit codes, pid files, logs. Each test runs under runc (proving it) and hutch-runtime."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from bundles import Runtime, cgroup_dirs

pytestmark = pytest.mark.integration

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_run_returns_the_exit_code_of_the_container_process(observe):
    obs = observe("sh", "-c", "echo out; echo err >&2; exit 3")
    assert obs.ref.returncode == 3, obs.ref
    assert obs.mine.returncode == 3, obs.mine
    assert obs.mine.stdout == obs.ref.stdout == "out\n"
    assert "err\n" in obs.mine.stderr


def test_run_exits_128_plus_signal_when_the_process_dies_by_a_signal(observe):
    def no_pid_ns(b):  # sh must not be pid 1, which ignores signals without handlers
        b.drop_namespace("pid")

    obs = observe("sh", "-c", "kill -TERM $$; echo not reached", prepare=no_pid_ns)
    assert obs.ref.returncode == 128 + 15, obs.ref
    assert obs.mine.returncode == 128 + 15, obs.mine
    assert "not reached" not in obs.mine.stdout


def test_run_exits_137_when_the_container_is_killed_from_outside(runtime, new_bundle):
    bundle = runtime.track(new_bundle("sleep", "100"))
    bundle.write()
    cid = runtime.new_id()
    proc = subprocess.Popen(
        runtime.argv("run", "--bundle", str(bundle.path), cid),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert runtime.wait_status(cid, "running") == "running"
        runtime.check("kill", cid, "KILL")
        assert proc.wait(timeout=15) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_state_follows_created_running_stopped_and_has_the_oci_fields(runtime, new_bundle):
    bundle = new_bundle("sleep", "100")
    bundle.spec["annotations"] = {"org.hutch.test": "yes", "x": "1"}
    pid_file = runtime.workdir / "pid"
    cid = runtime.new_id()
    res = runtime.create(bundle, cid, "--pid-file", str(pid_file))
    assert res.ok, res

    raw = pid_file.read_text()
    assert re.fullmatch(r"\d+", raw), f"pid file must hold digits only: {raw!r}"
    state = runtime.state(cid)
    assert state["ociVersion"]
    assert state["id"] == cid
    assert state["status"] == "created"
    assert state["pid"] == int(raw) > 0
    assert Path(f"/proc/{state['pid']}").exists()
    assert Path(state["bundle"]) == bundle.path
    assert Path(state["rootfs"]) == bundle.rootfs
    assert RFC3339.match(state["created"]), state["created"]
    assert "owner" in state
    assert state["annotations"] == {"org.hutch.test": "yes", "x": "1"}

    runtime.check("start", cid)
    assert runtime.status(cid) == "running"
    assert runtime.state(cid)["pid"] == int(raw)

    runtime.check("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped") == "stopped"

    runtime.check("delete", cid)
    assert not runtime.cmd("state", cid).ok


def test_create_waits_at_the_barrier_and_the_process_inherits_creates_stdout(
    runtime, new_bundle
):
    bundle = new_bundle("sh", "-c", "echo started-$$")
    cid = runtime.new_id()
    out = runtime.workdir / "create.out"
    res = runtime.create(bundle, cid, stdout_path=out)
    assert res.ok, res
    time.sleep(0.3)
    assert runtime.status(cid) == "created"
    assert "started" not in out.read_text(), "the process ran before start"
    runtime.check("start", cid)
    assert runtime.wait_status(cid, "stopped") == "stopped"
    assert out.read_text() == "started-1\n"
    runtime.check("delete", cid)


@pytest.mark.parametrize("spelling", ["TERM", "SIGTERM", "15"])
def test_kill_accepts_signal_names_with_and_without_sig_and_numbers(
    runtime, new_bundle, spelling
):
    # pid 1 of a pid namespace only gets signals it handles: trap TERM.
    bundle = new_bundle("sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; "
                        "while :; do sleep 0.05; done")
    cid = runtime.new_id()
    out = runtime.workdir / "out"
    assert runtime.create(bundle, cid, stdout_path=out).ok
    runtime.check("start", cid)
    deadline = time.monotonic() + 5
    while "ready" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime.check("kill", cid, spelling)
    assert runtime.wait_status(cid, "stopped") == "stopped"
    assert "got-term" in out.read_text()


def test_kill_defaults_to_sigterm(runtime, new_bundle):
    bundle = new_bundle("sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done")
    cid = runtime.new_id()
    out = runtime.workdir / "out"
    assert runtime.create(bundle, cid, stdout_path=out).ok
    runtime.check("start", cid)
    deadline = time.monotonic() + 5
    while "ready" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime.check("kill", cid)
    assert runtime.wait_status(cid, "stopped") == "stopped"


@pytest.mark.parametrize("spelling", ["KILL", "SIGKILL", "9"])
def test_kill_sigkill_stops_the_container(runtime, new_bundle, spelling):
    cid = runtime.new_id()
    assert runtime.create(new_bundle("sleep", "100"), cid).ok
    runtime.check("start", cid)
    runtime.check("kill", cid, spelling)
    assert runtime.wait_status(cid, "stopped") == "stopped"


def test_kill_all_kills_every_process_of_the_container(runtime, new_bundle):
    bundle = new_bundle("sh", "-c", "sleep 100 & sleep 100 & sleep 100")
    bundle.drop_namespace("pid")  # --all matters when there is no pid namespace
    cid = runtime.new_id()
    assert runtime.create(bundle, cid).ok
    runtime.check("start", cid)
    time.sleep(0.3)
    procs = [d / "cgroup.procs" for d in cgroup_dirs(bundle.cgroups_path)]
    procs = [p for p in procs if p.exists() and "pids" in str(p)] or procs
    assert any(len(p.read_text().split()) >= 3 for p in procs)
    runtime.check("kill", "--all", cid, "KILL")
    assert runtime.wait_status(cid, "stopped") == "stopped"
    deadline = time.monotonic() + 5
    while any(p.exists() and p.read_text().split() for p in procs):
        assert time.monotonic() < deadline, "processes survived kill --all"
        time.sleep(0.05)


def test_delete_refuses_a_running_container_without_force(runtime, new_bundle):
    bundle = new_bundle("sleep", "100")
    cid = runtime.new_id()
    assert runtime.create(bundle, cid).ok
    runtime.check("start", cid)
    res = runtime.cmd("delete", cid)
    assert not res.ok, res
    assert runtime.status(cid) == "running"
    pid = runtime.state(cid)["pid"]

    runtime.check("delete", "--force", cid)
    assert not runtime.cmd("state", cid).ok
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid):
        assert time.monotonic() < deadline, "delete --force left the process running"
        time.sleep(0.05)
    assert cgroup_dirs(bundle.cgroups_path) == [], "delete left the container's cgroups"


def test_delete_force_removes_a_created_container(runtime, new_bundle):
    cid = runtime.new_id()
    assert runtime.create(new_bundle("true"), cid).ok
    runtime.check("delete", "--force", cid)
    assert not runtime.cmd("state", cid).ok
    assert runtime.list_json() == []


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    "verb", [["state"], ["start"], ["kill"], ["kill", "--all"], ["delete"]], ids=" ".join
)
def test_verbs_on_a_missing_container_exit_non_zero(runtime, verb):
    res = runtime.cmd(*verb, "hutch-test-no-such-container")
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr


def test_errors_go_to_the_log_as_json_lines_with_level_error(runtime):
    log = runtime.workdir / "log.json"
    res = runtime.cmd("state", "hutch-test-missing", log=log, log_format="json")
    assert res.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    errors = [e for e in entries if e.get("level") == "error"]
    assert errors, entries
    assert all(isinstance(e.get("msg"), str) and e["msg"] for e in errors)
    assert "time" in errors[0]


def test_list_json_shows_the_containers(runtime, new_bundle):
    ids = [runtime.new_id(), runtime.new_id()]
    for cid in ids:
        assert runtime.create(new_bundle("sleep", "100"), cid).ok
    listed = {c["id"]: c for c in runtime.list_json()}
    assert set(listed) == set(ids)
    for cid in ids:
        assert listed[cid]["status"] == "created"
        assert listed[cid]["pid"] > 0
        assert Path(listed[cid]["bundle"]).is_dir()
    for cid in ids:
        runtime.check("delete", "--force", cid)
    assert runtime.list_json() == []


def test_run_detached_with_pid_file(runtime, new_bundle):
    cid = runtime.new_id()
    pid_file = runtime.workdir / "run.pid"
    res = runtime.run(new_bundle("sleep", "100"), cid, "-d", "--pid-file", str(pid_file))
    assert res.ok, res
    assert runtime.status(cid) == "running"
    assert int(pid_file.read_text()) == runtime.state(cid)["pid"]
    runtime.check("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped") == "stopped"
    runtime.check("delete", cid)


def test_create_with_an_existing_id_fails(runtime, new_bundle):
    cid = runtime.new_id()
    assert runtime.create(new_bundle("sleep", "100"), cid).ok
    res = runtime.create(new_bundle("sleep", "100"), cid)
    assert not res.ok, res
    assert runtime.status(cid) == "created"


def test_start_twice_fails(runtime, new_bundle):
    cid = runtime.new_id()
    assert runtime.create(new_bundle("sleep", "100"), cid).ok
    runtime.check("start", cid)
    assert not runtime.cmd("start", cid).ok


def test_spec_writes_runc_like_defaults(runtime: Runtime, tmp_path, reference):
    mine, ref = tmp_path / "mine", tmp_path / "ref"
    mine.mkdir()
    ref.mkdir()
    runtime.check("spec", "--bundle", str(mine))
    reference.check("spec", "--bundle", str(ref))
    a = json.loads((mine / "config.json").read_text())
    b = json.loads((ref / "config.json").read_text())
    assert a["process"]["args"] == ["sh"]
    assert a["root"] == b["root"]
    assert [m["destination"] for m in a["mounts"]] == [m["destination"] for m in b["mounts"]]
    assert sorted(n["type"] for n in a["linux"]["namespaces"]) == sorted(
        n["type"] for n in b["linux"]["namespaces"]
    )
    assert a["linux"]["maskedPaths"] == b["linux"]["maskedPaths"]
    assert a["linux"]["readonlyPaths"] == b["linux"]["readonlyPaths"]
    # spec refuses to overwrite an existing config.json, like runc
    assert not runtime.cmd("spec", "--bundle", str(mine)).ok


def test_version_and_features(runtime):
    res = runtime.check("--version")
    assert "spec:" in res.stdout or "version" in res.stdout.lower()
    features = json.loads(runtime.check("features").stdout)
    assert features["ociVersionMin"].startswith("1.0")
    assert "createRuntime" in features["hooks"]
    assert "mount" in features["linux"]["namespaces"]
