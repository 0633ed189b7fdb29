"""The container lifecycle through the installed `hutch`, the way a docker user drives it:
create/start/run, logs, stop/kill/restart, restart policies, rm/prune, ps, exec (also on a
real pty), run -it with detach and attach, inspect/top/stats/update/wait/pause/rename,
OOM, concurrent runs under one name, crashes of the monitor and of the CLI, and a long
run --rm loop that must leave nothing behind.

Docker is the reference; every assertion looks at what the container (or the host's
/proc and cgroup fs) observes, not only at what hutch prints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import glob
import json
import os
import pty
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest
from e2e_helpers import run_d, wait_for

pytestmark = pytest.mark.e2e

RFC3339NANO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)$")


# -- helpers ----------------------------------------------------------------------------




def wait_log(hutch, ref: str, text: str, timeout: float = 10) -> str:
    return wait_for(lambda: (lambda o: o if text in o else "")(hutch("logs", ref).stdout),
                    timeout, f"{text!r} in the logs of {ref}")


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_lean_monitor(hutch, ref: str) -> int:
    """After ~2 s a monitor re-executes itself as a lean interpreter (same pid, fds and
    children); wait for that, so a test covers the long-lived monitor too."""
    monitor = hutch.inspect(ref)["State"]["MonitorPid"]
    assert monitor > 0
    wait_for(lambda: "monitor import resume" in cmdline(monitor), 10, "the lean monitor")
    return monitor


def ps_rows(hutch, *args: str) -> list[dict]:
    return [json.loads(line) for line in hutch.out("ps", "--format", "json", *args).splitlines()
            if line.strip()]


def one_line_error(p: subprocess.CompletedProcess) -> str:
    """The first stderr line, after checking it is the only one apart from a hint."""
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith("hint:")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def cgroup_file(pid: int, controller: str, name: str) -> Path:
    """The host path of cgroup file `name` of `controller` for process `pid` (v1 or v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, ctrls, path in lines:
        if controller in ctrls.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}/{name}")
    for h, ctrls, path in lines:
        if h == "0" and ctrls == "":
            unified = {"memory.limit_in_bytes": "memory.max"}.get(name, name)
            return Path(f"/sys/fs/cgroup{path}/{unified}")
    raise AssertionError(f"no {controller} cgroup for {pid}")


class Pty:
    """A command on a real pseudo-terminal (its stdin, stdout and stderr), as in a shell."""

    def __init__(self, argv: list[str], rows: int = 0, cols: int = 0) -> None:
        self.master, slave = pty.openpty()
        if rows:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.out = b""

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_until(self, pattern: str, timeout: float = 10) -> str:
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while not rx.search(self.out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} on the pty; got {self.out!r}")
            if not self._read(left):
                raise AssertionError(f"pty closed before {pattern!r}; got {self.out!r}")
        return self.out.decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.master], [], [], min(timeout, 0.5))
        if r:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: no slave left
                return False
            if not data:
                return False
            self.out += data
        return True

    def wait_raw(self, timeout: float = 10) -> None:
        """Until the command has put the terminal in raw mode (no echo): input written
        before that may be flushed by its tcsetattr."""
        wait_for(lambda: not termios.tcgetattr(self.master)[3] & termios.ECHO, timeout,
                 "raw mode on the pty")

    def wait(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.proc.args[3:]} still running; got {self.out!r}")
            self._read(0.1)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def parse_ts(text: str) -> float:
    base, frac = text.rstrip("Z").split(".")
    secs = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    return secs + int(frac) / 1e9


def fmt_ts(t: float) -> str:
    whole = int(t)
    return (dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            + f".{int(round((t - whole) * 1e9)):09d}Z")


# -- create, start, logs ----------------------------------------------------------------
def test_create_makes_a_created_container_that_start_runs(hutch):
    cid = hutch.out("create", "--name", "lc-created", hutch.image,
                    "sh", "-c", "echo started; exec sleep 1000").strip()
    info = hutch.inspect("lc-created")
    assert info["Id"] == cid and info["State"]["Status"] == "created"
    assert info["State"]["Pid"] == 0
    assert [r["Status"] for r in ps_rows(hutch, "-a", "--filter", "name=lc-created")] \
        == ["Created"]
    assert hutch.out("start", "lc-created").strip() == "lc-created"
    info = hutch.wait_state("lc-created", "running")
    assert alive(info["State"]["Pid"])
    wait_log(hutch, "lc-created", "started\n")


def test_start_attach_streams_both_streams_and_returns_the_exit_code(hutch):
    hutch.out("create", "--name", "lc-start-a", hutch.image,
              "sh", "-c", "echo to-out; echo to-err >&2; exit 4")
    p = hutch("start", "-a", "lc-start-a")
    assert p.returncode == 4, p.stderr
    assert p.stdout == "to-out\n"
    assert "to-err" in p.stderr and "to-out" not in p.stderr
    assert hutch.inspect("lc-start-a")["State"]["ExitCode"] == 4


def test_run_detached_prints_the_id_and_logs_have_the_output(hutch):
    cid = run_d(hutch, hutch.image, "sh", "-c", "echo one; echo two")
    hutch.wait_state(cid, "exited")
    p = hutch("logs", cid[:12])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "one\ntwo\n"


def test_logs_follow_shows_lines_as_they_come_and_ends_with_the_container(hutch):
    cid = run_d(hutch, hutch.image, "sh", "-c",
                "i=0; while [ $i -lt 12 ]; do i=$((i+1)); echo line $i; sleep 0.2; done")
    follower = hutch.popen("logs", "-f", cid, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(20, follower.kill)
    watchdog.start()
    try:
        arrivals = []
        for line in follower.stdout:
            arrivals.append((time.monotonic(), line))
        follower.wait(10)
        ended = time.monotonic()
    finally:
        watchdog.cancel()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert [line for _, line in arrivals] == [f"line {i}\n" for i in range(1, 13)]
    # Lines came one by one while the container ran, not in one burst at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 1.0, arrivals
    assert follower.returncode == 0, follower.stderr.read()
    info = hutch.inspect(cid)
    assert info["State"]["Status"] == "exited"
    assert ended - arrivals[-1][0] < 5


def test_logs_tail_since_until_and_timestamps(hutch):
    cid = run_d(hutch, hutch.image, "sh", "-c",
                "echo first; sleep 1; echo second; sleep 1; echo third")
    hutch.wait_state(cid, "exited")
    assert hutch.out("logs", "--tail", "2", cid) == "second\nthird\n"
    assert hutch.out("logs", "-n", "0", cid) == ""
    assert hutch.out("logs", "--tail", "all", cid) == "first\nsecond\nthird\n"
    stamped = hutch.out("logs", "-t", cid).splitlines()
    parsed = [RFC3339NANO.match(line) for line in stamped]
    assert all(parsed), stamped
    assert [m.group(2) for m in parsed] == ["first", "second", "third"]
    t_first, t_second = parse_ts(parsed[0].group(1)), parse_ts(parsed[1].group(1))
    assert 0.8 < t_second - t_first < 3
    between = fmt_ts((t_first + t_second) / 2)
    assert hutch.out("logs", "--since", between, cid) == "second\nthird\n"
    assert hutch.out("logs", "--until", between, cid) == "first\n"
    assert hutch.out("logs", "--since", f"{(t_first + t_second) / 2:.6f}", cid) \
        == "second\nthird\n"


def test_logs_keep_stdout_and_stderr_apart(hutch):
    cid = run_d(hutch, hutch.image, "sh", "-c", "echo out1; echo err1 >&2; echo out2")
    hutch.wait_state(cid, "exited")
    p = hutch("logs", cid)
    assert p.returncode == 0
    assert p.stdout == "out1\nout2\n"
    assert p.stderr == "err1\n"


# -- stop, kill, restart ----------------------------------------------------------------
def test_stop_lets_a_term_trap_exit_with_its_own_code(hutch):
    run_d(hutch, "--name", "lc-trap", hutch.image, "sh", "-c",
          'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done')
    wait_log(hutch, "lc-trap", "ready")
    t0 = time.monotonic()
    p = hutch("stop", "lc-trap")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "lc-trap"
    assert time.monotonic() - t0 < 5  # the trap ended it; no 10 s timeout
    info = hutch.inspect("lc-trap")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 7
    assert "got TERM" in hutch.out("logs", "lc-trap")


def test_stop_kills_a_process_that_ignores_term_after_the_timeout(hutch):
    run_d(hutch, "--name", "lc-stubborn", hutch.image, "sh", "-c",
          'trap "" TERM; echo ready; while :; do sleep 1; done')
    wait_log(hutch, "lc-stubborn", "ready")
    pid = hutch.inspect("lc-stubborn")["State"]["Pid"]
    t0 = time.monotonic()
    p = hutch("stop", "-t", "1", "lc-stubborn")
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert 0.9 < took < 4, took
    info = hutch.inspect("lc-stubborn")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
    assert not alive(pid)
    # Stopping a stopped container is fine (docker: prints the name, exit 0).
    p = hutch("stop", "lc-stubborn")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "lc-stubborn"


def test_kill_delivers_the_signal_and_defaults_to_kill(hutch):
    run_d(hutch, "--name", "lc-kill", hutch.image, "sh", "-c",
          'trap "echo got USR1" USR1; echo ready; while :; do sleep 0.1; done')
    wait_log(hutch, "lc-kill", "ready")
    assert hutch.out("kill", "-s", "USR1", "lc-kill").strip() == "lc-kill"
    wait_log(hutch, "lc-kill", "got USR1")
    assert hutch.inspect("lc-kill")["State"]["Status"] == "running"
    assert hutch.out("kill", "lc-kill").strip() == "lc-kill"
    info = hutch.wait_state("lc-kill", "exited")
    assert info["State"]["ExitCode"] == 137
    p = hutch("kill", "lc-kill")
    assert p.returncode == 1
    assert "not running" in one_line_error(p)


def test_restart_starts_the_same_container_again_without_counting_a_restart(hutch):
    cid = run_d(hutch, "--name", "lc-restart", hutch.image, "sh", "-c",
                'trap "exit 0" TERM; echo boot; while :; do sleep 0.1; done')
    wait_log(hutch, "lc-restart", "boot")
    before = hutch.inspect("lc-restart")
    time.sleep(0.05)
    p = hutch("restart", "-t", "5", "lc-restart")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "lc-restart"
    after = hutch.wait_state("lc-restart", "running")
    assert after["Id"] == cid
    assert after["State"]["StartedAt"] > before["State"]["StartedAt"]
    assert after["State"]["Pid"] != before["State"]["Pid"]
    assert not alive(before["State"]["Pid"]) and alive(after["State"]["Pid"])
    assert after["RestartCount"] == 0  # docker counts only policy restarts
    wait_for(lambda: hutch.out("logs", "lc-restart").count("boot") == 2, 5, "second boot")


def test_restart_keeps_a_rm_container_which_stop_then_removes(hutch):
    # docker turns AutoRemove off for the length of a restart; the volatile overlay of
    # an --rm container mounts again.
    run_d(hutch, "--rm", "--name", "lc-rm-restart", hutch.image, "sh", "-c",
          'trap "exit 0" TERM; echo boot; while :; do sleep 0.1; done')
    wait_log(hutch, "lc-rm-restart", "boot")
    p = hutch("restart", "-t", "5", "lc-rm-restart")
    assert p.returncode == 0, p.stderr
    hutch.wait_state("lc-rm-restart", "running")
    wait_for(lambda: hutch.out("logs", "lc-rm-restart").count("boot") == 2, 5, "second boot")
    hutch.out("stop", "lc-rm-restart")
    wait_for(lambda: "lc-rm-restart" not in hutch.out("ps", "-a"), 5, "removal after stop")


# -- restart policies -------------------------------------------------------------------
def test_restart_on_failure_retries_the_given_number_of_times(hutch):
    run_d(hutch, "--name", "lc-onfail", "--restart", "on-failure:2", hutch.image,
          "sh", "-c", "echo attempt; exit 1")
    info = hutch.wait_state("lc-onfail", "exited", timeout=15)
    time.sleep(1)  # nothing more comes after the last retry
    info = hutch.inspect("lc-onfail")
    assert info["State"]["Status"] == "exited"
    assert info["RestartCount"] == 2
    assert info["State"]["ExitCode"] == 1
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hutch.out("logs", "lc-onfail") == "attempt\n" * 3


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_always_restarts_a_clean_exit_until_stopped(hutch, policy):
    name = f"lc-{policy}"
    run_d(hutch, "--name", name, "--restart", policy, hutch.image, "sh", "-c", "echo up; exit 0")
    wait_for(lambda: hutch.inspect(name)["RestartCount"] >= 3, 15, "three restarts")
    assert hutch.out("logs", name).count("up\n") >= 3
    p = hutch("stop", "-t", "1", name)
    assert p.returncode == 0, p.stderr
    info = hutch.wait_state(name, "exited")
    count, lines = info["RestartCount"], hutch.out("logs", name).count("up\n")
    time.sleep(1.5)  # longer than the back-off so far: a restart would have come
    info = hutch.inspect(name)
    assert info["State"]["Status"] == "exited"
    assert info["RestartCount"] == count
    assert hutch.out("logs", name).count("up\n") == lines
    assert info["Id"] not in hutch.out("ps", "-q", "--no-trunc").split()


def test_restart_no_leaves_a_failed_container_exited(hutch):
    run_d(hutch, "--name", "lc-norestart", hutch.image, "sh", "-c", "echo once; exit 1")
    hutch.wait_state("lc-norestart", "exited")
    time.sleep(0.5)
    info = hutch.inspect("lc-norestart")
    assert info["State"]["Status"] == "exited" and info["RestartCount"] == 0
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert hutch.out("logs", "lc-norestart") == "once\n"


def test_rm_and_restart_always_together_are_a_usage_error(hutch):
    before = hutch.ids()
    p = hutch("run", "--rm", "--restart", "always", hutch.image, "true")
    assert p.returncode == 125
    assert "restart" in one_line_error(p).lower()
    assert hutch.ids() == before


# -- rm, prune --------------------------------------------------------------------------
def test_rm_refuses_a_running_container_and_rm_f_kills_it(hutch):
    cid = run_d(hutch, "--name", "lc-rm", hutch.image, "sleep", "1000")
    pid = hutch.inspect(cid)["State"]["Pid"]
    p = hutch("rm", "lc-rm")
    assert p.returncode == 1
    msg = one_line_error(p)
    assert "running" in msg and "lc-rm" in msg
    assert alive(pid) and hutch.inspect(cid)["State"]["Status"] == "running"
    p = hutch("rm", "-f", "lc-rm")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "lc-rm"
    wait_for(lambda: not alive(pid), 5, "the container's process to die")
    assert cid not in hutch.ids()
    assert not (hutch.root / "containers" / cid).exists()
    assert not (hutch.run_dir / "containers" / cid).exists()
    p = hutch("rm", "lc-rm")
    assert p.returncode == 1 and "No such container" in one_line_error(p)


def _volume_names(hutch) -> set[str] | None:
    p = hutch("volume", "ls", "-q")
    return set(p.stdout.split()) if p.returncode == 0 else None


def test_rm_v_removes_the_anonymous_volumes(hutch):
    if _volume_names(hutch) is None:
        pytest.skip("volumes have not landed")
    cid = hutch.out("create", hutch.config_image).strip()
    anon = [m["Name"] for m in hutch.inspect(cid)["Mounts"] if m["Type"] == "volume"]
    assert len(anon) == 1, hutch.inspect(cid)["Mounts"]
    assert anon[0] in _volume_names(hutch)
    assert hutch.out("rm", "-v", cid).strip() == cid
    assert anon[0] not in _volume_names(hutch)


def test_container_prune_removes_only_stopped_containers(hutch):
    running = run_d(hutch, hutch.image, "sleep", "1000")
    exited = run_d(hutch, hutch.image, "true")
    created = hutch.out("create", hutch.image, "true").strip()
    hutch.wait_state(exited, "exited")
    p = hutch("container", "prune", "-f")
    assert p.returncode == 0, p.stderr
    assert exited in p.stdout and created in p.stdout and running not in p.stdout
    ids = hutch.ids()
    assert running in ids and exited not in ids and created not in ids
    assert hutch.inspect(running)["State"]["Status"] == "running"


# -- ps ---------------------------------------------------------------------------------
@pytest.fixture
def three(hutch):
    """A running (label tier=web), an exited (code 3) and a created container, in that
    order of creation."""
    up = run_d(hutch, "--name", "lc-ps-up", "--label", "tier=web", hutch.image,
               "sleep", "1000")
    down = run_d(hutch, "--name", "lc-ps-down", "--label", "tier=db", hutch.image,
                 "sh", "-c", "exit 3")
    new = hutch.out("create", "--name", "lc-ps-new", hutch.image, "true").strip()
    hutch.wait_state(down, "exited")
    return {"up": up, "down": down, "new": new}


def test_ps_lists_running_by_default_and_all_with_a(hutch, three):
    ours = set(three.values())
    q = set(hutch.out("ps", "-q", "--no-trunc").split()) & ours
    assert q == {three["up"]}
    qa = set(hutch.out("ps", "-aq", "--no-trunc").split()) & ours
    assert qa == ours
    short = hutch.out("ps", "-aq").split()
    assert three["up"][:12] in short and all(len(s) == 12 for s in short)
    table = hutch.out("ps", "-a").splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    rows = {line.split()[-1]: line for line in table[1:]}
    assert re.search(r"\bUp (Less than a second|\d+ seconds?)\b", rows["lc-ps-up"])
    assert re.search(r"\bExited \(3\) .*ago\b", rows["lc-ps-down"])
    assert re.search(r"\bCreated\b", rows["lc-ps-new"])
    assert rows["lc-ps-up"].startswith(three["up"][:12])


def test_ps_filters_by_status_name_label_and_id(hutch, three):
    def q(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return set(hutch.out("ps", "-aq", "--no-trunc", *args).split()) & set(three.values())

    assert q("status=exited") == {three["down"]}
    assert q("status=running") == {three["up"]}
    assert q("status=created") == {three["new"]}
    assert q("name=lc-ps-down") == {three["down"]}
    assert q("name=lc-ps-") == set(three.values())  # docker: a substring match
    assert q("label=tier=web") == {three["up"]}
    assert q("label=tier") == {three["up"], three["down"]}
    assert q(f"id={three['new'][:10]}") == {three["new"]}
    assert q("status=exited", "label=tier=web") == set()
    # Without -a a filter on status still finds stopped ones (docker).
    assert set(hutch.out("ps", "-q", "--no-trunc", "--filter", "status=exited").split()) \
        & set(three.values()) == {three["down"]}


def test_ps_json_is_one_object_per_line(hutch, three):
    rows = {r["Names"]: r for r in ps_rows(hutch, "-a")}
    for key in ("lc-ps-up", "lc-ps-down", "lc-ps-new"):
        assert key in rows
    up, down, new = rows["lc-ps-up"], rows["lc-ps-down"], rows["lc-ps-new"]
    assert up["ID"] == three["up"][:12] and up["State"] == "running"
    assert up["Status"].startswith("Up ")
    assert down["State"] == "exited" and down["Status"].startswith("Exited (3) ")
    assert new["State"] == "created" and new["Status"] == "Created"
    assert up["Image"] == hutch.image and up["Command"] == '"sleep 1000"'


def test_ps_json_labels_are_a_string_like_docker(hutch, three):
    rows = {r["Names"]: r for r in ps_rows(hutch, "-a")}
    assert rows["lc-ps-up"]["Labels"] == "tier=web"


def test_ps_filter_without_a_lists_only_running_containers(hutch, three):
    out = set(hutch.out("ps", "-q", "--no-trunc", "--filter", "name=lc-ps-").split())
    assert out & set(three.values()) == {three["up"]}


def test_ps_last_n_and_latest(hutch, three):
    assert hutch.out("ps", "-n", "2", "-q", "--no-trunc").split() == [three["new"],
                                                                       three["down"]]
    assert hutch.out("ps", "-l", "-q", "--no-trunc").split() == [three["new"]]


def test_ps_exited_status_counts_seconds_like_docker(hutch):
    cid = run_d(hutch, "--name", "lc-ps-secs", hutch.image, "sh", "-c", "exit 3")
    hutch.wait_state(cid, "exited")
    time.sleep(2.2)
    (row,) = ps_rows(hutch, "-a", "--filter", "name=lc-ps-secs")
    assert re.fullmatch(r"Exited \(3\) \d+ seconds ago", row["Status"]), row["Status"]


# -- exec -------------------------------------------------------------------------------
@pytest.fixture
def box(hutch):
    run_d(hutch, "--name", "lc-box", hutch.image, "sleep", "1000")
    return "lc-box"


def test_exec_passes_output_exit_code_env_user_and_workdir(hutch, box):
    p = hutch("exec", box, "sh", "-c", "echo hi; echo oops >&2; exit 6")
    assert (p.returncode, p.stdout, p.stderr) == (6, "hi\n", "oops\n")
    assert hutch.out("exec", "-e", "GREETING=hello there", box,
                     "sh", "-c", 'echo "$GREETING"') == "hello there\n"
    assert hutch.out("exec", "-u", "app", box, "id", "-u") == "1000\n"
    assert hutch.out("exec", "-u", "app", box, "sh", "-c", "echo $HOME") == "/home/app\n"
    assert hutch.out("exec", "-w", "/tmp", box, "pwd") == "/tmp\n"
    assert hutch.out("exec", box, "pwd") == "/\n"
    # The exec'd process is in the container: its pid namespace, its cgroup.
    pid1 = hutch.out("exec", box, "cat", "/proc/1/cmdline").replace("\0", " ").strip()
    assert pid1 == "sleep 1000"


def test_exec_detached_keeps_running(hutch, box):
    p = subprocess.run(hutch.argv("exec", "-d", box, "sh", "-c", "exec sleep 777"),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
    assert p.returncode == 0
    wait_for(lambda: "sleep 777" in hutch.out("exec", box, "ps", "-o", "pid,args"), 5,
             "the detached exec in ps")
    assert "sleep 777" in hutch.out("top", box)


def test_exec_detached_does_not_hold_the_callers_output_open(hutch, box):
    p = hutch("exec", "-d", box, "sleep", "777", timeout=5)
    assert (p.returncode, p.stdout) == (0, "")


def test_exec_i_pipes_stdin_and_without_i_stdin_is_empty(hutch, box):
    p = hutch("exec", "-i", box, "sh", "-c", "tr a-z A-Z", input="piped in\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "PIPED IN\n"
    p = hutch("exec", box, "cat", input="not for you\n", timeout=10)
    assert p.returncode == 0 and p.stdout == ""


def test_exec_it_runs_on_a_real_pty(hutch, box):
    term = Pty(hutch.argv("exec", "-it", box, "sh"))
    try:
        term.read_until(r"[#$] ")
        term.write(b"tty; echo $((6*7)); exit\n")
        assert term.wait() == 0
        term.read_until("42")
    finally:
        term.close()
    out = term.out.decode(errors="replace")
    assert "/dev/pts/" in out and "42" in out


def test_exec_in_a_stopped_container_fails_clearly(hutch):
    hutch.out("create", "--name", "lc-exec-stopped", hutch.image, "true")
    p = hutch("exec", "lc-exec-stopped", "true")
    assert p.returncode != 0
    assert "not running" in one_line_error(p)


def test_exec_errors_before_the_exec_exit_1_like_docker(hutch):
    hutch.out("create", "--name", "lc-exec-code", hutch.image, "true")
    assert hutch("exec", "lc-exec-code", "true").returncode == 1
    assert hutch("exec", "lc-no-such-container", "true").returncode == 1


def test_exec_of_a_missing_command_is_127(hutch, box):
    p = hutch("exec", box, "no-such-command")
    assert p.returncode == 127
    assert "no-such-command" in one_line_error(p)


# -- run -it, detach, attach -------------------------------------------------------------
def test_run_it_answers_on_a_pty_with_its_size_detaches_and_attach_returns(hutch):
    term = Pty(hutch.argv("run", "-it", "--name", "lc-tty", hutch.image, "sh"), 33, 97)
    try:
        term.read_until(r"[#$] ")
        term.write(b"stty size; echo $((6*7))\n")
        term.read_until(r"42\r?\n")
        assert re.search(r"^33 97\r?$", term.out.decode(), re.M), term.out
        term.write(b"\x10\x11")  # ctrl-p ctrl-q
        assert term.wait() == 0
    finally:
        term.close()
    (row,) = ps_rows(hutch, "--filter", "name=lc-tty")
    assert row["Status"].startswith("Up ")
    wait_lean_monitor(hutch, "lc-tty")  # the pty master survives the monitor's re-exec
    again = Pty(hutch.argv("attach", "lc-tty"), 20, 60)
    try:
        again.wait_raw()  # attach owns the terminal: what we type now goes to the shell
        again.write(b"echo back$((1+1)); stty size\n")
        again.read_until(r"back2")
        again.read_until(r"20 60")
        again.write(b"exit 9\n")
        assert again.wait() == 9
    finally:
        again.close()
    info = hutch.wait_state("lc-tty", "exited")
    assert info["State"]["ExitCode"] == 9


# -- inspect, top, stats, update, wait, pause, rename, port, df, info ---------------------
def test_inspect_shows_state_config_name_and_policy(hutch):
    cid = run_d(hutch, "--name", "lc-inspect", "--restart", "on-failure:4", hutch.image,
                "sleep", "1000")
    info = hutch.inspect("lc-inspect")
    st = info["State"]
    assert info["Id"] == cid and info["Name"] == "/lc-inspect"
    assert st["Status"] == "running" and st["Running"] is True and st["ExitCode"] == 0
    assert st["OOMKilled"] is False
    with open(f"/proc/{st['Pid']}/cmdline") as f:
        assert f.read().split("\0")[:2] == ["sleep", "1000"]
    with open(f"/proc/{st['Pid']}/cgroup") as f:
        assert cid in f.read()
    assert info["Config"]["Cmd"] == ["sleep", "1000"]
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 4}
    assert hutch.out("inspect", "-f", "{{.State.Status}}", "lc-inspect") == "running\n"
    assert hutch.out("inspect", "-f", "{{.Name}} {{.State.Pid}}", cid[:8]) \
        == f"/lc-inspect {st['Pid']}\n"
    hutch.out("kill", "lc-inspect")
    info = hutch.wait_state("lc-inspect", "exited")
    assert info["State"]["ExitCode"] == 137 and info["State"]["Pid"] == 0


def test_top_lists_the_processes_of_the_container(hutch):
    run_d(hutch, "--name", "lc-top", hutch.image, "sh", "-c", "sleep 1000 & wait")
    pid = hutch.inspect("lc-top")["State"]["Pid"]
    wait_for(lambda: "sleep 1000" in hutch.out("top", "lc-top"), 5, "the sleep in top")
    lines = hutch.out("top", "lc-top").splitlines()
    header = lines[0].split()
    assert "PID" in header and "CMD" in header
    pids = {int(line.split()[header.index("PID")]) for line in lines[1:]}
    assert len(lines) == 3, lines  # sh and its sleep, nothing of the host
    assert pid in pids
    p = hutch("top", "lc-top", "-o", "pid,comm")
    assert p.returncode == 0 and "sleep" in p.stdout


def test_stats_shows_the_memory_limit(hutch):
    run_d(hutch, "--name", "lc-stats", "--memory", "64m", hutch.image, "sleep", "1000")
    out = hutch.out("stats", "--no-stream", "lc-stats").splitlines()
    assert "MEM USAGE / LIMIT" in out[0]
    (row,) = [line for line in out[1:] if "lc-stats" in line]
    assert re.search(r"\d[\d.]*[KMG]?i?B / 64MiB", row), row


def test_update_changes_the_live_cgroup_limits(hutch):
    cid = run_d(hutch, "--name", "lc-update", "--memory", "64m", "--pids-limit", "100",
                hutch.image, "sleep", "1000")
    pid = hutch.inspect(cid)["State"]["Pid"]
    mem = cgroup_file(pid, "memory", "memory.limit_in_bytes")
    pids = cgroup_file(pid, "pids", "pids.max")
    assert int(mem.read_text()) == 64 << 20
    assert pids.read_text().strip() == "100"
    p = hutch("update", "--memory", "128m", "--pids-limit", "50", "lc-update")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "lc-update"
    assert int(mem.read_text()) == 128 << 20
    assert pids.read_text().strip() == "50"
    row = hutch.out("stats", "--no-stream", "lc-update").splitlines()[1]
    assert "/ 128MiB" in row, row


def test_update_shows_in_inspect_and_survives_a_restart(hutch):
    cid = run_d(hutch, "--name", "lc-update2", "--memory", "64m", hutch.image,
                "sh", "-c", 'trap "exit 0" TERM; while :; do sleep 0.1; done')
    hutch.out("update", "--memory", "128m", "--pids-limit", "50", "lc-update2")
    info = hutch.inspect(cid)
    assert info["HostConfig"]["Memory"] == 128 << 20 and info["HostConfig"]["PidsLimit"] == 50
    hutch.out("restart", "lc-update2")
    pid = hutch.wait_state(cid, "running")["State"]["Pid"]
    assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes").read_text()) == 128 << 20
    assert cgroup_file(pid, "pids", "pids.max").read_text().strip() == "50"


def test_wait_prints_the_exit_code_when_the_container_exits(hutch):
    cid = run_d(hutch, hutch.image, "sh", "-c", "sleep 0.5; exit 5")
    t0 = time.monotonic()
    p = hutch("wait", cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "5\n"
    assert time.monotonic() - t0 < 5
    assert hutch.inspect(cid)["State"]["Status"] == "exited"


def test_pause_freezes_the_container_and_unpause_resumes_it(hutch):
    run_d(hutch, "--name", "lc-pause", hutch.image, "sh", "-c",
          "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done")
    wait_log(hutch, "lc-pause", "3\n")
    assert hutch.out("pause", "lc-pause").strip() == "lc-pause"
    info = hutch.inspect("lc-pause")
    assert info["State"]["Status"] == "paused" and info["State"]["Paused"] is True
    assert cgroup_file(info["State"]["Pid"], "freezer", "freezer.state").read_text().strip() \
        in ("FROZEN", "FREEZING")
    (row,) = ps_rows(hutch, "--filter", "name=lc-pause")
    assert row["Status"].endswith("(Paused)")
    time.sleep(0.3)  # let whatever was in flight land
    frozen = hutch.out("logs", "lc-pause")
    time.sleep(1)
    assert hutch.out("logs", "lc-pause") == frozen  # no progress while paused
    p = hutch("exec", "lc-pause", "true")
    assert p.returncode != 0 and "paused" in one_line_error(p)
    assert hutch.out("unpause", "lc-pause").strip() == "lc-pause"
    assert hutch.inspect("lc-pause")["State"]["Status"] == "running"
    wait_for(lambda: len(hutch.out("logs", "lc-pause")) > len(frozen) + 10, 5, "progress")


def test_rename_then_the_new_name_finds_it(hutch):
    cid = run_d(hutch, "--name", "lc-old", hutch.image, "sleep", "1000")
    p = hutch("rename", "lc-old", "lc-new")
    assert p.returncode == 0, p.stderr
    assert hutch.inspect("lc-new")["Id"] == cid
    assert hutch.inspect("lc-new")["Name"] == "/lc-new"
    p = hutch("inspect", "--type", "container", "lc-old")
    assert p.returncode == 1
    assert [r["Names"] for r in ps_rows(hutch, "--filter", f"id={cid}")] == ["lc-new"]
    # The old name is free again.
    run_d(hutch, "--name", "lc-old", hutch.image, "true")


def test_port_prints_nothing_without_published_ports(hutch):
    run_d(hutch, "--name", "lc-port", hutch.image, "sleep", "1000")
    p = hutch("port", "lc-port")
    assert (p.returncode, p.stdout) == (0, "")


def test_system_df_and_info_count_the_containers(hutch):
    run_d(hutch, "--name", "lc-df-up", hutch.image, "sleep", "1000")
    down = run_d(hutch, "--name", "lc-df-down", hutch.image, "true")
    hutch.wait_state(down, "exited")
    total, running = len(hutch.ids()), len(hutch.out("ps", "-q").split())
    df = hutch.out("system", "df").splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {line[:15].strip(): line[15:].split() for line in df[1:]}
    assert set(rows) == {"Images", "Containers", "Local Volumes"}, df
    assert rows["Containers"][:2] == [str(total), str(running)]
    assert int(rows["Images"][0]) >= 2 and int(rows["Images"][1]) >= 1
    info = hutch.out("info")
    assert f" Containers: {total}\n" in info
    assert f"  Running: {running}\n" in info
    assert f"  Stopped: {total - running}\n" in info


# -- OOM --------------------------------------------------------------------------------
def test_memory_hog_is_oom_killed(hutch):
    p = hutch("run", "--name", "lc-oom", "--memory", "16m", hutch.image,
              "sh", "-c", "head -c 64m /dev/zero | tail", timeout=60)
    assert p.returncode == 137, p.stderr
    info = hutch.inspect("lc-oom")
    assert info["State"]["ExitCode"] == 137
    assert info["State"]["OOMKilled"] is True


# -- concurrency ------------------------------------------------------------------------
def test_twenty_runs_racing_for_one_name_leave_exactly_one(hutch):
    procs = [hutch.popen("run", "-d", "--name", "lc-same", hutch.image, "sleep", "30",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True) for _ in range(20)]
    results = []
    try:
        for pr in procs:
            out, err = pr.communicate(timeout=120)
            results.append((pr.returncode, out, err))
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait()
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, [(c, e) for c, _, e in results]
    assert len(losers) == 19
    for code, out, err in losers:
        assert code == 125, (code, err)
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("hint:")]
        assert len(lines) == 1 and "already in use" in lines[0], err
        assert out == ""
    rows = ps_rows(hutch, "-a", "--filter", "name=lc-same")
    assert [(r["Names"], r["State"]) for r in rows] == [("lc-same", "running")]
    assert rows[0]["ID"] == winners[0][1].strip()[:12]


# -- the monitor's lean phase -----------------------------------------------------------
def test_output_exit_code_and_restarts_carry_over_the_monitors_re_exec(hutch):
    script = "echo run; sleep 2.6; echo done; exit 3"
    cli = hutch.popen("run", "--name", "lc-lean", "--restart", "on-failure:1", hutch.image,
                      "sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = cli.communicate(timeout=20)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    # docker run (attached) ends at the container's first exit, restart policy or not.
    assert (cli.returncode, out) == (3, "run\ndone\n"), err
    monitor = hutch.inspect("lc-lean")["State"]["MonitorPid"]
    assert "monitor import resume" in cmdline(monitor)
    # The lean monitor restarts it (on-failure:1) and serves a new attach.
    wait_log(hutch, "lc-lean", "run\ndone\nrun\n")
    p = hutch("attach", "--no-stdin", "lc-lean", timeout=20)
    assert (p.returncode, p.stdout) == (3, "done\n"), p.stderr
    info = hutch.wait_state("lc-lean", "exited")
    assert info["RestartCount"] == 1 and info["State"]["ExitCode"] == 3
    assert hutch.out("logs", "lc-lean") == "run\ndone\n" * 2
    assert not alive(monitor)


# -- crash truth ------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["fresh", "lean"])
def test_a_killed_monitor_leaves_the_container_running_and_stoppable(hutch, phase):
    cid = run_d(hutch, "--name", "lc-orphan", hutch.image, "sh", "-c",
                'trap "exit 0" TERM; while :; do sleep 0.1; done')
    if phase == "lean":
        wait_lean_monitor(hutch, cid)
    st = hutch.inspect(cid)["State"]
    monitor, pid = st["MonitorPid"], st["Pid"]
    assert monitor > 0 and alive(monitor)
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: not alive(monitor), 5, "the monitor to die")
    assert alive(pid)
    (row,) = ps_rows(hutch, "--filter", "name=lc-orphan")
    assert row["Status"].startswith("Up ")
    assert hutch.inspect(cid)["State"]["Status"] == "running"
    p = hutch("stop", "-t", "2", "lc-orphan")
    assert p.returncode == 0, p.stderr
    wait_for(lambda: not alive(pid), 5, "the container to stop")
    assert hutch.inspect(cid)["State"]["Status"] == "exited"
    assert not [m for m in _mounts(hutch.run_dir) if cid in m]


def test_killed_monitor_and_init_show_exited_and_rm_cleans_up(hutch):
    cid = run_d(hutch, "--name", "lc-dead", hutch.image, "sleep", "1000")
    st = hutch.inspect(cid)["State"]
    os.kill(st["MonitorPid"], signal.SIGKILL)
    os.kill(st["Pid"], signal.SIGKILL)
    wait_for(lambda: not alive(st["MonitorPid"]) and not alive(st["Pid"]), 5, "both to die")
    (row,) = ps_rows(hutch, "-a", "--filter", "name=lc-dead")
    assert row["State"] == "exited" and row["Status"].startswith("Exited ")
    assert cid not in hutch.out("ps", "-q", "--no-trunc").split()
    assert hutch.out("rm", "lc-dead").strip() == "lc-dead"
    assert cid not in hutch.ids()
    assert not (hutch.root / "containers" / cid).exists()
    assert not (hutch.run_dir / "containers" / cid).exists()
    assert not [m for m in _mounts(hutch.run_dir) if cid in m]


def test_killing_the_foreground_cli_leaves_the_container_running(hutch):
    cli = hutch.popen("run", "--name", "lc-fg", hutch.image, "sh", "-c",
                      "echo hello-fg; exec sleep 1000", stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        r, _, _ = select.select([cli.stdout], [], [], 15)
        assert r and cli.stdout.readline() == b"hello-fg\n"
        cli.kill()
        cli.wait(5)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stdout.close()
        cli.stderr.close()
    time.sleep(0.3)
    (row,) = ps_rows(hutch, "--filter", "name=lc-fg")
    assert row["Status"].startswith("Up ")
    assert alive(hutch.inspect("lc-fg")["State"]["Pid"])
    assert hutch.out("logs", "lc-fg") == "hello-fg\n"


# -- the early monitor -------------------------------------------------------------------
def _ours(hutch, exclude: int = 0) -> set[int]:
    """Processes of this store (the CLI and the monitors it forks carry --root)."""
    return {pid for pid, _ in _processes_referencing(str(hutch.root)) if pid != exclude}


def _none_left(hutch, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _ours(hutch) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _ours(hutch), "a monitor outlived a run that never started its container"


def test_a_run_failing_before_its_container_exists_ends_its_early_monitor(hutch):
    # `run` forks the container's monitor before it resolves the image: each failure
    # there must end it, and leave no container, as before.
    p = hutch("run", "--rm", "--pull", "never", "nosuch/image:1", "true")
    assert p.returncode == 125 and "nosuch/image:1" in p.stderr
    hutch.out("run", "--name", "em-taken", hutch.image, "true")
    p = hutch("run", "--name", "em-taken", hutch.image, "true")
    assert p.returncode == 125 and "already in use" in p.stderr
    p = hutch("run", "-d", "--name", "em-taken", hutch.image, "true")
    assert p.returncode == 125
    _none_left(hutch)
    assert [r["Names"] for r in ps_rows(hutch, "-a")] == ["em-taken"]


def test_killing_run_before_the_container_starts_ends_its_early_monitor(hutch):
    # A registry that accepts and never answers: `run --pull always` waits there, its
    # monitor already forked. SIGKILL of the command must take the monitor with it.
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        ref = f"127.0.0.1:{srv.getsockname()[1]}/stuck/image:1"
        cli = hutch.popen("run", "--rm", "--pull", "always", ref, "true",
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: len(_ours(hutch, exclude=cli.pid)) == 1, 10), \
                "no early monitor beside the waiting command"
            srv.settimeout(10)
            conn, _ = srv.accept()  # the command is in its pull now
            cli.kill()
            cli.wait(5)
            conn.close()
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    _none_left(hutch)
    assert hutch.ids() == []


def _rootfs_options(hutch, cid: str) -> str:
    target = str(hutch.run_dir / "containers" / cid / "rootfs")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                return fields[-1]  # the super block options
    raise AssertionError(f"{target} is not mounted")


def test_only_a_rm_containers_overlay_is_volatile(hutch):
    # --rm's writes die with it: no syncs of the upper file system (umount is faster);
    # a kept container's writes are synced as usual.
    rm = run_d(hutch, "--rm", hutch.image, "sleep", "1000")
    kept = run_d(hutch, hutch.image, "sleep", "1000")
    # (shown as "volatile", or "fsync=volatile" by newer kernels)
    assert "volatile" in _rootfs_options(hutch, rm)
    assert "volatile" not in _rootfs_options(hutch, kept)
    hutch.out("rm", "-f", rm, kept)


# -- cycles -----------------------------------------------------------------------------
def _mounts(under: Path) -> list[str]:
    prefix = str(under) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def _listing(*patterns: Path) -> set[str]:
    """Every entry of the directories matching the glob patterns."""
    out = set()
    for pattern in patterns:
        for d in glob.glob(str(pattern)):
            out |= {os.path.join(d, x) for x in os.listdir(d)}
    return out


def _cgroups_named(ids: set[str]) -> set[str]:
    """The cgroup dirs (any hierarchy) of these containers. The hutch/ parent is shared
    with every other hutch on the host, so only names we know are ours count."""
    out = set()
    for base in [*Path("/sys/fs/cgroup").glob("*/hutch"), Path("/sys/fs/cgroup/hutch")]:
        if base.is_dir():
            out |= {str(p) for p in base.iterdir() if p.is_dir() and p.name in ids}
    return out


class DirWatcher(threading.Thread):
    """Polls directories every few ms and remembers every name seen in them: the ids of
    `run --rm` containers, which live ~0.1 s and print nothing."""

    def __init__(self, *dirs: Path) -> None:
        super().__init__(daemon=True)
        self.dirs, self.seen, self.done = dirs, set(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.003):
            for d in self.dirs:
                with contextlib.suppress(OSError):
                    self.seen.update(os.listdir(d))

    def stop(self) -> set[str]:
        self.done.set()
        self.join()
        return self.seen


def _processes_referencing(base: str) -> set[tuple[int, str]]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if base in cmd or cwd.startswith(base):
            found.add((int(entry), cmd))
    return found


def test_two_hundred_run_rm_cycles_leave_nothing_behind(hutch):
    base = str(hutch.root.parent)
    root, run = hutch.root, hutch.run_dir

    def state():
        return {
            "ids": set(hutch.ids()),
            "mounts": set(_mounts(run)),
            "dirs": _listing(run / "containers", root / "containers", run / "runtime",
                             root / "snapshots" / "*" / "snapshots"),
            "procs": _processes_referencing(base),
        }

    hutch("run", "--rm", hutch.image, "true", check=True)  # one-time caches (seccomp)
    before = state()
    watcher = DirWatcher(root / "containers", run / "containers")
    watcher.start()
    times = []
    try:
        for i in range(200):
            t0 = time.monotonic()
            p = hutch("run", "--rm", hutch.image, "true")
            times.append(time.monotonic() - t0)
            assert p.returncode == 0, f"run {i}: {p.stderr}"
            assert p.stdout == ""
    finally:
        seen = watcher.stop() - {os.path.basename(x) for x in before["dirs"]}
    # The watcher saw (nearly) every container come and go: the checks below mean something.
    assert len(seen) >= 190, len(seen)
    deadline = time.monotonic() + 5  # a monitor may still be finishing the last one
    while ((after := state()) != before or _cgroups_named(seen)) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {k: before[k] ^ after[k] for k in before if before[k] != after[k]}
    assert not left, left
    assert not _cgroups_named(seen)
    median = statistics.median(times)
    print(f"\nrun --rm true x200 ({len(seen)} containers seen): median {median * 1000:.0f} ms, "
          f"p90 {sorted(times)[179] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    assert median < 2.0
