"""Every `hutch run` flag, seen from inside the container (or from the host's /proc and
cgroup fs for the container's process), and the image config's defaults honoured.

Docker is the reference: each test states what `docker run` with the same flags shows,
and asserts on what the container observes (/proc/self/status, cgroup files, id, env,
hostname, ulimit, mountinfo, its own output), not only on what hutch prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
import types
import uuid
from pathlib import Path

import pytest
from e2e_helpers import run_d, wait_for

pytestmark = pytest.mark.e2e

# docker's default capability set (oci/defaults.go) as a CapEff mask.
DOCKER_DEFAULT_CAPS = 0x00000000A80425FB
CAP = {"CHOWN": 0, "KILL": 5, "NET_ADMIN": 12}
CGROUP_V1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
needs_cgroup_v1 = pytest.mark.skipif(not CGROUP_V1, reason="the cgroup paths read are v1's")
TINI = ("/usr/bin/tini-static", "/usr/bin/docker-init")
needs_tini = pytest.mark.skipif(not any(os.path.exists(p) for p in TINI),
                                reason="--init needs tini on the host (apt-get install tini)")


# -- helpers ---------------------------------------------------------------------------------

def status_field(text: str, name: str) -> str:
    """A `Name:\tvalue` line of /proc/<pid>/status text."""
    m = re.search(rf"^{name}:\s*(\S+)", text, re.M)
    assert m, f"no {name} in {text!r}"
    return m.group(1)


def host_status(name: str) -> str:
    with open("/proc/self/status") as f:
        return status_field(f.read(), name)


# docker (moby#42933) gives a privileged container the capabilities the engine has (this
# sandbox lacks CAP_SYS_RESOURCE, for one).
HOST_BOUNDING = int(host_status("CapBnd"), 16)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    """The error line, after checking stderr has no other (a `hint:` line may follow)."""
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith("hint:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


def run_ok(hutch, *args: str, **kw) -> str:
    """`hutch run --rm ARGS`: its stdout, after checking it exited 0."""
    p = hutch("run", "--rm", *args, **kw)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p.stdout






def wait_log(hutch, ref: str, text: str, timeout: float = 10) -> str:
    return wait_for(lambda: (lambda o: o if text in o else "")(hutch("logs", ref).stdout),
                    timeout, f"{text!r} in the logs of {ref}")


def wait_exit(hutch, ref: str, timeout: float = 15) -> int:
    return int(hutch.out("wait", ref, timeout=timeout).strip())


def container_pid(hutch, ref: str) -> int:
    pid = hutch.inspect(ref)["State"]["Pid"]
    assert pid > 0, hutch.inspect(ref)["State"]
    return pid


def host_cgroup_file(pid: int, controller: str, name: str) -> str:
    """The value of cgroup v1 file `controller`/`name` of process `pid`, read on the host
    through /proc/<pid>/cgroup (the container's own /sys/fs/cgroup is read-only)."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()
    raise AssertionError(f"process {pid} has no {controller} cgroup")


def run_on_pty(argv: list[str], timeout: float = 20,
               rows: int = 0, cols: int = 0) -> tuple[bytes, int]:
    """Run argv with a pseudo-terminal as its stdin, stdout and stderr (as in a shell);
    everything it wrote there and its exit code."""
    master, slave = os.openpty()
    if rows:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the slave side is gone
                    data = b""
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        return out, proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# -- environment -------------------------------------------------------------------------------

def test_env_sets_overrides_the_image_and_passes_the_callers_value(hutch, monkeypatch):
    monkeypatch.setenv("HUTCH_E2E_CALLER", "from-the-caller")
    monkeypatch.delenv("HUTCH_E2E_UNSET", raising=False)
    out = run_ok(hutch, "-e", "A=1", "--env", "B=two words", "-e", "HUTCH_E2E_CALLER",
                 "-e", "HUTCH_E2E_UNSET", "-e", "OVERRIDE=cli", "-e", "EMPTY=",
                 "--entrypoint", "env", hutch.config_image)
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["A"] == "1" and env["B"] == "two words" and env["EMPTY"] == ""
    assert env["HUTCH_E2E_CALLER"] == "from-the-caller"
    assert "HUTCH_E2E_UNSET" not in env  # docker: a bare KEY that we do not have is dropped
    assert env["OVERRIDE"] == "cli"  # over the image's OVERRIDE=image
    assert env["FROM_IMAGE"] == "image-env"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == "/home/app"  # the image's user "app"
    assert re.fullmatch(r"[0-9a-f]{12}", env["HOSTNAME"])


def test_bare_env_key_the_caller_lacks_removes_the_image_value(hutch, monkeypatch):
    monkeypatch.delenv("OVERRIDE", raising=False)
    out = run_ok(hutch, "-e", "OVERRIDE", "--entrypoint", "env", hutch.config_image)
    assert "OVERRIDE=" not in out  # moby's ReplaceOrAppendEnvValues deletes it
    assert "FROM_IMAGE=image-env" in out


def test_env_file_is_read_and_env_flags_win_over_it(hutch, tmp_path, monkeypatch):
    monkeypatch.setenv("HUTCH_E2E_FROM_CALLER", "caller-value")
    monkeypatch.delenv("HUTCH_E2E_NOT_SET", raising=False)
    f = tmp_path / "vars.env"
    f.write_text("# a comment\n\nF1=one\nF2=with = sign\nOVERRIDE=file\nA=file\n"
                 "HUTCH_E2E_FROM_CALLER\nHUTCH_E2E_NOT_SET\n")
    out = run_ok(hutch, "--env-file", str(f), "-e", "A=cli", "--entrypoint", "env",
                 hutch.config_image)
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["F1"] == "one" and env["F2"] == "with = sign"
    assert env["OVERRIDE"] == "file" and env["A"] == "cli"
    assert env["HUTCH_E2E_FROM_CALLER"] == "caller-value"
    assert "HUTCH_E2E_NOT_SET" not in env
    assert env["FROM_IMAGE"] == "image-env"


def test_env_file_that_does_not_exist_is_a_125_error(hutch, tmp_path):
    p = hutch("run", "--rm", "--env-file", str(tmp_path / "missing.env"), hutch.image, "true")
    assert p.returncode == 125
    assert "missing.env" in one_line_error(p)


# -- workdir, user -----------------------------------------------------------------------------

def test_workdir_sets_the_cwd_and_creates_a_missing_directory(hutch):
    out = run_ok(hutch, "-w", "/new/dir", hutch.image, "sh", "-c", "pwd; echo $PWD")
    assert out == "/new/dir\n/new/dir\n"
    out = run_ok(hutch, "--workdir", "/tmp", hutch.config_image, "pwd")
    assert out == "/tmp\n"  # over the image's WorkingDir /work


def test_relative_workdir_is_a_125_error(hutch):
    p = hutch("run", "--rm", "-w", "rel", hutch.image, "true")
    assert p.returncode == 125
    assert "absolute" in one_line_error(p)


USER_CASES = [
    # -u value, what `id` shows, $HOME: runc's GetExecUser as docker resolves them
    ("nobody", "uid=65534(nobody) gid=65534(nogroup)", "/nonexistent"),
    ("app", "uid=1000(app) gid=1000(app) groups=1001(extra)", "/home/app"),
    ("1000", "uid=1000(app) gid=1000(app) groups=1001(extra)", "/home/app"),
    ("1000:1001", "uid=1000(app) gid=1001(extra)", "/home/app"),
    ("app:extra", "uid=1000(app) gid=1001(extra)", "/home/app"),
    ("root:extra", "uid=0(root) gid=1001(extra)", "/root"),
    ("4242", "uid=4242 gid=0(root)", "/"),
    ("4242:4343", "uid=4242 gid=4343", "/"),
]


@pytest.mark.parametrize("user,ident,home", USER_CASES, ids=[c[0] for c in USER_CASES])
def test_user_sets_uid_gid_additional_groups_and_home(hutch, user, ident, home):
    out = run_ok(hutch, "-u", user, hutch.image, "sh", "-c", "id; echo $HOME")
    assert out == f"{ident}\n{home}\n"


def test_user_flag_overrides_the_image_user(hutch):
    out = run_ok(hutch, "--user", "root", hutch.config_image, "id -un; echo $HOME")
    assert out == "root\n/root\n"


@pytest.mark.parametrize("user,missing", [("nosuchuser", "user nosuchuser"),
                                          ("app:nosuchgroup", "group nosuchgroup")])
def test_unknown_user_or_group_is_a_125_error(hutch, user, missing):
    before = set(hutch.ids())
    p = hutch("run", "--rm", "-u", user, hutch.image, "id")
    assert p.returncode == 125
    assert f"unable to find {missing}" in one_line_error(p)
    assert set(hutch.ids()) == before  # --rm cleaned up the container it made


# -- entrypoint, hostname ----------------------------------------------------------------------

def test_entrypoint_replaces_the_images_and_drops_its_cmd(hutch):
    assert run_ok(hutch, "--entrypoint", "/bin/echo", hutch.config_image,
                  "hi", "there") == "hi there\n"
    # docker: a new entrypoint clears the image's Cmd ("/work/hello.sh" is not an argument)
    assert run_ok(hutch, "--entrypoint", "/bin/echo", hutch.config_image) == "\n"


def test_empty_entrypoint_resets_it_and_keeps_the_image_cmd(hutch):
    # Without the reset, the image's ["/bin/sh","-c"] would run "/bin/echo" with $0=a.
    assert run_ok(hutch, "--entrypoint", "", hutch.config_image,
                  "/bin/echo", "a", "b") == "a b\n"
    # No command: the image's Cmd runs on its own.
    assert run_ok(hutch, "--entrypoint", "", hutch.config_image) == \
        "hello from image-env in /work as app\n"


def test_hostname_flag_sets_the_uts_name_and_hostname_env(hutch):
    out = run_ok(hutch, "-h", "myhost", hutch.image, "sh", "-c",
                 "hostname; echo $HOSTNAME; cat /proc/sys/kernel/hostname")
    assert out == "myhost\nmyhost\nmyhost\n"
    out = run_ok(hutch, "--hostname", "other.example", hutch.image, "hostname")
    assert out == "other.example\n"


def test_default_hostname_is_the_short_container_id(hutch):
    cid = run_d(hutch, hutch.image, "sh", "-c", "hostname; echo $HOSTNAME")
    assert wait_exit(hutch, cid) == 0
    assert hutch.out("logs", cid) == f"{cid[:12]}\n{cid[:12]}\n"


def test_inspect_config_hostname_is_the_generated_one(hutch):
    cid = run_d(hutch, hutch.image, "sleep", "30")
    assert hutch.inspect(cid)["Config"]["Hostname"] == cid[:12]


# -- filesystem: read-only, tmpfs, device ----------------------------------------------------

def test_read_only_root_refuses_writes_but_dev_shm_stays_writable(hutch):
    p = hutch("run", "--rm", "--read-only", hutch.image, "sh", "-c",
              "touch /x; echo root=$?; touch /tmp/x; echo tmp=$?; touch /dev/shm/x; "
              "echo shm=$?; awk '$5 == \"/\" {print $6}' /proc/self/mountinfo")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:3] == ["root=1", "tmp=1", "shm=0"]
    assert lines[3].split(",")[0] == "ro"
    assert p.stderr.count("Read-only file system") == 2
    # Without the flag the same writes work.
    out = run_ok(hutch, hutch.image, "sh", "-c", "touch /x && touch /tmp/x && echo ok")
    assert out == "ok\n"


def test_read_only_with_tmpfs_tmp_makes_only_tmp_writable(hutch):
    out = run_ok(hutch, "--read-only", "--tmpfs", "/tmp", hutch.image, "sh", "-c",
                 "echo data > /tmp/x && cat /tmp/x; touch /y 2>/dev/null; echo root=$?; "
                 "awk '$2 == \"/tmp\" {print $3, $4}' /proc/self/mounts")
    lines = out.splitlines()
    assert lines[:2] == ["data", "root=1"]
    fstype, opts = lines[2].split()
    assert fstype == "tmpfs"
    # docker's --tmpfs defaults: rw,noexec,nosuid,nodev
    assert {"rw", "noexec", "nosuid", "nodev"} <= set(opts.split(","))


def test_tmpfs_options_size_and_mode_apply(hutch):
    out = run_ok(hutch, "--tmpfs", "/scratch:size=1m,mode=1770", hutch.image, "sh", "-c",
                 "stat -c %a /scratch; df -k /scratch | awk 'NR==2 {print $2}'; "
                 "grep ' /scratch ' /proc/self/mounts | cut -d' ' -f3; "
                 "dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null; "
                 "echo dd=$?; ls -l /scratch/big | awk '{print $5}'")
    mode, size_kb, fstype, dd, written = out.split()
    assert (mode, size_kb, fstype, dd) == ("1770", "1024", "tmpfs", "dd=1")
    assert int(written) == 1024 * 1024  # ENOSPC at the size limit


def test_tmpfs_is_fresh_and_not_in_the_image_layer(hutch):
    out = run_ok(hutch, "--tmpfs", "/work", hutch.config_image,
                 "ls -A /work | wc -l; cat /data/seed.txt")
    assert out == "0\nseeded by the image\n"  # the tmpfs hides the image's /work/hello.sh


def test_device_appears_at_the_container_path(hutch):
    out = run_ok(hutch, "--device", "/dev/null:/dev/mynull", hutch.image, "sh", "-c",
                 "stat -c '%F %t:%T' /dev/mynull; echo hi > /dev/mynull && echo written; "
                 "wc -c < /dev/mynull")
    assert out.split("\n")[:3] == ["character special file 1:3", "written", "0"]
    p = hutch("run", "--rm", hutch.image, "ls", "/dev/mynull")
    assert p.returncode != 0


@pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="needs /dev/loop-control")
def test_device_adds_a_device_cgroup_rule_for_it(hutch):
    # docker's default device rules deny 10:237; mknod works (CAP_MKNOD) but open fails.
    p = hutch("run", "--rm", hutch.image, "sh", "-c",
              "mknod /dev/lc c 10 237 && : < /dev/lc && echo opened")
    assert p.returncode != 0 and "opened" not in p.stdout
    assert "Operation not permitted" in p.stderr
    out = run_ok(hutch, "--device", "/dev/loop-control:/dev/lc", hutch.image, "sh", "-c",
                 ": < /dev/lc && echo opened")
    assert out == "opened\n"
    # :r grants read only
    p = hutch("run", "--rm", "--device", "/dev/loop-control:/dev/lc:r", hutch.image, "sh",
              "-c", ": < /dev/lc && echo read-ok; : > /dev/lc && echo write-ok")
    assert p.stdout == "read-ok\n"


def test_missing_device_is_a_125_error(hutch):
    p = hutch("run", "--rm", "--device", "/dev/hutch-no-such-device", hutch.image, "true")
    assert p.returncode == 125
    assert "/dev/hutch-no-such-device" in one_line_error(p)


# -- --init -----------------------------------------------------------------------------------

@needs_tini
def test_init_runs_tini_as_pid_1_and_passes_the_exit_code(hutch):
    p = hutch("run", "--rm", "--init", hutch.image, "sh", "-c",
              "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$; exit 7")
    assert p.returncode == 7, p.stderr
    cmdline, mypid = p.stdout.splitlines()
    assert cmdline.split()[:4] == ["/dev/init", "--", "sh", "-c"]
    assert mypid != "1"  # the command is tini's child
    out = run_ok(hutch, hutch.image, "sh", "-c", "echo $$")
    assert out == "1\n"  # and without --init it is pid 1


@needs_tini
def test_init_reaps_orphaned_zombies(hutch):
    # The outer shell leaves an orphan (reparented to pid 1) and then becomes `sleep`,
    # which never waits: without an init the orphan stays a zombie.
    script = 'sh -c "sleep 0.1 &"; exec sleep 30'
    states = {}
    for flag in ("--init", ""):
        cid = run_d(hutch, *([flag] if flag else []), hutch.image, "sh", "-c", script)
        time.sleep(0.8)
        out = hutch.out("exec", cid, "ps", "-o", "stat,comm")
        states[flag] = [line.split()[0] for line in out.splitlines()[1:]]
        hutch("rm", "-f", cid)
    assert "Z" not in states["--init"], states
    assert "Z" in states[""], states  # the check above can see zombies


# -- resources (cgroup v1, read on the host) ----------------------------------------------------

@needs_cgroup_v1
def test_resource_flags_set_the_containers_cgroup_files(hutch):
    cid = run_d(hutch, "--memory", "64m", "--memory-swap", "96m", "--cpus", "0.5",
                "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50",
                hutch.image, "sleep", "30")
    pid = container_pid(hutch, cid)
    assert host_cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):  # swap accounting
        assert host_cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    assert host_cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert host_cgroup_file(pid, "cpu", "cpu.cfs_period_us") == "100000"
    assert host_cgroup_file(pid, "cpu", "cpu.shares") == "512"
    assert host_cgroup_file(pid, "cpuset", "cpuset.cpus") == "0"
    assert host_cgroup_file(pid, "pids", "pids.max") == "50"
    # The container is in a cgroup of its own, named after it (docker: /docker/<id>).
    with open(f"/proc/{pid}/cgroup") as f:
        assert all(cid in line for line in f if line.split(":")[1])
    # What the container itself sees: its cgroup files, and the cpuset it runs on.
    out = hutch.out("exec", cid, "sh", "-c",
                    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                    "/sys/fs/cgroup/pids/pids.max; grep Cpus_allowed_list /proc/self/status")
    assert out.split() == [str(64 << 20), "50", "Cpus_allowed_list:", "0"]


@needs_cgroup_v1
def test_memory_swap_defaults_to_twice_memory_and_minus_one_is_unlimited(hutch):
    if not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        pytest.skip("no swap accounting on this kernel")
    read = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    limit, memsw = run_ok(hutch, "-m", "64m", hutch.image, "sh", "-c", read).split()
    assert (int(limit), int(memsw)) == (64 << 20, 128 << 20)
    limit, memsw = run_ok(hutch, "-m", "64m", "--memory-swap", "-1", hutch.image,
                          "sh", "-c", read).split()
    assert int(limit) == 64 << 20 and int(memsw) > 1 << 60


@needs_cgroup_v1
def test_no_resource_flags_means_no_limits(hutch):
    cid = run_d(hutch, hutch.image, "sleep", "30")
    pid = container_pid(hutch, cid)
    assert int(host_cgroup_file(pid, "memory", "memory.limit_in_bytes")) > 1 << 60
    assert host_cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "-1"
    assert host_cgroup_file(pid, "cpu", "cpu.shares") == "1024"
    assert host_cgroup_file(pid, "pids", "pids.max") == "max"


def test_memory_limit_is_enforced_by_the_oom_killer(hutch):
    cid = run_d(hutch, "--memory", "8m", "--memory-swap", "8m", hutch.image, "sh", "-c",
                "dd if=/dev/zero of=/dev/null bs=32M count=1; echo dd=$?")
    assert wait_exit(hutch, cid) == 0
    assert hutch.out("logs", cid).strip().endswith("dd=137")  # SIGKILLed
    assert hutch.inspect(cid)["State"]["OOMKilled"] is True


def test_pids_limit_stops_forks_past_it(hutch):
    # Ten background sleeps, numbered after each fork; ash gives up at a failed fork.
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & echo $i; done"
    p = hutch("run", "--rm", "--pids-limit", "5", hutch.image, "sh", "-c", script)
    assert p.stdout == "1\n2\n3\n4\n"  # sh and four sleeps are the five
    assert p.returncode == 2 and "can't fork" in p.stderr, p.stderr
    assert run_ok(hutch, hutch.image, "sh", "-c", script).split() == \
        [str(i) for i in range(1, 11)]


@pytest.mark.parametrize("args,message", [
    (["--memory", "1k"], "minimum memory limit"),
    (["--memory-swap", "64m"], "memory limit"),
    (["--memory", "64m", "--memory-swap", "32m"], "memoryswap limit"),
    (["--cpus", "64"], "range of CPUs"),
])
def test_bad_resource_values_are_125_errors(hutch, args, message):
    p = hutch("run", "--rm", *args, hutch.image, "true")
    assert p.returncode == 125
    assert message in one_line_error(p)


def test_ulimit_sets_soft_and_hard_limits(hutch):
    out = run_ok(hutch, "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=500",
                 hutch.image, "sh", "-c",
                 "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu; "
                 "grep 'open files' /proc/self/limits")
    lines = out.splitlines()
    assert lines[:4] == ["1024", "2048", "500", "500"]
    assert lines[4].split()[3:5] == ["1024", "2048"]
    # the last --ulimit of a kind wins
    out = run_ok(hutch, "--ulimit", "nofile=100", "--ulimit", "nofile=200:300", hutch.image,
                 "sh", "-c", "ulimit -Sn; ulimit -Hn")
    assert out == "200\n300\n"


def test_ulimit_minus_one_is_unlimited(hutch):
    # -1 is RLIM_INFINITY. Without CAP_SYS_RESOURCE (this sandbox) no limit can be raised
    # past the host's hard one, so only those that are unlimited on the host are asked for.
    import resource

    # (Not RLIMIT_CPU: a soft limit of 0 s sends SIGXCPU at the first tick.)
    wanted = [("core", "c", resource.RLIMIT_CORE), ("memlock", "l", resource.RLIMIT_MEMLOCK),
              ("fsize", "f", resource.RLIMIT_FSIZE)]
    usable = [(n, f) for n, f, r in wanted
              if resource.getrlimit(r)[1] == resource.RLIM_INFINITY]
    if not usable:
        pytest.skip("no rlimit is unlimited on this host")
    args = [a for n, _ in usable for a in ("--ulimit", f"{n}=0:-1")]
    script = "; ".join(f"ulimit -S{f}; ulimit -H{f}" for _, f in usable)
    out = run_ok(hutch, *args, hutch.image, "sh", "-c", script)
    assert out == "0\nunlimited\n" * len(usable)


@pytest.mark.parametrize("value,message", [("nofile=1024:512", "soft limit"),
                                           ("bogus=1", "invalid ulimit type")])
def test_bad_ulimit_is_a_125_error(hutch, value, message):
    p = hutch("run", "--rm", "--ulimit", value, hutch.image, "true")
    assert p.returncode == 125
    assert message in one_line_error(p)


# -- capabilities, privileges, seccomp, masked paths ------------------------------------------

def caps_of(hutch, *args: str) -> dict[str, str]:
    out = run_ok(hutch, *args, hutch.image, "cat", "/proc/self/status")
    return {k: status_field(out, k) for k in
            ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "Seccomp", "NoNewPrivs")}


def test_default_capabilities_seccomp_and_no_new_privs_are_dockers(hutch):
    st = caps_of(hutch)
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[k], 16) == DOCKER_DEFAULT_CAPS, (k, st)
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "0"


@pytest.mark.parametrize("args,expected", [
    (["--cap-add", "NET_ADMIN"], DOCKER_DEFAULT_CAPS | 1 << CAP["NET_ADMIN"]),
    (["--cap-add", "cap_net_admin"], DOCKER_DEFAULT_CAPS | 1 << CAP["NET_ADMIN"]),
    (["--cap-drop", "CHOWN"], DOCKER_DEFAULT_CAPS & ~(1 << CAP["CHOWN"])),
    (["--cap-drop", "ALL", "--cap-add", "kill"], 1 << CAP["KILL"]),
    (["--cap-drop", "all"], 0),
], ids=["add", "add-lowercase-prefixed", "drop", "drop-all-add-one", "drop-all"])
def test_cap_add_and_cap_drop_change_the_capability_sets(hutch, args, expected):
    st = caps_of(hutch, *args)
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[k], 16) == expected, (k, hex(expected), st)


def test_capabilities_decide_what_root_may_do(hutch):
    # NET_ADMIN: adding an address in the container's own network namespace
    p = hutch("run", "--rm", hutch.image, "ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
    assert p.returncode != 0 and "Operation not permitted" in p.stderr
    run_ok(hutch, "--cap-add", "NET_ADMIN", hutch.image, "ip", "addr", "add", "127.0.0.2/8",
           "dev", "lo")
    # CHOWN
    run_ok(hutch, hutch.image, "sh", "-c", "touch /f && chown 1000 /f")
    p = hutch("run", "--rm", "--cap-drop", "CHOWN", hutch.image, "sh", "-c",
              "touch /f && chown 1000 /f")
    assert p.returncode != 0 and "Operation not permitted" in p.stderr


def test_unknown_capability_is_a_125_error(hutch):
    p = hutch("run", "--rm", "--cap-add", "NOT_A_CAP", hutch.image, "true")
    assert p.returncode == 125
    assert "unknown capability" in one_line_error(p)


@pytest.mark.parametrize("args", [["--privileged"], ["--cap-add", "ALL"]],
                         ids=["privileged", "cap-add-all"])
def test_privileged_and_cap_add_all_get_every_capability_hutch_has(hutch, args):
    st = caps_of(hutch, *args)
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[k], 16) == HOST_BOUNDING, (k, hex(HOST_BOUNDING), st)


def test_privileged_has_no_seccomp_rw_sys_and_no_masked_paths(hutch):
    out = run_ok(hutch, "--privileged", hutch.image, "sh", "-c",
                 "grep Seccomp: /proc/self/status; "
                 "awk '$5 == \"/sys\" || $5 == \"/proc/sys\" || $5 == \"/sys/fs/cgroup\" "
                 "{print $5, $6}' /proc/self/mountinfo; "
                 "stat -c %F /proc/timer_list /proc/keys 2>/dev/null")
    assert "Seccomp:\t0" in out
    mounts = dict(line.split() for line in out.splitlines() if line.startswith("/"))
    assert mounts.get("/sys", "").split(",")[0] == "rw", out
    assert "/proc/sys" not in mounts, out  # not remounted read-only
    assert "character special file" not in out  # not masked with /dev/null


def test_seccomp_unconfined_runs_without_a_filter(hutch):
    st = caps_of(hutch, "--security-opt", "seccomp=unconfined")
    assert st["Seccomp"] == "0"
    assert int(st["CapEff"], 16) == DOCKER_DEFAULT_CAPS  # only seccomp changed


def test_default_seccomp_profile_is_dockers(hutch):
    # docker's profile allows unshare(2) only with CAP_SYS_ADMIN; the kernel alone would
    # let root make a user namespace.
    p = hutch("run", "--rm", hutch.image, "unshare", "-U", "true")
    assert p.returncode == 1 and "Operation not permitted" in p.stderr, p.stderr
    run_ok(hutch, "--security-opt", "seccomp=unconfined", hutch.image, "unshare", "-U", "true")


@pytest.mark.parametrize("errno_ret,message", [(13, "Permission denied"),
                                               (None, "Operation not permitted")])
def test_seccomp_profile_file_is_applied(hutch, tmp_path, errno_ret, message):
    rule = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
    p = hutch("run", "--rm", "--security-opt", f"seccomp={profile}", hutch.image, "sh", "-c",
              "grep Seccomp: /proc/self/status; touch /file && echo touched; "
              "mkdir /dir && echo made")
    assert p.returncode != 0
    assert p.stdout.split("\n")[:2] == ["Seccomp:\t2", "touched"]
    assert "made" not in p.stdout and message in p.stderr
    run_ok(hutch, hutch.image, "mkdir", "/dir")  # the default profile allows mkdir


def test_missing_seccomp_profile_is_a_125_error(hutch, tmp_path):
    p = hutch("run", "--rm", "--security-opt", f"seccomp={tmp_path}/nope.json",
              hutch.image, "true")
    assert p.returncode == 125
    assert "nope.json" in one_line_error(p)


@pytest.mark.parametrize("opt", ["no-new-privileges", "no-new-privileges:true",
                                 "no-new-privileges=true"])
def test_no_new_privileges_sets_the_flag(hutch, opt):
    st = caps_of(hutch, "--security-opt", opt)
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"


def test_masked_and_read_only_proc_paths(hutch):
    masked_files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list",
                                "/proc/sched_debug", "/proc/latency_stats") if os.path.exists(p)]
    masked_dirs = [p for p in ("/proc/acpi", "/proc/scsi", "/sys/firmware")
                   if os.path.isdir(p) and os.listdir(p)]
    if not masked_files:
        pytest.skip("none of the masked /proc files exists on this kernel")
    script = "".join(f"echo {p} $(stat -c '%F %t:%T' {p}) $(wc -c < {p}); "
                     for p in masked_files)
    script += "".join(f"echo {p} $(ls -A {p} | wc -l); " for p in masked_dirs)
    script += ("(echo x > /proc/sys/kernel/domainname) 2>&1; "
               "awk '$5 == \"/proc/sys\" {print $6}' /proc/self/mountinfo")
    out = run_ok(hutch, hutch.image, "sh", "-c", script)
    lines = out.splitlines()
    for path, line in zip(masked_files, lines, strict=False):
        assert line == f"{path} character special file 1:3 0", out  # /dev/null over it
    for path, line in zip(masked_dirs, lines[len(masked_files):], strict=False):
        assert line == f"{path} 0", out  # an empty read-only tmpfs over it
    assert "Read-only file system" in out
    assert lines[-1].split(",")[0] == "ro"


# -- stop signal and timeout -------------------------------------------------------------------

TRAPS = ('trap "echo got USR1; exit 0" USR1; trap "echo got USR2; exit 0" USR2; '
         'trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done')


def test_stop_signal_flag_is_what_stop_sends(hutch):
    cid = run_d(hutch, "--stop-signal", "SIGUSR2", hutch.image, "sh", "-c", TRAPS)
    wait_log(hutch, cid, "ready")
    hutch.out("stop", cid, timeout=30)
    assert hutch.out("logs", cid) == "ready\ngot USR2\n"
    assert hutch.inspect(cid)["State"]["ExitCode"] == 0
    assert hutch.inspect(cid)["Config"]["StopSignal"] == "SIGUSR2"


def test_image_stop_signal_is_used_and_the_flag_overrides_it(hutch):
    cid = run_d(hutch, hutch.config_image, TRAPS)
    wait_log(hutch, cid, "ready")
    hutch.out("stop", cid, timeout=30)
    assert hutch.out("logs", cid) == "ready\ngot USR1\n"  # the image's StopSignal
    cid = run_d(hutch, "--stop-signal", "TERM", hutch.config_image, TRAPS)
    wait_log(hutch, cid, "ready")
    hutch.out("stop", cid, timeout=30)
    assert hutch.out("logs", cid) == "ready\ngot TERM\n"


def test_bad_stop_signal_is_a_125_error(hutch):
    p = hutch("run", "--rm", "--stop-signal", "SIGBOGUS", hutch.image, "true")
    assert p.returncode == 125
    assert "invalid signal" in one_line_error(p)


def test_stop_timeout_is_how_long_stop_waits_before_kill(hutch):
    cid = run_d(hutch, "--stop-timeout", "1", hutch.image, "sh", "-c",
                'trap "echo ignoring TERM" TERM; echo ready; while :; do sleep 0.1; done')
    wait_log(hutch, cid, "ready")
    t0 = time.monotonic()
    hutch.out("stop", cid, timeout=30)
    took = time.monotonic() - t0
    assert 0.9 <= took < 5, took  # docker's default would be 10 s
    assert "ignoring TERM" in hutch.out("logs", cid)
    assert hutch.inspect(cid)["State"]["ExitCode"] == 137


def test_inspect_shows_the_stop_timeout(hutch):
    cid = run_d(hutch, "--stop-timeout", "3", hutch.image, "sleep", "30")
    assert hutch.inspect(cid)["Config"].get("StopTimeout") == 3


# -- labels, name ------------------------------------------------------------------------------

def test_labels_show_in_inspect_and_select_in_ps(hutch, tmp_path):
    f = tmp_path / "labels"
    f.write_text("# comment\nfrom.file=yes\n")
    cid = run_d(hutch, "-l", "a=1", "--label", "b=two", "--label", "flag",
                "--label-file", str(f), hutch.config_image, "sleep 30")
    other = run_d(hutch, "-l", "a=2", hutch.image, "sleep", "30")
    labels = hutch.inspect(cid)["Config"]["Labels"]
    assert labels == {"a": "1", "b": "two", "flag": "", "from.file": "yes",
                      "org.example.from": "image"}

    def ids(*filters: str) -> set[str]:
        return set(hutch.out("ps", "-q", "--no-trunc", *filters).split())

    assert ids("--filter", "label=a=1") == {cid}
    assert ids("--filter", "label=a") == {cid, other}
    assert ids("--filter", "label=flag") == {cid}
    assert ids("--filter", "label=a=3") == set()


def test_ps_label_filter_sees_the_image_labels(hutch):
    cid = run_d(hutch, hutch.config_image, "sleep 30")
    run_d(hutch, hutch.image, "sleep", "30")
    assert hutch.inspect(cid)["Config"]["Labels"] == {"org.example.from": "image"}
    found = hutch.out("ps", "-q", "--no-trunc", "--filter", "label=org.example.from=image")
    assert found.split() == [cid]


def test_name_names_the_container_and_must_be_unique(hutch):
    name = f"flags-{uuid.uuid4().hex[:8]}"
    cid = run_d(hutch, "--name", name, hutch.image, "sleep", "30")
    assert hutch.inspect(name)["Id"] == cid
    assert hutch.inspect(cid)["Name"] == "/" + name
    assert hutch.out("exec", name, "echo", "by name") == "by name\n"
    assert name in hutch.out("ps")
    p = hutch("run", "--rm", "--name", name, hutch.image, "true")
    assert p.returncode == 125
    assert "already in use" in one_line_error(p)
    p = hutch("run", "--rm", "--name", "bad name!", hutch.image, "true")
    assert p.returncode == 125
    assert "Invalid container name" in one_line_error(p)


# -- --pull ------------------------------------------------------------------------------------

@pytest.fixture
def pushed(hutch, e2e_store):
    """A push(layout_tag) that (re)pushes one of the session's images to a fresh repo of
    the session's registry; the repo's local tag is removed afterwards."""
    import registry_fixtures as rf

    base, host = e2e_store
    repo = f"{host}/e2e/pull-{uuid.uuid4().hex[:8]}:v1"
    reg = types.SimpleNamespace(host=host)

    def push(layout_tag: str) -> str:
        rf.skopeo_copy(base / "layout", layout_tag, reg, repo.split("/", 1)[1])
        return repo

    yield push
    hutch("rmi", repo)


def test_pull_never_with_a_missing_image_is_a_125_error(hutch, pushed):
    ref = pushed("latest")  # in the registry, not here
    p = hutch("run", "--rm", "--pull", "never", ref, "true")
    assert p.returncode == 125
    assert "No such image" in one_line_error(p)
    assert ref not in hutch.out("images")


def test_pull_missing_pulls_once_and_always_pulls_again(hutch, pushed):
    ref = pushed("latest")
    # missing (the default): pulled, as it is not here
    assert run_ok(hutch, ref, "sh", "-c", "echo from latest") == "from latest\n"
    assert run_ok(hutch, "--pull", "never", ref, "echo", "here") == "here\n"
    pushed("config")  # the tag now points to the config image in the registry
    # missing: the local image stays (its Cmd is sh, which ends at stdin's EOF)
    assert run_ok(hutch, "--pull", "missing", ref) == ""
    # always: the new one is pulled and runs its own Cmd
    assert run_ok(hutch, "--pull", "always", ref) == "hello from image-env in /work as app\n"
    assert run_ok(hutch, "--pull", "never", ref) == "hello from image-env in /work as app\n"


def test_unknown_image_in_the_registry_is_a_125_error(hutch):
    p = hutch("run", "--rm", f"{hutch.registry}/e2e/hutch-no-such-image:x", "true")
    assert p.returncode == 125
    assert "hutch-no-such-image" in one_line_error(p)


# -- stdin, tty, detach, rm --------------------------------------------------------------------

def test_interactive_pipes_stdin_to_the_container(hutch):
    assert run_ok(hutch, "-i", hutch.image, "cat", input="hi\n") == "hi\n"
    data = "".join(f"line {i}\n" for i in range(20000))  # ~200 KB
    assert run_ok(hutch, "-i", hutch.image, "wc", "-lc", input=data).split() == \
        ["20000", str(len(data))]
    # without -i the container's stdin is empty (docker does not attach it)
    assert run_ok(hutch, hutch.image, "cat", input="hi\n") == ""


def test_tty_without_interactive_runs_the_command_on_a_pty(hutch):
    out, rc = run_on_pty(hutch.argv("run", "--rm", "-t", hutch.image, "sh", "-c",
                                    "tty; echo TERM=$TERM; [ -t 1 ] && echo stdout-tty; "
                                    "echo err >&2; sleep 1; stty size; exit 5"),
                         rows=40, cols=100)
    assert rc == 5, out
    text = out.decode()
    lines = text.replace("\r\n", "\n").splitlines()
    assert lines[:4] == ["/dev/pts/0", "TERM=xterm", "stdout-tty", "err"], text
    assert "\r\n" in text  # through the container's pty (onlcr)
    assert lines[-1] == "40 100"  # our terminal's size reached it


def test_without_tty_the_container_has_no_terminal(hutch):
    out, rc = run_on_pty(hutch.argv("run", "--rm", hutch.image, "sh", "-c",
                                    "tty; echo TERM=$TERM"))
    assert rc == 0, out
    lines = out.decode().replace("\r\n", "\n").splitlines()
    assert lines == ["not a tty", "TERM="], out


def test_detach_prints_the_id_and_the_container_keeps_running(hutch):
    t0 = time.monotonic()
    p = hutch("run", "-d", hutch.image, "sh", "-c", "echo started; exec sleep 30")
    assert time.monotonic() - t0 < 10
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", p.stdout), p.stdout
    cid = p.stdout.strip()
    info = hutch.inspect(cid)
    assert info["State"]["Status"] == "running"
    pid = info["State"]["Pid"]
    os.kill(pid, 0)  # alive after the CLI is gone
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x0030\x00"
    assert wait_log(hutch, cid, "started") == "started\n"
    assert cid in hutch.out("ps", "-q", "--no-trunc").split()


def test_rm_removes_the_container_after_it_exits(hutch):
    name = f"flags-rm-{uuid.uuid4().hex[:8]}"
    p = hutch("run", "--rm", "--name", name, hutch.image, "sh", "-c", "echo bye; exit 3")
    assert p.returncode == 3 and p.stdout == "bye\n"
    assert hutch("inspect", name).returncode == 1
    cid = run_d(hutch, "--rm", hutch.image, "sh", "-c", "exit 0")
    wait_for(lambda: cid not in hutch.out("ps", "-aq", "--no-trunc"), 15,
             "the detached --rm container to go")
    # Without --rm the exited container stays.
    cid = run_d(hutch, hutch.image, "true")
    assert wait_exit(hutch, cid) == 0
    assert hutch.inspect(cid)["State"]["Status"] == "exited"


def test_rm_removes_the_anonymous_volume_too(hutch):
    before = set(hutch.out("volume", "ls", "-q").split())
    run_ok(hutch, hutch.config_image, "true")
    assert set(hutch.out("volume", "ls", "-q").split()) == before


# -- image config ------------------------------------------------------------------------------

def test_image_config_env_cmd_entrypoint_workdir_and_user_apply(hutch):
    out = run_ok(hutch, hutch.config_image)
    assert out == "hello from image-env in /work as app\n"
    # A command replaces Cmd, keeps the Entrypoint (sh -c) and every other default.
    out = run_ok(hutch, hutch.config_image,
                 "echo $FROM_IMAGE $OVERRIDE; pwd; id; echo $HOME; echo $0")
    assert out == ("image-env image\n/work\nuid=1000(app) gid=1000(app) groups=1001(extra)\n"
                   "/home/app\n/bin/sh\n")
    info = hutch.inspect(run_d(hutch, hutch.config_image, "sleep 30"))
    assert info["Path"] == "/bin/sh" and info["Args"] == ["-c", "sleep 30"]
    cfg = info["Config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["sleep 30"]
    assert cfg["WorkingDir"] == "/work" and cfg["User"] == "app"
    assert cfg["StopSignal"] == "SIGUSR1"
    assert {"FROM_IMAGE=image-env", "OVERRIDE=image"} <= set(cfg["Env"])


def test_image_volume_is_an_anonymous_volume_seeded_from_the_image(hutch):
    before = set(hutch.out("volume", "ls", "-q").split())
    cid = run_d(hutch, "-u", "root", hutch.config_image,
                "cat /data/seed.txt; echo new > /data/new.txt; "
                "awk '$5 == \"/data\" {print \"mounted\"}' /proc/self/mountinfo; sleep 30")
    wait_log(hutch, cid, "mounted")
    assert hutch.out("logs", cid) == "seeded by the image\nmounted\n"
    mounts = [m for m in hutch.inspect(cid)["Mounts"] if m["Destination"] == "/data"]
    assert len(mounts) == 1 and mounts[0]["Type"] == "volume", mounts
    vol = mounts[0]["Name"]
    assert re.fullmatch(r"[0-9a-f]{64}", vol)
    assert vol in set(hutch.out("volume", "ls", "-q").split()) - before
    source = Path(mounts[0]["Source"])
    assert (source / "seed.txt").read_text() == "seeded by the image\n"
    assert (source / "new.txt").read_text() == "new\n"  # writes go to the volume
    hutch.out("rm", "-f", "-v", cid)
    assert vol not in hutch.out("volume", "ls", "-q").split()


# -- exit codes --------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_run_exits_with_the_containers_code(hutch, code):
    p = hutch("run", "--rm", hutch.image, "sh", "-c", f"exit {code}")
    assert p.returncode == code, p.stderr
    assert p.stderr == ""


def test_killed_container_exits_128_plus_the_signal(hutch):
    name = f"flags-kill-{uuid.uuid4().hex[:8]}"
    proc = hutch.popen("run", "--rm", "--name", name, hutch.image, "sh", "-c",
                       "echo up; exec sleep 30", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline() == b"up\n"
        hutch.out("kill", name)  # SIGKILL (pid 1 ignores signals it has no handler for)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 128 + signal.SIGKILL, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("cmd,code,message", [
    (["/etc/passwd"], 126, "permission denied"),
    (["/tmp"], 126, "permission denied"),
    (["hutch-no-such-command"], 127, "not found|no such file"),
    (["/no/such/path"], 127, "not found|no such file"),
], ids=["not-executable", "a-directory", "not-in-path", "no-such-path"])
def test_command_that_cannot_run_is_126_or_127(hutch, cmd, code, message):
    before = set(hutch.ids())
    p = hutch("run", "--rm", hutch.image, *cmd)
    assert p.returncode == code, p.stderr
    assert re.search(message, one_line_error(p).lower())
    assert set(hutch.ids()) == before


@pytest.mark.parametrize("args,message", [
    (["--restart", "bogus"], "restart policy"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--pull", "sometimes"], "--pull"),
    (["--network", "no-such-net"], "network no-such-net not found"),
], ids=["bad-restart", "unknown-flag", "bad-pull", "unknown-network"])
def test_bad_flags_are_125_with_one_error_line(hutch, args, message):
    before = set(hutch.ids())
    p = hutch("run", "--rm", *args, hutch.image, "true")
    assert p.returncode == 125
    assert message in one_line_error(p)
    assert set(hutch.ids()) == before
