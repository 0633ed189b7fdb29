"""`exec` into a running container: the same observations under runc and hutch-runtime."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.integration


def _start(rt, new_bundle):
    bundle = new_bundle("sleep", "100")
    cid = rt.new_id()
    assert rt.run(bundle, cid, "-d").ok
    return bundle, cid


def _exec_both(runtime, reference, new_bundle, *args):
    out = []
    for rt in (reference, runtime):
        _, cid = _start(rt, new_bundle)
        out.append(rt.cmd("exec", *args[:-1], cid, *args[-1]))
    return out


def test_exec_joins_the_containers_namespaces_and_keeps_its_identity(runtime, reference,
                                                                    new_bundle):
    ref, mine = _exec_both(runtime, reference, new_bundle, [
        "sh", "-c", "hostname; cat /proc/1/comm; id; grep -E '^Cap(Prm|Eff|Bnd)' "
        "/proc/self/status; ls /; echo $HOME"])
    assert ref.ok, ref
    assert mine.ok, mine
    assert mine.stdout == ref.stdout


def test_exec_flags_user_env_cwd(runtime, reference, new_bundle):
    ref, mine = _exec_both(runtime, reference, new_bundle, "--user", "1000:1000", "--env",
                           "FOO=bar", "--cwd", "/tmp", ["sh", "-c", "id; echo $FOO; pwd"])
    assert ref.ok, ref
    assert mine.stdout == ref.stdout == "uid=1000(user) gid=1000(user)\nbar\n/tmp\n", mine


def test_exec_reports_the_process_exit_code(runtime, reference, new_bundle):
    ref, mine = _exec_both(runtime, reference, new_bundle, ["sh", "-c", "exit 5"])
    assert ref.returncode == 5
    assert mine.returncode == 5, mine


def test_exec_of_a_missing_command_fails_with_a_clear_error(runtime, new_bundle):
    _, cid = _start(runtime, new_bundle)
    res = runtime.cmd("exec", cid, "no-such-command")
    assert res.returncode != 0
    assert "no-such-command" in res.stderr and "not found" in res.stderr


def test_exec_with_a_process_file_and_detach_writes_the_pid_file(runtime, new_bundle,
                                                                   tmp_path):
    bundle, cid = _start(runtime, new_bundle)
    proc = dict(bundle.process)
    proc["args"] = ["sleep", "50"]
    (tmp_path / "process.json").write_text(json.dumps(proc))
    pid_file = tmp_path / "exec.pid"
    res = runtime.cmd("exec", "--process", str(tmp_path / "process.json"), "--detach",
                      "--pid-file", str(pid_file), cid)
    assert res.ok, res
    pid = pid_file.read_text()
    assert pid.isdigit()
    init = runtime.state(cid)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    procs = runtime.cmd("kill", "--all", cid, "KILL")
    assert procs.ok, procs


def test_exec_into_a_stopped_container_is_refused(runtime, new_bundle):
    bundle = new_bundle("true")
    cid = runtime.new_id()
    assert runtime.create(bundle, cid).ok
    runtime.check("start", cid)
    runtime.wait_status(cid, "stopped")
    res = runtime.cmd("exec", cid, "true")
    assert res.returncode != 0
    assert "stopped" in res.stderr


def test_exec_additional_gids(runtime, reference, new_bundle):
    ref, mine = _exec_both(runtime, reference, new_bundle, "--user", "1000:1000",
                           "--additional-gids", "5", "--additional-gids", "6", ["id"])
    assert ref.ok, ref
    assert mine.stdout == ref.stdout, mine
    assert "groups=5" in mine.stdout or "5(" in mine.stdout, mine
