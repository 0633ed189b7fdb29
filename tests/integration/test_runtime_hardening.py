"""Hardening: no host fd leaks into the container (CVE-2024-21626 class), the host's
interpreter cannot be executed from inside (CVE-2019-5736 class), and the container's
init outlives `create`, re-parented to the caller's subreaper."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration


def _hutch_only(runtime) -> None:
    # runc 1.1.5 answers CVE-2019-5736 by re-executing a sealed memfd copy of itself; it
    # does not refuse, so there is nothing to compare against.
    if runtime.name != "hutch-runtime":
        pytest.skip("hutch-runtime's own guard")


def test_only_stdio_reaches_the_container_process(observe):
    # ls's own listing: stdio plus the directory it reads (3), nothing inherited.
    obs = observe("ls", "-1", "/proc/self/fd")
    assert obs.ref.ok, obs.ref
    assert obs.ref.stdout.split() == ["0", "1", "2", "3"]
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_an_fd_open_in_the_caller_does_not_leak(runtime, new_bundle, tmp_path):
    bundle = new_bundle("ls", "-1", "/proc/self/fd")
    bundle.write()
    cid = runtime.new_id()
    runtime.ids.append(cid)
    secret = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # a host directory fd
    try:
        p = subprocess.run([runtime.binary, "--root", str(runtime.root), "run", "--bundle",
                            str(bundle.path), cid], capture_output=True, text=True,
                           pass_fds=(secret,), timeout=30)
    finally:
        os.close(secret)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "1", "2", "3"]


def test_the_runtimes_own_interpreter_cannot_be_executed_inside(runtime, new_bundle):
    _hutch_only(runtime)
    bundle = new_bundle("/proc/self/exe", "-c", "print('escaped')")
    res = runtime.run(bundle)
    assert res.returncode != 0
    assert "refusing to execute the runtime's own binary" in res.stderr
    assert "escaped" not in res.stdout


def test_a_shebang_to_proc_self_exe_is_refused(runtime, new_bundle):
    _hutch_only(runtime)
    bundle = new_bundle("/evil")
    script = bundle.rootfs / "evil"
    script.write_text("#!/proc/self/exe\nprint('escaped')\n")
    script.chmod(0o755)
    res = runtime.run(bundle)
    assert res.returncode != 0
    assert "refusing to execute the runtime's own binary" in res.stderr


def test_init_survives_create_and_is_reparented_to_the_callers_subreaper(runtime,
                                                                          new_bundle):
    bundle = new_bundle("sleep", "100")
    bundle.write()
    cid = runtime.new_id()
    runtime.ids.append(cid)
    # A stand-in for containerd's shim: a subreaper that runs `create` and then reports
    # the init's parent.
    shim = textwrap.dedent(f"""
        import ctypes, json, os, subprocess, sys
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        subprocess.run([{runtime.binary!r}, "--root", {str(runtime.root)!r}, "create",
                        "--bundle", {str(bundle.path)!r}, {cid!r}], check=True,
                       stdout=subprocess.DEVNULL)
        state = json.loads(subprocess.run([{runtime.binary!r}, "--root",
                           {str(runtime.root)!r}, "state", {cid!r}], check=True,
                           capture_output=True).stdout)
        ppid = [line.split()[1] for line in open(f"/proc/{{state['pid']}}/status")
                if line.startswith("PPid:")][0]
        print(int(ppid) == os.getpid(), state["status"])
        subprocess.run([{runtime.binary!r}, "--root", {str(runtime.root)!r}, "delete",
                        "--force", {cid!r}], check=True)
    """)
    p = subprocess.run([sys.executable, "-c", shim], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "created"]
