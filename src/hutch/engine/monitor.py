"""The monitor: one small process per running container, in place of docker's daemon.

`spawn()` forks it from the command that starts the container (no new interpreter: a
fork costs ~1 ms where a fresh Python would cost ~30). It double-forks and calls setsid,
so it survives that command and its terminal; it is the child subreaper, so the
container's init (the runtime's intermediate exits) becomes its child and it can reap it.

It holds:
  - an exclusive flock on monitor.lock for its whole life (Engine.monitor_alive),
  - the container's stdio: pipes (or the pty master with -t), copied to the json-file
    log and to attached clients (hutch.engine.attach), stdin from the first client,
  - a pidfd on the init: when readable, waitpid gives the exit status; output is drained
    to EOF (the pid namespace is gone, every writer with it) before the exit is recorded.
Then it records the exit (and OOM), deletes the runtime's container (the cgroup), and
either restarts it (restart policy, docker's back-off: 100 ms doubling, reset after 10 s
of running) or unmounts the rootfs, applies --rm, and exits.

Lean phase: the forked monitor carries every module the starting command imported (~16 MB
PSS). A container still running after LEAN_AFTER seconds gets its monitor re-executed as
`python -IS` running `resume()`, which imports only this module, the attach protocol and
the log writer (~5.5 MB PSS); the pid, the flock, the pipes, the pty, the attach sockets
and the children stay (execve keeps them, and the subreaper flag). Store, runtime and
mount code is imported when the container exits. Short-lived containers (`run --rm
true`) never pay for the re-exec.

Start protocol with the spawning command: one JSON line on a pipe,
{"ok": true} once the container runs, or {"error": "...", "code": 125|126|127}.
"""

from __future__ import annotations

import os
import select
import time

from hutch.engine import attach as proto

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0  # seconds of running that reset the back-off (docker)
DRAIN_TIMEOUT = 2.0
LEAN_AFTER = 2.0


class _GoLean(Exception):
    pass


def spawn(engine, rec, *, attach=None, console_size=None):
    """Fork the monitor for `rec` (bundle prepared). `attach`: the monitor's end of a
    socketpair. Returns the record once the container runs; raises StartError."""
    engine.close_connections()
    return EarlyMonitor(engine.settings, rec.id, attach=attach, console_size=console_size,
                        warm=False).start(engine, rec)


class EarlyMonitor:
    """A monitor forked before its container exists (`run` makes one as soon as it has
    parsed its flags, with the id the container will have). While the command resolves
    the image, records the container and mounts its rootfs, the monitor imports and
    prepares what it needs to run one (the runtime, cgroups, seccomp, the store) on the
    other core; start() lets it go, abort() (or the command's death) ends it unused.

    Fork-safety: the caller has no SQLite connection open (run forks it before it opens
    any; spawn() closes them), and the monitor opens its own after the fork.

    `warm=False` (spawn(): the bundle is ready, the caller may live long) skips the
    warm-up and double-forks, so the caller has no child to reap. With the warm-up (run)
    one fork is enough, and ~1 ms sooner: the monitor stays the command's child in a
    session of its own until the short-lived command exits and it is re-parented; a
    monitor that ends first is reaped by abort() or with the command's exit."""

    def __init__(self, settings, container_id: str, *, attach=None, console_size=None,
                 warm: bool = True) -> None:
        self.id = container_id
        go_r, self._go_w = os.pipe2(os.O_CLOEXEC)
        self._report_r, report_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            code = 0
            try:
                os.close(self._report_r)
                os.close(self._go_w)
                # Not the command's stdio (whoever reads its output must see EOF when
                # the command ends, not when an unused monitor does), and none of its
                # other fds: closed now, before the warm-up opens files of its own.
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
                keep = {report_w, go_r}
                if attach is not None:
                    keep.add(attach.fileno())
                _close_fds_except(keep)
                os.setsid()
                if not warm and os.fork() != 0:
                    os._exit(0)
                if warm:
                    try:
                        _warm_up(settings)
                    except Exception:  # noqa: BLE001 - only a head start: the start
                        pass           # itself does it again and reports what fails
                go = os.read(go_r, 1)
                os.close(go_r)
                if go != b"g":  # aborted, or the command died
                    os._exit(0)
                _main(settings, container_id, report_w, attach, console_size)
            except BaseException as e:  # noqa: BLE001
                code = 1
                _report(report_w, {"error": f"monitor: {e.__class__.__name__}: {e}",
                                   "code": 125})
            finally:
                os._exit(code)
        os.close(report_w)
        os.close(go_r)
        if attach is not None:
            attach.close()
        # Our child: the intermediate (exits at once: waited for by start() or abort()),
        # or the monitor itself (only reaped by abort() if it has ended).
        self._child, self._waitable = pid, not warm

    def start(self, engine, rec):
        """Let the monitor start `rec` (its bundle prepared); the running record, or
        StartError."""
        from hutch.engine.containers import StartError
        from hutch.util import fastjson

        assert rec.id == self.id, "the monitor was made for another container"
        try:
            os.write(self._go_w, b"g")
        except BrokenPipeError:  # it died: its report (or its silence) says why
            pass
        self._reap()
        chunks = []
        while True:
            data = os.read(self._report_r, 65536)
            if not data:
                break
            chunks.append(data)
        os.close(self._report_r)
        self._report_r = -1
        raw = b"".join(chunks).strip()
        msg = fastjson.loads(raw.splitlines()[0]) if raw else {
            "error": "the container's monitor died before it started the container",
            "code": 125}
        if msg.get("ok"):
            return engine.store.get(rec.id)
        raise StartError(msg.get("error") or "start failed",
                         exit_code=int(msg.get("code", 125)))

    def abort(self) -> None:
        """End the monitor if it was never started (idempotent)."""
        self._reap(ended_monitor=True)
        if self._report_r >= 0:
            os.close(self._report_r)
            self._report_r = -1

    def _reap(self, *, ended_monitor: bool = False) -> None:
        """Close the go pipe (the monitor goes, or ends if it never got the go), then reap
        our child: the intermediate, which exits at once; or, with `ended_monitor`, the
        monitor itself if it has ended."""
        if self._go_w >= 0:
            os.close(self._go_w)
            self._go_w = -1
        if not self._child or not (self._waitable or ended_monitor):
            return
        try:
            if os.waitpid(self._child, 0 if self._waitable else os.WNOHANG)[0]:
                self._child = 0
        except ChildProcessError:
            self._child = 0


_opened: dict = {}  # what _warm_up() opened for the Monitor of this process


def _warm_up(settings) -> None:
    """What the monitor of a starting container imports and opens first, done while the
    command that forked it is still preparing the container."""
    # Starting the container (the runtime and what it reads, the log writer, the store)
    # and ending it with --rm (unmount; the engine; the image and snapshot stores).
    from hutch.content import store as _content  # noqa: F401
    from hutch.engine import cgparent, containers, logs, store  # noqa: F401
    from hutch.image import metadata, service  # noqa: F401
    from hutch.linux import seccomp  # noqa: F401
    from hutch.mount import apply  # noqa: F401
    from hutch.oci import spec  # noqa: F401
    from hutch.runtime import cgroups, channel, container, init, rootfs  # noqa: F401
    from hutch.snapshot import factory, overlay  # noqa: F401

    cgparent.hierarchies()
    seccomp.preload()
    _opened["store"] = store.ContainerStore(os.path.join(settings.root, "containers.db"))
    images = _opened["images"] = service.ImageService(settings)
    images.snapshotter  # noqa: B018 - opens the snapshot store


def _main(settings, container_id: str, report_fd: int, attach, console_size=None) -> None:
    import fcntl

    from hutch.engine.paths import ContainerPaths
    from hutch.linux import libc

    # stdio is /dev/null and no fd of the command is left (EarlyMonitor did both).
    os.chdir("/")
    import gc

    # The launcher turns the collector off for short-lived commands; we live long. Every
    # object the CLI made is still in the youngest generation: freeze them first, or the
    # first collection walks the whole inherited heap (~5 ms) and, touching each object's
    # header, copies every page the fork shared.
    gc.freeze()
    gc.enable()
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    paths = ContainerPaths(settings, container_id)
    os.makedirs(paths.run_dir, mode=0o700, exist_ok=True)
    # Errors of the monitor itself go to a file next to the bundle (never to the user's
    # terminal, which may be long gone).
    log = os.open(os.path.join(paths.run_dir, "monitor.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.dup2(log, 2)
    os.close(log)
    lock = os.open(paths.monitor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(paths.monitor_pid + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(paths.monitor_pid + ".tmp", paths.monitor_pid)
    mon = Monitor(settings, container_id, report_fd, attach, lock_fd=lock)
    mon.console_size = console_size
    try:
        mon.run()
    except BaseException as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        _report(report_fd, {"error": f"monitor: {e}", "code": 125})
    _unlink(paths.monitor_pid)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _close_fds_except(keep: set[int]) -> None:
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        fds = []
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _report(fd: int, msg: dict) -> None:
    if fd < 0:
        return
    from hutch.util import fastjson

    try:
        os.write(fd, fastjson.dumps(msg).encode() + b"\n")
    except OSError:
        pass


class Client:
    def __init__(self, sock, *, stdin: bool) -> None:
        self.sock = sock
        self.stdin = stdin
        self.reader = proto.FrameReader()

    def send(self, kind: int, payload: bytes = b"") -> bool:
        try:
            self.sock.sendall(proto.frame(kind, payload))
            return True
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Monitor:
    """One container's supervisor. The store, the runtime and the engine are opened on
    first use (the lean phase must not import them while the container runs)."""

    def __init__(self, settings, container_id: str, report_fd: int, attach, *,
                 lock_fd: int = -1) -> None:
        from hutch.engine.paths import ContainerPaths

        self.settings = settings
        self.id = container_id
        self.paths = ContainerPaths(settings, container_id)
        self.report_fd = report_fd
        self.lock_fd = lock_fd
        self.clients: list[Client] = []
        if attach is not None:
            attach.setblocking(True)
            self.clients.append(Client(attach, stdin=True))
        self.listener = None
        self.stdin_w = -1
        self.master = -1
        self.outputs: dict[int, str] = {}
        self.logger = None
        self.lean = False
        self._store = self._runtime = None
        self.console_size: tuple[int, int] | None = None

    # -- what is opened late ----------------------------------------------------------------
    @property
    def store(self):
        if self._store is None:
            self._store = _opened.pop("store", None)
        if self._store is None:
            from hutch.engine.store import ContainerStore

            self._store = ContainerStore(os.path.join(self.settings.root, "containers.db"))
        return self._store

    @property
    def runtime(self):
        if self._runtime is None:
            from hutch.runtime.container import Runtime

            self._runtime = Runtime(self.settings.runtime_root)
        return self._runtime

    def _open_logger(self, path: str, log_cfg: dict) -> None:
        from hutch.engine.logs import JsonFileLogger

        self.logger = JsonFileLogger(path, max_size=int(log_cfg.get("max-size", 10 << 20)),
                                     max_files=int(log_cfg.get("max-file", 3)))

    # -- life ---------------------------------------------------------------------------
    def run(self) -> None:
        """First start (in the process forked from the CLI), then supervise."""
        from hutch.errors import FailedPrecondition, HutchError, NotFound

        rec = self.store.get(self.id)
        self.policy = rec.config.get("restart") or {"Name": "no", "MaximumRetryCount": 0}
        self.auto_remove = bool(rec.config.get("auto_remove"))
        self.log_cfg = rec.config.get("log") or {}
        self.log_path = rec.log_path or self.paths.log_path
        self.tty = bool((rec.config.get("run") or {}).get("tty"))
        self.interactive = bool((rec.config.get("run") or {}).get("interactive"))
        self._open_logger(self.log_path, self.log_cfg)
        self._listen()
        restarts = rec.restart_count if rec.state == "exited" else 0
        try:
            init_pid = self._create_and_start()
        except BaseException as e:  # noqa: BLE001
            from hutch.engine.containers import start_error_code

            code = start_error_code(e)
            self._kill_container()  # created but not started: _finish counts on it gone
            try:
                self.store.update(self.id, state="exited", exit_code=code, error=str(e),
                                  finished_at=time.time(), pid=0)
            except HutchError:
                pass
            _report(self.report_fd, {"error": str(e), "code": code})
            self.report_fd = -1
            return self._finish(code, auto_remove=self.auto_remove)
        try:
            self._record_running(init_pid, restarts)
        except (NotFound, FailedPrecondition):  # removed while starting
            self._kill_container()
            self._wait_init(init_pid, None)
            return self._finish(None)
        _report(self.report_fd, {"ok": True})
        os.close(self.report_fd)
        self.report_fd = -1
        self.supervise(init_pid, time.monotonic(), restarts, BACKOFF_START, LEAN_AFTER)

    def _record_running(self, init_pid: int, restarts: int) -> None:
        self.store.update(
            self.id, state="running", pid=init_pid, started_at=time.time(),
            monitor_pid=os.getpid(), exit_code=0, error="", oom_killed=False,
            restart_count=restarts)

    def supervise(self, init_pid: int, started: float, restarts: int, backoff: float,
                  lean_after: float | None) -> None:
        from hutch.errors import FailedPrecondition, HutchError, NotFound

        oom = False
        while True:
            try:
                status = self._wait_init(init_pid, lean_after)
            except _GoLean:
                return self._exec_lean(init_pid, started, restarts, backoff)
            lean_after = None
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code
            oom = False
            try:
                oom = bool(self.runtime.state(self.id).get("oomKilled"))
            except (HutchError, OSError, ValueError):
                pass
            self._kill_container()
            stopping = os.path.exists(self.paths.stopping)
            name = self.policy.get("Name", "no")
            limit = int(self.policy.get("MaximumRetryCount") or 0)
            again = not stopping and (
                name in ("always", "unless-stopped")
                or (name == "on-failure" and code != 0 and (limit == 0 or restarts < limit)))
            try:
                self.store.update(self.id, state="restarting" if again else "exited",
                                  exit_code=code, oom_killed=oom, finished_at=time.time(),
                                  pid=0)
            except (NotFound, FailedPrecondition):  # rm -f took over
                return self._finish(None)
            if not again:
                return self._finish(code, oom=oom, auto_remove=self.auto_remove and not
                                    os.path.exists(self.paths.restarting))
            # Attached clients (docker run) end at the first exit; the restarts go on.
            self._send_exit(code, oom)
            if time.monotonic() - started >= RESET_AFTER:
                backoff = BACKOFF_START
            if not self._sleep(backoff):
                try:
                    self.store.update(self.id, state="exited")
                except HutchError:
                    pass
                return self._finish(None)
            backoff = min(backoff * 2, BACKOFF_MAX)
            restarts += 1
            try:
                rec = self.store.get(self.id)
            except NotFound:
                return self._finish(None)
            if rec.state != "restarting":
                return self._finish(None)
            try:
                init_pid = self._create_and_start()
                self._record_running(init_pid, restarts)
            except (NotFound, FailedPrecondition) as e:
                if isinstance(e, NotFound) or "removing" in str(e):
                    self._kill_container()
                    return self._finish(None)
                return self._restart_failed(e)
            except BaseException as e:  # noqa: BLE001
                return self._restart_failed(e)
            started = time.monotonic()

    def _restart_failed(self, e: BaseException) -> None:
        from hutch.engine.containers import start_error_code
        from hutch.errors import HutchError

        code = start_error_code(e)
        try:
            self.store.update(self.id, state="exited", exit_code=code, error=str(e),
                              finished_at=time.time(), pid=0)
        except HutchError:
            pass
        self._finish(None)

    def _finish(self, code, *, oom: bool = False, auto_remove: bool = False) -> None:
        from hutch.errors import HutchError
        from hutch.mount import unmount_all

        if self.logger is not None:
            self.logger.close()
        try:
            unmount_all(self.paths.rootfs, detach=True)
        except (HutchError, OSError):
            pass
        self._teardown_network()
        from hutch.engine import cgparent

        try:  # the last container gone: no empty `hutch` cgroups left on the host
            cgparent.remove_if_unused()
        except OSError:
            pass
        if self.listener is not None:
            _unlink(self.paths.attach_sock)
            self.listener.close()
        if auto_remove:
            from hutch.engine.containers import Engine

            try:  # with our connection and runtime; what release() would undo is undone
                with Engine(self.settings, runtime=self.runtime, store=self.store,
                            images=_opened.pop("images", None)) as engine:
                    engine.remove(self.id, force=True, volumes=True, released=True)
            except (HutchError, OSError):
                pass
        if code is not None:
            self._send_exit(code, oom)
        for c in self.clients:
            c.close()
        self.clients = []

    def _teardown_network(self) -> None:
        """The container ended for good: its namespace, veths, leases, port rules."""
        if not os.path.lexists(self.paths.netns):
            return
        from hutch.engine.networking import Networking
        from hutch.errors import HutchError

        net = Networking(self.settings)
        try:
            net.teardown(self.id)
        except (HutchError, OSError):
            pass
        finally:
            net.close()

    def _send_exit(self, code: int, oom: bool) -> None:
        from hutch.util import fastjson

        payload = fastjson.dumps({"code": code, "oom": oom}).encode()
        for c in self.clients:
            c.send(proto.EXIT, payload)
            c.close()
        self.clients = []

    def _sleep(self, seconds: float) -> bool:
        """Back-off between restarts; False if a stop or rm came meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if os.path.exists(self.paths.stopping):
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return not os.path.exists(self.paths.stopping)

    def _kill_container(self) -> None:
        from hutch.errors import HutchError

        try:
            self.runtime.delete(self.id, force=True)
        except (HutchError, OSError):
            pass

    # -- the lean phase -------------------------------------------------------------------
    def _exec_lean(self, init_pid: int, started: float, restarts: int,
                   backoff: float) -> None:
        import sys

        from hutch.util import fastjson

        self.logger.flush()
        keep = [self.lock_fd, self.listener.fileno(), self.stdin_w, self.master,
                *self.outputs, *(c.sock.fileno() for c in self.clients)]
        for fd in keep:
            if fd >= 0:
                os.set_inheritable(fd, True)
        state = {
            "root": self.settings.root, "run": self.settings.run, "id": self.id,
            "lock": self.lock_fd, "listener": self.listener.fileno(),
            "clients": [[c.sock.fileno(), c.stdin] for c in self.clients],
            "outputs": {str(fd): name for fd, name in self.outputs.items()},
            "stdin_w": self.stdin_w, "master": self.master, "init": init_pid,
            "running_for": time.monotonic() - started, "restarts": restarts,
            "backoff": backoff, "policy": self.policy, "auto_remove": self.auto_remove,
            "log": self.log_cfg, "log_path": self.log_path,
        }
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = (f"import sys; sys.path.insert(0, {src!r}); "
                "from hutch.engine.monitor import resume; resume(sys.argv[1])")
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-IS", "-c", boot,
                                  fastjson.dumps(state)])

    # -- stdio and the runtime ------------------------------------------------------------
    def _listen(self) -> None:
        import _socket  # not socket: its enums and selectors cost ~2 ms to import

        _unlink(self.paths.attach_sock)
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        proto.bind_unix(s, self.paths.attach_sock)
        os.chmod(self.paths.attach_sock, 0o600)
        s.listen(16)
        s.setblocking(False)
        self.listener = s

    def _create_and_start(self) -> int:
        from hutch.engine import cgparent

        # Under the shared lock: `hutch`, the parent of the container's cgroups, is not
        # removed by a container ending elsewhere while the runtime makes them.
        with cgparent.creating():
            return self._create_and_start_locked()

    def _create_and_start_locked(self) -> int:
        rt = self.runtime
        bundle = self.paths.bundle
        self.outputs = {}
        if self.tty:
            from hutch.runtime import tty as _tty

            ours, fd = _tty.console_pair()
            try:
                st = rt.create(self.id, bundle, console_fd=fd)
                self.master = _tty.receive_master(ours)
            finally:
                ours.close()
            if self.console_size:
                self._resize(f"{self.console_size[0]} {self.console_size[1]}".encode())
            os.set_blocking(self.master, False)
            self.outputs[self.master] = "stdout"
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if self.interactive:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
            else:
                in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
            saved = [os.dup(fd) for fd in (0, 1, 2)]
            try:
                os.dup2(in_r, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                st = rt.create(self.id, bundle)
            finally:
                for fd, old in zip((0, 1, 2), saved, strict=True):
                    os.dup2(old, fd)
                    os.close(old)
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            self.stdin_w = in_w
            for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
                os.set_blocking(fd, False)
                self.outputs[fd] = name
        rt.start(self.id)
        return st.pid

    def _wait_init(self, pid: int, lean_after: float | None) -> int:
        """Pump output and clients until the init exits and its output is drained;
        return its wait status. Raises _GoLean after `lean_after` seconds of running
        (nothing is lost: the fds survive the exec)."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        poller = select.poll()
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        for fd in self.outputs:
            poller.register(fd, select.POLLIN)
        if self.listener is not None:
            poller.register(self.listener.fileno(), select.POLLIN)
        by_fd = {}
        for c in self.clients:
            poller.register(c.sock.fileno(), select.POLLIN)
            by_fd[c.sock.fileno()] = c
        status = None
        drain_deadline = 0.0
        lean_at = None if lean_after is None else time.monotonic() + lean_after
        going_lean = False
        try:
            while True:
                if status is not None and (not self.outputs
                                           or time.monotonic() > drain_deadline):
                    break
                if status is None and lean_at is not None and time.monotonic() >= lean_at:
                    going_lean = True
                    raise _GoLean()
                timeout = 1000 if status is None else 100
                if lean_at is not None and status is None:
                    timeout = max(1, min(timeout, int((lean_at - time.monotonic()) * 1000)))
                try:
                    events = poller.poll(timeout)
                except InterruptedError:
                    continue
                for fd, _ev in events:
                    if fd == pidfd:
                        poller.unregister(pidfd)
                        status = self._reap(pid)
                        drain_deadline = time.monotonic() + DRAIN_TIMEOUT
                    elif fd in self.outputs:
                        self._pump(fd, poller)
                    elif self.listener is not None and fd == self.listener.fileno():
                        self._accept(poller, by_fd)
                    elif fd in by_fd:
                        self._from_client(by_fd[fd], poller, by_fd, pid)
                if pidfd < 0 and status is None:
                    status = self._reap(pid, block=False)
                    if status is not None:
                        drain_deadline = time.monotonic() + DRAIN_TIMEOUT
                self._reap_others(pid)
        finally:
            if pidfd >= 0:
                os.close(pidfd)
            if not going_lean:
                for fd in list(self.outputs):
                    os.close(fd)
                self.outputs = {}
                self.master = -1
                if self.stdin_w >= 0:
                    try:
                        os.close(self.stdin_w)
                    except OSError:
                        pass
                    self.stdin_w = -1
                self.logger.flush()
        return status

    def _reap(self, pid: int, block: bool = True) -> int | None:
        try:
            got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return 255 << 8
        if got == 0:
            return None
        return status

    def _reap_others(self, init_pid: int) -> None:
        """Reap children other than the init (peek with WNOWAIT first: reaping the init
        here would lose its exit status to the pidfd path)."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == init_pid:
                return
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                pass

    def _pump(self, fd: int, poller) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's last slave closed
            data = b""
        if not data:
            poller.unregister(fd)
            os.close(fd)
            del self.outputs[fd]
            if fd == self.master:
                self.master = -1
            return
        stream = self.outputs[fd]
        self.logger.write(stream, data)
        kind = proto.STDOUT if stream == "stdout" else proto.STDERR
        dead = [c for c in self.clients if not c.send(kind, data)]
        for c in dead:
            self._drop(c, poller, None)

    def _accept(self, poller, by_fd) -> None:
        try:
            fd, _ = self.listener._accept()  # a _socket.socket's accept (close-on-exec)
        except OSError:
            return
        sock = type(self.listener)(fileno=fd)
        sock.setblocking(True)
        c = Client(sock, stdin=False)
        self.clients.append(c)
        by_fd[sock.fileno()] = c
        poller.register(sock.fileno(), select.POLLIN)

    def _drop(self, c: Client, poller, by_fd) -> None:
        try:
            poller.unregister(c.sock.fileno())
        except (KeyError, ValueError, OSError):
            pass
        if by_fd is not None:
            by_fd.pop(c.sock.fileno(), None)
        if c in self.clients:
            self.clients.remove(c)
        c.close()

    def _from_client(self, c: Client, poller, by_fd, pid: int) -> None:
        try:
            data = c.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            # A client that goes away (detached, killed) leaves stdin as it is: only an
            # explicit STDIN_EOF (the user's stdin ended) closes the container's.
            self._drop(c, poller, by_fd)
            return
        try:
            frames = c.reader.feed(data)
        except ValueError:
            self._drop(c, poller, by_fd)
            return
        for kind, payload in frames:
            if kind == proto.STDIN:
                self._to_stdin(payload)
            elif kind == proto.STDIN_EOF and c.stdin:
                self._close_stdin()
            elif kind == proto.RESIZE and self.master >= 0:
                self._resize(payload)
            elif kind == proto.SIGNAL:
                try:
                    os.kill(pid, int(payload))
                except (ValueError, OSError):
                    pass

    def _to_stdin(self, data: bytes) -> None:
        fd = self.master if self.master >= 0 else self.stdin_w
        if fd < 0:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                select.select([], [fd], [], 1.0)
                continue
            except OSError:
                return
            view = view[n:]

    def _close_stdin(self) -> None:
        if self.master >= 0:
            self._to_stdin(b"\x04")  # EOF on a tty is ^D at the start of a line
        elif self.stdin_w >= 0:
            try:
                os.close(self.stdin_w)
            except OSError:
                pass
            self.stdin_w = -1

    def _resize(self, payload: bytes) -> None:
        import fcntl
        import struct
        import termios

        try:
            rows, cols = (int(x) for x in payload.split())
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        except (ValueError, OSError):
            pass


def resume(state_json: str) -> None:
    """The lean monitor: entered by execve from a forked monitor (see _exec_lean)."""
    import _socket as socket  # see _listen

    from hutch.config import Settings
    from hutch.util import fastjson

    st = fastjson.loads(state_json)
    settings = Settings(root=st["root"], run=st["run"])
    mon = Monitor(settings, st["id"], -1, None, lock_fd=st["lock"])
    try:
        mon.policy = st["policy"]
        mon.auto_remove = st["auto_remove"]
        mon.log_cfg = st["log"]
        mon.log_path = st["log_path"]
        mon.stdin_w = st["stdin_w"]
        mon.master = st["master"]
        mon.tty = mon.master >= 0
        mon.interactive = mon.stdin_w >= 0
        mon.outputs = {int(fd): name for fd, name in st["outputs"].items()}
        for fd in [st["lock"], st["listener"], mon.stdin_w, mon.master, *mon.outputs,
                   *(c[0] for c in st["clients"])]:
            if fd >= 0:
                os.set_inheritable(fd, False)
        mon.listener = socket.socket(fileno=st["listener"])
        mon.listener.setblocking(False)
        for fd, stdin in st["clients"]:
            c = Client(socket.socket(fileno=fd), stdin=stdin)
            c.sock.setblocking(True)
            mon.clients.append(c)
        mon._open_logger(mon.log_path, mon.log_cfg)
        mon.supervise(st["init"], time.monotonic() - st["running_for"], st["restarts"],
                      st["backoff"], None)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        _unlink(mon.paths.monitor_pid)
        os._exit(0)
