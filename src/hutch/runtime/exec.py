"""`exec`: run another process in a running container (what `ctr task exec` asks for).

  P: hutch-runtime exec       I: joiner                       E: the new process
  fork I --------------------> non-dumpable; open /proc/<init>/ns/*
  "go" ----------------------> join the cgroup, setns (user first,
                               mount last), fork E ----------------------------> (in the
                 <------------ "pid" {pid: E}; exit 0                          container's
                                                                                pid ns)
                                                                 console, user, caps,
                                                                 no_new_privs, seccomp,
                                                                 cwd, lookup
                 <--------------------------------------------- "done" then execve
  pid file; wait for E (unless --detach): the channel's EOF tells that E executed.

I and E are never dumpable before execve: a container process must not open
/proc/<pid>/exe of the host interpreter that runs them (CVE-2019-5736).
"""

from __future__ import annotations

import os

from hutch.errors import FailedPrecondition, InvalidArgument
from hutch.linux import libc
from hutch.runtime.channel import Channel
from hutch.runtime.init import (
    NS_FLAGS,
    _environ,
    _exec,
    _fail,
    _finalize_user,
    _lookup,
    _passwd_home,
    fork_and_report,
    setup_console,
)

# Joined in this order: user first (it grants the rights for the others), mount last.
_NS_FILES = (("user", "user"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"),
             ("pid", "pid"), ("cgroup", "cgroup"), ("time", "time"), ("mount", "mnt"))


def namespaces_to_join(init_pid: int) -> list[tuple[str, str]]:
    """(type, /proc path) of each namespace of init that differs from ours."""
    out = []
    for typ, name in _NS_FILES:
        path = f"/proc/{init_pid}/ns/{name}"
        try:
            if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                out.append((typ, path))
        except FileNotFoundError:
            continue
    return out


def process_from_args(base: dict, args: list[str], *, cwd: str | None, env: list[str],
                      user: str | None, caps: list[str], tty: bool,
                      no_new_privs: bool) -> dict:
    """runc's rule: the container's own process is the base; flags override it."""
    proc = {k: v for k, v in base.items() if k not in ("args", "terminal", "consoleSize")}
    if not args:
        raise InvalidArgument("exec: no command given (use --process or ARGS)")
    proc["args"] = list(args)
    proc["terminal"] = tty
    if cwd:
        proc["cwd"] = cwd
    if env:
        proc["env"] = list(proc.get("env") or []) + list(env)
    if user:
        uid, _, gid = user.partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidArgument(f"exec: --user must be UID[:GID], not {user!r}") from None
    if caps:
        c = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for k in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            c[k] = list(dict.fromkeys((c.get(k) or []) + caps))
        proc["capabilities"] = c
    if no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def exec_process(*, init_pid: int, process: dict, seccomp: dict | None, cgroup_manager,
                 console_fd: int | None, pid_file: str | None, detach: bool,
                 preserve_fds: int = 0, want_pid: bool = False,
                 seccomp_cache: str | None = None) -> int:
    """Start `process` in the container of `init_pid`. Returns its exit code, or when
    detached 0 (its pid if `want_pid`)."""
    if not process.get("args"):
        raise InvalidArgument("exec: process.args must not be empty")
    if process.get("terminal") and console_fd is None:
        raise InvalidArgument("exec: terminal needs --console-socket")
    joins = namespaces_to_join(init_pid)
    flt = None
    if seccomp:
        from hutch.linux import seccomp as _seccomp

        flt = _seccomp.prepare(seccomp, cache_dir=seccomp_cache)
    if process.get("rlimits"):
        import resource  # noqa: F401  - imported before we leave the host's filesystem
    if process.get("terminal"):
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401
    if not detach:
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    parent_ch, child_ch = Channel.pair()
    child = os.fork()
    if child == 0:
        parent_ch.close()
        _joiner(child_ch, joins, process, flt, console_fd, preserve_fds, cgroup_manager)
    child_ch.close()
    if flt is not None:
        flt.close()
    epid = 0
    try:
        parent_ch.send("go")
        msg = parent_ch.recv()
        if msg.get("t") == "error":
            raise FailedPrecondition(msg.get("msg", "exec failed"), errno=msg.get("errno") or 0)
        epid = int(msg["pid"])
        os.waitpid(child, 0)
        child = 0
        parent_ch.expect("done")
        # EOF on the channel: E's end closed at execve (close-on-exec).
        try:
            extra = parent_ch.recv()
            if extra.get("t") == "error":
                raise FailedPrecondition(extra.get("msg", "exec failed"))
        except FailedPrecondition as e:
            if "exited before" not in str(e):
                raise
        if pid_file:
            from hutch.runtime.container import _write_pid_file

            _write_pid_file(pid_file, epid)
    except BaseException:
        for pid in (child, epid):
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        if child:
            os.waitpid(child, 0)
        raise
    finally:
        parent_ch.close()
    if detach:
        return epid if want_pid else 0
    from hutch.runtime.container import _forward_signals, _wait_exit

    _forward_signals(epid)
    return _wait_exit(epid)


def _joiner(ch: Channel, joins: list[tuple[str, str]], process: dict, flt,
            console_fd: int | None, preserve_fds: int, cgroup_manager) -> None:
    try:
        in_userns = any(t == "user" for t, _ in joins)
        if not in_userns:
            libc.prctl(4, 0)  # PR_SET_DUMPABLE: see the module docstring
        fds = [(typ, os.open(path, os.O_RDONLY | os.O_CLOEXEC), path) for typ, path in joins]
        ch.expect("go")
        v2_fd = -1
        if cgroup_manager is not None:
            # I joins the v1 hierarchies, E inherits them and is born in the cgroup2
            # directory: no RCU grace period (see CgroupManager.join_self and init.py).
            # Joining a user or cgroup namespace first would fail clone3's permission
            # check: then I joins cgroup2 itself and pays the wait.
            sync = any(t in ("user", "cgroup") for t, _, _ in fds)
            left = cgroup_manager.join_self(include_v2=sync)
            if left:
                v2_fd = os.open(left[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for typ, fd, path in fds:
            libc.setns(fd, NS_FLAGS[typ], path)
            os.close(fd)
        fork_and_report(ch, v2_fd,
                        lambda: _exec_child(ch, process, flt, console_fd, preserve_fds))
    except BaseException as e:  # noqa: BLE001
        _fail(ch, e)


def _exec_child(ch: Channel, process: dict, flt, console_fd: int | None,
                preserve_fds: int) -> None:
    try:
        if process.get("terminal"):
            os.setsid()
            setup_console(console_fd, process, bind_console=False)
        _apply_rlimits(process.get("rlimits"))
        nnp = bool(process.get("noNewPrivileges"))
        if nnp:
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        if flt is not None and not nnp:
            flt.load()
        _finalize_user(process)
        env = _environ(process.get("env") or [])
        if "HOME" not in env:
            env["HOME"] = _passwd_home(os.getuid())
        path = _lookup(process["args"][0], env)
        if flt is not None and nnp:
            flt.load()
        ch.send("done")
        _exec(path, process["args"], env, preserve_fds)
    except BaseException as e:  # noqa: BLE001
        _fail(ch, e)


def _apply_rlimits(rlimits: list[dict] | None) -> None:
    if not rlimits:
        return
    import resource

    from hutch.runtime.container import _RLIMITS, rlim

    for r in rlimits:
        resource.setrlimit(_RLIMITS[r["type"]], (rlim(r["soft"]), rlim(r["hard"])))
