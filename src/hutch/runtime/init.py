"""The child side of `create`: the intermediate process and the container's init.

Process tree and sync protocol (the parent side is in hutch.runtime.container):

  P: hutch-runtime create        I: intermediate               C: container init
  cgroup mkdir; fork I --------->
  "go" -------------------------> oom_score_adj; join the cgroup
                                  itself (see below); setns(paths)
                                  unshare(NEWUSER)?
                   <------------- "userns" (only with a new user namespace)
  write uid_map/gid_map
  "ok" -------------------------> setresuid(0), unshare(rest),
                                  fork C -----------------------> pid 1
                   <------------- "pid" {pid: C}; exit 0
  waitpid(I)                                                     mounts, /dev
                   <------------------------------------------- "hooks"
  prestart, createRuntime hooks
  "ok" ---------------------------------------------------------> createContainer hooks,
                                                                 pivot_root, console,
                                                                 hostname, sysctl,
                                                                 readonly/masked paths
                   <------------------------------------------- "ready"
  cgroup limits, rlimits
  "ok" ---------------------------------------------------------> no_new_privs, seccomp,
                                                                 user, caps, cwd, lookup
                   <------------------------------------------- "done"
  write state.json, pid file;                                    open exec.fifo O_WRONLY:
  exit                                                           blocks until `start`
                                                                 reads it, then
                                                                 startContainer hooks, exec

The cgroup join costs no RCU grace period (~15 ms, see CgroupManager.join_self): I moves
itself into the v1 hierarchies ("0" to `tasks`) and C inherits them; C is born in its
cgroup2 directory (clone3 with CLONE_INTO_CGROUP). Only with a new user or cgroup
namespace does I write "0" to cgroup.procs and pay the wait: clone3 would check the
user namespace's credentials, and a cgroup namespace's root is the unsharer's cgroup.

I exists because a new PID namespace only applies to children of the unsharer, and
because when I exits, C is re-parented to the caller's subreaper (containerd's shim)
rather than staying a child of the short-lived `create`.
Any error is sent as {"t": "error", "msg": ...} and the child exits 1.
"""

from __future__ import annotations

# _signal, not signal: the signal module builds enums at import (~4 ms).
import _signal as signal
import os
import sys

from hutch.linux import caps, libc
from hutch.runtime.channel import Channel

NS_FLAGS = {
    "pid": libc.CLONE_NEWPID, "network": libc.CLONE_NEWNET, "mount": libc.CLONE_NEWNS,
    "ipc": libc.CLONE_NEWIPC, "uts": libc.CLONE_NEWUTS, "user": libc.CLONE_NEWUSER,
    "cgroup": libc.CLONE_NEWCGROUP, "time": libc.CLONE_NEWTIME,
}
# setns order: user first (it grants the rights for the rest), mount last (paths of the
# other namespaces are opened before, but resolving nothing after it keeps it simple).
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class InitContext:
    """Everything the children need, computed by the parent before fork."""

    def __init__(self, *, spec: dict, bundle: str, rootfs: str, fifo_fd: int,
                 channel: Channel, no_pivot: bool, console_fd: int | None,
                 preserve_fds: int, cgroup_paths: dict[str, str], hook_state: dict,
                 cgroup=None, cgroup_v2_sync: bool = True,
                 seccomp_cache: str | None = None) -> None:
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.fifo_fd = fifo_fd
        self.channel = channel
        self.no_pivot = no_pivot
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.cgroup_paths = cgroup_paths
        self.cgroup = cgroup  # the CgroupManager I joins before forking C
        self.cgroup_v2_sync = cgroup_v2_sync
        self.hook_state = hook_state
        self.linux = spec.get("linux") or {}
        self.process = spec.get("process") or {}
        self.namespaces = self.linux.get("namespaces") or []
        # After pivot_root the host's filesystem is gone: import now whatever the
        # children will need later.
        from hutch.runtime import rootfs  # noqa: F401

        if os.environ.get("HUTCH_DEBUG"):
            import traceback  # noqa: F401

        self.seccomp_filter = None
        if self.linux.get("seccomp"):
            from hutch.linux import seccomp

            self.seccomp_filter = seccomp.prepare(self.linux["seccomp"],
                                                  cache_dir=seccomp_cache)
        if spec.get("hooks"):
            from hutch.runtime import hooks  # noqa: F401
        if self.process.get("terminal"):
            import fcntl  # noqa: F401
            import socket  # noqa: F401
            import struct  # noqa: F401

    def new_ns(self, typ: str) -> bool:
        return any(n.get("type") == typ and not n.get("path") for n in self.namespaces)

    def has_ns(self, typ: str) -> bool:
        return any(n.get("type") == typ for n in self.namespaces)


def _fail(ch: Channel, exc: BaseException) -> None:
    if os.environ.get("HUTCH_DEBUG"):
        import traceback  # imported before fork when HUTCH_DEBUG is set

        traceback.print_exc()
    msg = str(exc) or exc.__class__.__name__
    if isinstance(exc, OSError) and exc.strerror:
        msg = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    try:
        # errno lets an engine tell "not found" (127) from "cannot invoke" (126).
        ch.send("error", msg=msg, errno=getattr(exc, "errno", None) or 0)
    except OSError:
        pass
    os._exit(1)


def intermediate(ctx: InitContext) -> None:
    """Runs in I. Never returns."""
    ch = ctx.channel
    try:
        ch.expect("go")
        adj = ctx.process.get("oomScoreAdj")
        if adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(adj))
        v2_fd = -1
        if ctx.cgroup is not None:
            left = ctx.cgroup.join_self(include_v2=ctx.cgroup_v2_sync)
            if left:
                v2_fd = os.open(left[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        _join_namespaces(ctx)
        if ctx.new_ns("user"):
            libc.unshare(libc.CLONE_NEWUSER)
            ch.send("userns")
            ch.expect("ok")
        if ctx.has_ns("user"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for n in ctx.namespaces:
            if not n.get("path") and n.get("type") != "user":
                flags |= NS_FLAGS[n["type"]]
        if flags:
            libc.unshare(flags)
        fork_and_report(ch, v2_fd, lambda: container_init(ctx))
    except BaseException as e:  # noqa: BLE001 - everything goes to the parent
        _fail(ch, e)


def fork_and_report(ch: Channel, v2_fd: int, child) -> None:
    """The last act of an intermediate: fork (into the cgroup2 directory `v2_fd` when
    >= 0), send the child's pid to P, exit. The child shares our channel, so it waits
    on a pipe until P has the "pid" message before it may speak; then runs `child()`,
    which never returns."""
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = libc.fork_into_cgroup(v2_fd) if v2_fd >= 0 else os.fork()
    if pid == 0:
        os.close(hold_w)
        if not os.read(hold_r, 1):
            os._exit(1)  # the intermediate died before P learnt our pid
        os.close(hold_r)
        child()
        os._exit(1)  # not reached: child() execs or exits
    ch.send("pid", pid=pid)
    os.write(hold_w, b"1")
    os._exit(0)


def _join_namespaces(ctx: InitContext) -> None:
    fds = []
    for typ in _JOIN_ORDER:
        for n in ctx.namespaces:
            if n.get("type") == typ and n.get("path"):
                fds.append((os.open(n["path"], os.O_RDONLY | os.O_CLOEXEC), n))
    for fd, n in fds:
        try:
            libc.setns(fd, NS_FLAGS[n["type"]], n["path"])
        finally:
            os.close(fd)


def container_init(ctx: InitContext) -> None:
    """Runs in C, the future pid 1. Never returns."""
    ch = ctx.channel
    try:
        _setup(ctx)
    except BaseException as e:  # noqa: BLE001
        _fail(ch, e)


def _setup(ctx: InitContext) -> None:
    from hutch.runtime.rootfs import RootfsBuilder

    ch = ctx.channel
    spec = ctx.spec
    os.setsid()
    # Non-dumpable until exec: no process in the container may open /proc/<pid>/exe
    # (the host's interpreter) or our memory while we still run host code (CVE-2019-5736).
    # In a user namespace that would also lock us out of our own /proc/self files.
    if not ctx.has_ns("user"):
        libc.prctl(4, 0)  # PR_SET_DUMPABLE
    fifo_fd = ctx.fifo_fd
    builder = RootfsBuilder(spec, ctx.rootfs, ctx.bundle, in_userns=ctx.has_ns("user"),
                            cgroup_paths=ctx.cgroup_paths, cgroupns=ctx.has_ns("cgroup"))
    mount_ns = ctx.has_ns("mount")
    if mount_ns:
        builder.prepare()
    ch.send("hooks")
    ctx.hook_state["pid"] = ch.expect("ok").get("pid", 0)
    hooks = spec.get("hooks") or {}
    if hooks.get("createContainer"):
        from hutch.runtime.hooks import run_hooks

        run_hooks("createContainer", hooks["createContainer"],
                  {**ctx.hook_state, "pid": _host_pid_hint(ctx)})
    if mount_ns:
        builder.pivot(ctx.no_pivot)
    else:
        os.chroot(ctx.rootfs)
        os.chdir("/")
    if ctx.process.get("terminal"):
        _setup_console(ctx)
    if mount_ns:
        builder.finalize()
    if spec.get("hostname"):
        libc.sethostname(spec["hostname"])
    if spec.get("domainname"):
        libc.setdomainname(spec["domainname"])
    for key, value in (ctx.linux.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    if mount_ns:
        builder.readonly_paths()
        builder.masked_paths()
    ch.send("ready")
    ch.expect("ok")

    proc = ctx.process
    nnp = bool(proc.get("noNewPrivileges"))
    if nnp:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    cwd = proc.get("cwd") or "/"
    _check_cwd(cwd)
    seccomp = ctx.seccomp_filter
    if seccomp and not nnp:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it now, before
        # the capabilities are dropped (runc's order).
        seccomp.load()
    _finalize_user(proc)
    env = _environ(proc.get("env") or [])
    if "HOME" not in env:
        # runc sets HOME from the container's /etc/passwd, "/" when the user has none.
        env["HOME"] = _passwd_home(os.getuid())
    path = _lookup(proc["args"][0], env)
    ch.send("done")
    ch.close()

    # The created barrier: blocks until `start` opens the fifo for reading.
    # The write end stays open (close-on-exec): `start` reads until EOF, so it returns
    # only once the user process is executed, and poststart hooks run after it as the
    # spec requires.
    wfd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(wfd, b"0")
    os.close(fifo_fd)

    if seccomp and nnp:
        seccomp.load()
    if hooks.get("startContainer"):
        from hutch.runtime.hooks import run_hooks

        run_hooks("startContainer", hooks["startContainer"],
                  {**ctx.hook_state, "status": "created", "pid": _host_pid_hint(ctx)})
    _exec(path, proc["args"], env, ctx.preserve_fds)


def _host_pid_hint(ctx: InitContext) -> int:
    return ctx.hook_state.get("pid") or os.getpid()


def _finalize_user(proc: dict) -> None:
    c = proc.get("capabilities") or {}
    user = proc.get("user") or {}
    uid = int(user.get("uid", 0))
    gid = int(user.get("gid", 0))
    caps.drop_bounding(caps.mask(c.get("bounding")))
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    os.setgroups([int(g) for g in user.get("additionalGids") or ()])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    libc.capset(caps.mask(c.get("effective")), caps.mask(c.get("permitted")),
                caps.mask(c.get("inheritable")))
    caps.set_ambient(caps.mask(c.get("ambient")))
    os.umask(int(user["umask"]) if user.get("umask") is not None else 0o022)
    # Again as the container's user: the permission check must be the user's.
    _chdir(proc.get("cwd") or "/")


def _chdir(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as e:
        raise OSError(e.errno, f"chdir to cwd ({cwd!r}) set in config.json failed: "
                      f"{os.strerror(e.errno)}") from None


def _check_cwd(cwd: str) -> None:
    """CVE-2024-21626: a cwd reached through a leaked host fd (/proc/self/fd/N) shows up
    as "(unreachable)". Checked before seccomp is loaded: a profile may forbid getcwd."""
    _chdir(cwd)
    if not os.getcwd().startswith("/"):
        raise OSError(1, f"current working directory is outside of the container: {cwd}")


def _passwd_home(uid: int) -> str:
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid) and fields[5]:
                    return fields[5]
    except OSError:
        pass
    return "/"


def _environ(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in env:
        k, sep, v = kv.partition("=")
        if sep:
            out[k] = v
    return out


def _lookup(arg0: str, env: dict[str, str]) -> str:
    """Resolve the executable like Go's exec.LookPath, as runc does before the barrier, so
    a missing binary fails `create`, not the container's first breath."""
    if "/" in arg0:
        candidates = [arg0]
    else:
        candidates = [os.path.join(d or ".", arg0)
                      for d in env.get("PATH", "").split(":")]
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if not (st.st_mode & 0o170000 == 0o100000) or not st.st_mode & 0o111:
            if "/" in arg0:
                raise PermissionError(13, f"exec: {arg0!r}: permission denied")
            continue
        _refuse_host_interpreter(c)
        return c
    raise FileNotFoundError(2, f"exec: {arg0!r}: executable file not found in $PATH")


def _refuse_host_interpreter(path: str) -> None:
    """CVE-2019-5736: a container must never get the kernel to execute the host's
    interpreter (e.g. via #!/proc/self/exe), whose file it could then reopen for writing.
    Follow the #! chain as the kernel would (at most 5 levels) and refuse our own exe."""
    own = os.stat("/proc/self/exe")
    for _ in range(5):
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            raise PermissionError(1, f"exec: {path!r}: refusing to execute the runtime's "
                                     "own binary inside the container")
        try:
            with open(path, "rb") as f:
                head = f.read(256)
        except OSError:
            return
        if not head.startswith(b"#!"):
            return
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            return
        path = os.fsdecode(line.split()[0])


def _exec(path: str, args: list[str], env: dict[str, str], preserve_fds: int) -> None:
    # Python ignores SIGPIPE and SIGXFSZ; ignored dispositions survive execve.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    for fd in (0, 1, 2):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    # No host fd may reach the container (CVE-2024-21626): everything past stdio and
    # the preserved fds closes on exec.
    libc.close_range(3 + preserve_fds, 0xFFFFFFFF, libc.CLOSE_RANGE_CLOEXEC)
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    sys.stdout.flush()
    try:
        os.execve(path, args, env)
    except OSError as e:
        os.write(2, f"hutch-runtime: exec {path}: {e.strerror}\n".encode())
        os._exit(127 if e.errno == 2 else 126)


# --- console ------------------------------------------------------------------------------
_TIOCSPTLCK = 0x40045431
_TIOCGPTN = 0x80045430
_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414


def _setup_console(ctx: InitContext) -> None:
    setup_console(ctx.console_fd, ctx.process, bind_console=True)


def setup_console(console_fd: int | None, process: dict, *, bind_console: bool) -> None:
    """Open a pty in the container's devpts, send the master to the console socket as runc
    does (SCM_RIGHTS, message "/dev/ptmx"), make the slave our controlling terminal and
    stdio, and (for init) bind it over /dev/console."""
    import fcntl
    import socket
    import struct

    if console_fd is None:
        raise OSError(22, "terminal is true but no console socket was given")
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
    slave_path = f"/dev/pts/{n}"
    size = process.get("consoleSize")
    if size:
        fcntl.ioctl(master, _TIOCSWINSZ,
                    struct.pack("HHHH", int(size.get("height", 0)),
                                int(size.get("width", 0)), 0, 0))
    sock = socket.socket(fileno=console_fd)
    try:
        socket.send_fds(sock, [b"/dev/ptmx"], [master])
    finally:
        sock.close()
        os.close(master)
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    if bind_console:
        console = "/dev/console"
        if not os.path.exists(console):
            os.close(os.open(console, os.O_CREAT | os.O_CLOEXEC, 0o600))
        libc.mount(slave_path, console, "bind", libc.MS_BIND)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, _TIOCSCTTY, 0)
    os.close(slave)
