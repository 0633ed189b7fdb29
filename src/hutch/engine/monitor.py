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

Start protocol with the spawning command: one JSON line on a pipe,
{"ok": true} once the container runs, or {"error": "...", "code": 125|126|127}.
"""

from __future__ import annotations

import os
import select
import time
from contextlib import suppress

from hutch.engine import attach as proto
from hutch.errors import FailedPrecondition, HutchError, NotFound

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0  # seconds of running that reset the back-off (docker)
DRAIN_TIMEOUT = 2.0


def spawn(engine, rec, *, attach=None):
    """Fork the monitor for `rec` (bundle prepared). `attach`: the monitor's end of a
    socketpair. Returns the record once the container runs; raises StartError."""
    from hutch.engine.containers import StartError
    from hutch.util import fastjson

    engine.close_connections()
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 0
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _main(engine.settings, rec.id, w, attach)
        except BaseException as e:  # noqa: BLE001
            code = 1
            _report(w, {"error": f"monitor: {e.__class__.__name__}: {e}", "code": 125})
        finally:
            os._exit(code)
    os.close(w)
    if attach is not None:
        attach.close()
    os.waitpid(pid, 0)
    chunks = []
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    raw = b"".join(chunks).strip()
    msg = fastjson.loads(raw.splitlines()[0]) if raw else {
        "error": "the container's monitor died before it started the container", "code": 125}
    if msg.get("ok"):
        return engine.store.get(rec.id)
    raise StartError(msg.get("error") or "start failed", exit_code=int(msg.get("code", 125)))


def _main(settings, container_id: str, report_fd: int, attach) -> None:
    import fcntl

    from hutch.engine.containers import Engine
    from hutch.linux import libc

    keep = {report_fd}
    if attach is not None:
        keep.add(attach.fileno())
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    _close_fds_except(keep)
    os.chdir("/")
    import gc

    gc.enable()  # the hutch launcher turns it off for short-lived commands; we live long
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    engine = Engine(settings)
    paths = engine.paths(container_id)
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
    try:
        Monitor(engine, container_id, report_fd, attach).run()
    except BaseException as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        _report(report_fd, {"error": f"monitor: {e}", "code": 125})
    finally:
        with suppress(OSError):
            os.unlink(paths.monitor_pid)


def _close_fds_except(keep: set[int]) -> None:
    fds = []
    with suppress(OSError):
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    for fd in fds:
        if fd > 2 and fd not in keep:
            with suppress(OSError):
                os.close(fd)


def _report(fd: int, msg: dict) -> None:
    if fd < 0:
        return
    from hutch.util import fastjson

    with suppress(OSError):
        os.write(fd, fastjson.dumps(msg).encode() + b"\n")


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
        with suppress(OSError):
            self.sock.close()


class Monitor:
    def __init__(self, engine, container_id: str, report_fd: int, attach) -> None:
        self.engine = engine
        self.id = container_id
        self.paths = engine.paths(container_id)
        self.report_fd = report_fd
        self.clients: list[Client] = []
        if attach is not None:
            attach.setblocking(True)
            self.clients.append(Client(attach, stdin=True))
        self.listener = None
        self.stdin_w = -1
        self.master = -1
        self.outputs: dict[int, str] = {}

    # -- life ---------------------------------------------------------------------------
    def run(self) -> None:
        rec = self.engine.store.get(self.id)
        log_cfg = rec.config.get("log") or {}
        from hutch.engine.logs import JsonFileLogger

        self.logger = JsonFileLogger(rec.log_path or self.paths.log_path,
                                     max_size=int(log_cfg.get("max-size", 10 << 20)),
                                     max_files=int(log_cfg.get("max-file", 3)))
        self._listen()
        policy = rec.config.get("restart") or {"Name": "no", "MaximumRetryCount": 0}
        restarts = rec.restart_count if rec.state == "exited" else 0
        backoff = BACKOFF_START
        first = True
        final_code = 0
        while True:
            try:
                init_pid = self._create_and_start(rec)
            except BaseException as e:  # noqa: BLE001
                from hutch.engine.containers import start_error_code

                code = start_error_code(e)
                with suppress(HutchError):
                    self.engine.store.update(self.id, state="exited", exit_code=code,
                                             error=str(e), finished_at=time.time(), pid=0)
                if first:
                    _report(self.report_fd, {"error": str(e), "code": code})
                    self.report_fd = -1
                final_code = code
                break
            started = time.monotonic()
            try:
                rec = self.engine.store.update(
                    self.id, state="running", pid=init_pid, started_at=time.time(),
                    monitor_pid=os.getpid(), exit_code=0, error="", oom_killed=False,
                    restart_count=restarts, finished_at=None)
            except (NotFound, FailedPrecondition):  # removed while starting
                self._kill_container()
                self._wait_init(init_pid)
                return self._finish(None)
            if first:
                _report(self.report_fd, {"ok": True})
                os.close(self.report_fd)
                self.report_fd = -1
                first = False
            status = self._wait_init(init_pid)
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code
            oom = False
            with suppress(HutchError, OSError, ValueError):
                oom = bool(self.engine.runtime.state(self.id).get("oomKilled"))
            with suppress(NotFound, HutchError, OSError):
                self.engine.runtime.delete(self.id, force=True)
            final_code = code
            stopping = os.path.exists(self.paths.stopping)
            name, limit = policy.get("Name", "no"), int(policy.get("MaximumRetryCount") or 0)
            again = not stopping and (
                name in ("always", "unless-stopped")
                or (name == "on-failure" and code != 0 and (limit == 0 or restarts < limit)))
            try:
                rec = self.engine.store.update(
                    self.id, state="restarting" if again else "exited", exit_code=code,
                    oom_killed=oom, finished_at=time.time(), pid=0)
            except (NotFound, FailedPrecondition):  # rm -f took over
                return self._finish(None)
            if not again:
                break
            # Attached clients (docker run) end at the first exit; the restarts go on.
            self._send_exit(code, oom)
            if time.monotonic() - started >= RESET_AFTER:
                backoff = BACKOFF_START
            if not self._sleep(backoff):
                with suppress(HutchError):
                    self.engine.store.update(self.id, state="exited")
                break
            backoff = min(backoff * 2, BACKOFF_MAX)
            restarts += 1
            try:
                rec = self.engine.store.get(self.id)
            except NotFound:
                return self._finish(None)
            if rec.state != "restarting":
                return self._finish(None)
        self._finish(final_code, oom=rec.oom_killed if rec else False,
                     auto_remove=bool(rec.config.get("auto_remove")))

    def _finish(self, code, *, oom: bool = False, auto_remove: bool = False) -> None:
        from hutch.mount import unmount_all

        self.logger.close()
        with suppress(HutchError, OSError):
            unmount_all(self.paths.rootfs, detach=True)
        if self.listener is not None:
            with suppress(OSError):
                os.unlink(self.paths.attach_sock)
            self.listener.close()
        if auto_remove:
            with suppress(HutchError, OSError):
                self.engine.remove(self.id, force=True, volumes=True)
        if code is not None:
            self._send_exit(code, oom)
        for c in self.clients:
            c.close()
        self.clients = []

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
        with suppress(NotFound, HutchError, OSError):
            self.engine.runtime.delete(self.id, force=True)

    # -- stdio and the runtime ------------------------------------------------------------
    def _listen(self) -> None:
        import socket

        with suppress(FileNotFoundError):
            os.unlink(self.paths.attach_sock)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        proto.bind_unix(s, self.paths.attach_sock)
        os.chmod(self.paths.attach_sock, 0o600)
        s.listen(16)
        s.setblocking(False)
        self.listener = s

    def _create_and_start(self, rec) -> int:
        run = rec.config.get("run") or {}
        tty, interactive = bool(run.get("tty")), bool(run.get("interactive"))
        rt = self.engine.runtime
        bundle = self.paths.bundle
        self.outputs = {}
        if tty:
            from hutch.runtime import tty as _tty

            ours, fd = _tty.console_pair()
            try:
                st = rt.create(self.id, bundle, console_fd=fd)
                self.master = _tty.receive_master(ours)
            finally:
                ours.close()
            os.set_blocking(self.master, False)
            self.outputs[self.master] = "stdout"
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if interactive:
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

    def _wait_init(self, pid: int) -> int:
        from hutch.linux import libc

        try:
            pidfd = libc.pidfd_open(pid)
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
        drain_deadline = None
        try:
            while True:
                if status is not None and (not self.outputs
                                           or time.monotonic() > drain_deadline):
                    break
                timeout = 1000 if status is None else 100
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
            for fd in list(self.outputs):
                os.close(fd)
            self.outputs = {}
            self.master = -1
            if self.stdin_w >= 0:
                with suppress(OSError):
                    os.close(self.stdin_w)
                self.stdin_w = -1
            self.logger.flush()
            for fd in list(by_fd):
                with suppress(KeyError, ValueError):
                    poller.unregister(fd)
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
            with suppress(ChildProcessError):
                os.waitpid(info.si_pid, 0)

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
            stream = self.outputs.pop(fd)
            if fd == self.master:
                self.master = -1
            del stream
            return
        stream = self.outputs[fd]
        self.logger.write(stream, data)
        kind = proto.STDOUT if stream == "stdout" else proto.STDERR
        dead = [c for c in self.clients if not c.send(kind, data)]
        for c in dead:
            self._drop(c, poller, None)

    def _accept(self, poller, by_fd) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, OSError):
            return
        sock.setblocking(True)
        c = Client(sock, stdin=False)
        self.clients.append(c)
        by_fd[sock.fileno()] = c
        poller.register(sock.fileno(), select.POLLIN)

    def _drop(self, c: Client, poller, by_fd) -> None:
        with suppress(KeyError, ValueError, OSError):
            poller.unregister(c.sock.fileno())
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
                with suppress(ValueError, OSError):
                    os.kill(pid, int(payload))

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
            with suppress(OSError):
                os.close(self.stdin_w)
            self.stdin_w = -1

    def _resize(self, payload: bytes) -> None:
        import fcntl
        import struct
        import termios

        with suppress(ValueError, OSError):
            rows, cols = (int(x) for x in payload.split())
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
