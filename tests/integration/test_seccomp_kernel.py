"""hutch.linux.seccomp.load against the real kernel.

Each test forks; only the child loads a filter (a filter can never be removed), tries a
syscall, reports through a pipe and leaves with os._exit. The child's work after load is
kept minimal: everything it needs to report is prepared before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import time
from collections.abc import Callable

import pytest

from hutch.linux import libc, seccomp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.personality.argtypes = [ctypes.c_ulong]
_libc.personality.restype = ctypes.c_int


def seccomp_mode(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("Seccomp:"):
            return int(line.split()[1])
    raise AssertionError("no Seccomp: line in /proc/self/status")


def in_child(body: Callable[[int], None], timeout: float = 10.0) -> tuple[bytes, int]:
    """Fork; the child sets no_new_privs and runs body(write_fd). Returns what the child
    wrote and its wait status. The child never returns into pytest."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
            body(w)
        except BaseException as e:  # report, never unwind into pytest
            try:
                os.write(w, f"child error: {e!r}".encode())
            finally:
                code = 99
        finally:
            os._exit(code)
    os.close(w)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)  # our own child, by pid
                raise AssertionError(f"child timed out; wrote {out!r}")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            out += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return out, status


def test_errno_rule_fails_mkdir_in_the_child_only(tmp_path):
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    target = str(tmp_path / "made-by-child")

    def body(w: int) -> None:
        seccomp.load(spec)
        try:
            os.mkdir(target)
            os.write(w, b"ok")
        except OSError as e:
            os.write(w, str(e.errno).encode())

    out, status = in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out == str(errno.EPERM).encode()
    assert not os.path.exists(target)
    os.mkdir(target)  # the parent has no filter
    assert os.path.isdir(target)


def test_proc_status_shows_filter_mode_in_the_child():
    spec = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}

    def body(w: int) -> None:
        seccomp.load(spec)
        with open("/proc/self/status") as f:
            os.write(w, str(seccomp_mode(f.read())).encode())

    out, status = in_child(body)
    assert out == b"2", out  # SECCOMP_MODE_FILTER
    with open("/proc/self/status") as f:
        assert seccomp_mode(f.read()) == 0


def test_argument_comparison_selects_the_call():
    # Block personality(0xffffffff) (the "query" form) but not personality(PER_LINUX).
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]}]}

    def body(w: int) -> None:
        seccomp.load(spec)
        query = _libc.personality(0xFFFFFFFF)
        query_errno = ctypes.get_errno()
        set_linux = _libc.personality(0)
        os.write(w, f"{query} {query_errno} {set_linux}".encode())

    out, status = in_child(body)
    query, query_errno, set_linux = (int(x) for x in out.split())
    assert (query, query_errno) == (-1, errno.EACCES)
    assert set_linux >= 0


def test_conditions_on_one_argument_are_alternatives():
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 0x0008, "op": "SCMP_CMP_EQ"}]}]}

    def body(w: int) -> None:
        seccomp.load(spec)
        results = []
        for persona in (0xFFFFFFFF, 0x0008, 0):
            rc = _libc.personality(persona)
            results.append(str(ctypes.get_errno() if rc == -1 else 0))
        os.write(w, " ".join(results).encode())

    out, _ = in_child(body)
    assert out.split() == [str(errno.EPERM).encode(), str(errno.EPERM).encode(), b"0"]


def test_default_errno_with_an_allow_list():
    # Only what this child needs after load: report (write), memory for the exception
    # object, and exit. stat of "/" is not on the list: it gets defaultErrnoRet.
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": [
                "write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap",
                "madvise", "rt_sigprocmask", "rt_sigreturn", "futex", "close",
                "no_such_syscall_on_any_kernel"], "action": "SCMP_ACT_ALLOW"}]}

    def body(w: int) -> None:
        seccomp.load(spec)
        try:
            os.stat("/")
            os.write(w, b"stat allowed")
        except OSError as e:
            os.write(w, b"%d" % e.errno)

    out, status = in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out == b"%d" % errno.EACCES


def test_kill_process_action_kills_with_sigsys():
    spec = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]}

    def body(w: int) -> None:
        seccomp.load(spec)
        os.write(w, b"loaded")
        os.uname()
        os.write(w, b" survived")

    out, status = in_child(body)
    assert out == b"loaded"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_flags_log_and_spec_allow_load():
    spec = {"defaultAction": "SCMP_ACT_ALLOW",
            "flags": [seccomp.FLAG_LOG, seccomp.FLAG_SPEC_ALLOW, seccomp.FLAG_TSYNC,
                      seccomp.FLAG_WAIT_KILLABLE_RECV],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]}

    def body(w: int) -> None:
        seccomp.load(spec)
        os.write(w, b"loaded")

    out, status = in_child(body)
    assert out == b"loaded"
    assert os.waitstatus_to_exitcode(status) == 0


def test_load_needs_no_new_privs_or_cap_sys_admin_and_leaves_nnp_alone():
    # Without no_new_privs and without CAP_SYS_ADMIN the kernel refuses the filter. This
    # shows libseccomp did not set no_new_privs on its own (SCMP_FLTATR_CTL_NNP = 0) and
    # that the kernel's errno comes through (SCMP_FLTATR_API_SYSRAWRC).
    spec = {"defaultAction": "SCMP_ACT_ALLOW"}
    cap_sys_admin = 21
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: does not set no_new_privs
        code = 1
        try:
            os.close(r)
            eff, perm, inh = libc.capget()
            keep = ~(1 << cap_sys_admin)
            libc.capset(eff & keep, perm & keep, inh & keep)
            try:
                seccomp.load(spec)
                code = 0
            except OSError as e:
                code = 10 if e.errno == errno.EACCES and "seccomp_load" in str(e) else 2
            os.write(w, b"%d" % libc.prctl(libc.PR_GET_NO_NEW_PRIVS))
        finally:
            os._exit(code)
    os.close(w)
    try:
        nnp = os.read(r, 16)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 10
    assert nnp == b"0"


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs /bin/busybox")
def test_filter_survives_execve(tmp_path):
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}]}
    target = str(tmp_path / "made-by-busybox")

    def body(w: int) -> None:
        os.dup2(w, 2)  # busybox's error message comes back through the pipe
        seccomp.load(spec)
        os.execv("/bin/busybox", ["busybox", "mkdir", target])

    out, status = in_child(body)
    assert os.waitstatus_to_exitcode(status) == 1
    assert os.strerror(errno.EROFS).encode() in out
    assert not os.path.exists(target)


def test_a_cached_program_filters_like_the_freshly_built_one(tmp_path):
    """prepare(cache_dir=...) compiles once, stores the BPF program with libseccomp's load
    flags, and the next prepare loads that program with seccomp(2): same verdicts."""
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM,
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]}]}
    cache = tmp_path / "cache"
    first = seccomp.prepare(spec, cache_dir=str(cache))
    first.close()
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".bpf"
    cached = seccomp.prepare(spec, cache_dir=str(cache))
    assert type(cached).__name__ == "_CachedFilter"
    other = seccomp.prepare({**spec, "defaultAction": "SCMP_ACT_LOG"}, cache_dir=str(cache))
    other.close()
    assert len(list(cache.iterdir())) == 2  # another profile, another key
    target = str(tmp_path / "made-by-child")

    def body(w: int) -> None:
        cached.load()
        results = []
        try:
            os.mkdir(target)
            results.append("made")
        except OSError as e:
            results.append(str(e.errno))
        q = _libc.personality(0xFFFFFFFF)
        results.append(str(ctypes.get_errno() if q == -1 else "allowed"))
        results.append("allowed" if _libc.personality(0) != -1 else "denied")
        with open("/proc/self/status") as f:
            results.append(str(seccomp_mode(f.read())))
        os.write(w, " ".join(results).encode())

    out, status = in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out.decode().split() == [str(errno.EACCES), str(errno.EPERM), "allowed", "2"]
    assert not os.path.exists(target)


def test_a_corrupt_cache_entry_is_rebuilt(tmp_path):
    spec = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    cache = tmp_path / "cache"
    seccomp.prepare(spec, cache_dir=str(cache)).close()
    (entry,) = cache.iterdir()
    entry.write_bytes(b"\x00" * 5)  # not 4 + 8n bytes
    flt = seccomp.prepare(spec, cache_dir=str(cache))
    assert type(flt).__name__ == "_Filter"
    flt.close()
    assert (len(entry.read_bytes()) - 4) % 8 == 0
