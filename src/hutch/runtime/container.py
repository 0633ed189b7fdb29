"""The runtime's verbs on containers, parent side: create, start, state, kill, delete, run.

`create` validates everything before it forks (a hostile config.json never reaches the
kernel), then drives the children through the sync protocol written down in
hutch.runtime.init.
"""

from __future__ import annotations

# _signal, not signal: the signal module builds enums at import (~4 ms).
import _signal as signal
import os
import time

from hutch.errors import FailedPrecondition, HutchError, InvalidArgument, NotFound
from hutch.runtime.state import (
    ContainerState,
    StateDir,
    hook_state,
    oci_state,
    proc_start_time,
    rfc3339_now,
    status_of,
)


def _noop(msg: str) -> None:
    pass


class Runtime:
    def __init__(self, root: str, *, systemd_cgroup: bool = False, warn=_noop) -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.warn = warn

    @property
    def seccomp_cache(self) -> str:
        """Compiled seccomp programs (hutch.linux.seccomp.prepare), next to the state."""
        return os.path.join(self.root, ".seccomp-cache")

    # -- lookup ---------------------------------------------------------------------------
    def _dir(self, container_id: str) -> StateDir:
        from hutch.oci.spec import validate_container_id

        validate_container_id(container_id)
        return StateDir(self.root, container_id)

    def _load(self, container_id: str) -> tuple[StateDir, ContainerState]:
        sd = self._dir(container_id)
        if not sd.exists():
            raise NotFound(f"container does not exist: {container_id}", id=container_id)
        return sd, sd.load()

    def state(self, container_id: str) -> dict:
        sd, st = self._load(container_id)
        return oci_state(sd, st)

    def list(self) -> list[dict]:
        out = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return out
        for name in names:
            sd = StateDir(self.root, name)
            if not sd.exists():
                continue
            try:
                out.append(oci_state(sd, sd.load()))
            except (HutchError, OSError, ValueError):
                continue
        return out

    # -- create ---------------------------------------------------------------------------
    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, no_pivot: bool = False,
               preserve_fds: int = 0, console_fd: int | None = None) -> ContainerState:
        """`console_fd` (internal, for `run`): a connected socket to use as the console
        socket instead of connecting to `console_socket`."""
        from hutch.oci import spec as ocispec
        from hutch.runtime import cgroups

        sd = self._dir(container_id)
        bundle = os.path.abspath(bundle)
        spec = ocispec.load_spec(bundle)
        ocispec.validate(spec, bundle)
        linux = spec.get("linux") or {}
        if linux.get("seccomp"):
            from hutch.linux import seccomp

            seccomp.validate(linux["seccomp"])
        cgroups.validate_resources(linux.get("resources"))
        rootfs = ocispec.resolve_rootfs(spec, bundle)
        process = spec["process"]
        if process.get("terminal") and not console_socket and console_fd is None:
            raise InvalidArgument("terminal is true but no --console-socket was given",
                                  hint="the pty master is sent over the console socket")
        if console_socket and not process.get("terminal"):
            raise InvalidArgument("--console-socket given but process.terminal is false")

        sd.create()
        hooks = spec.get("hooks") or {}
        st = ContainerState(
            id=container_id, bundle=bundle, rootfs=rootfs, created=rfc3339_now(),
            annotations=spec.get("annotations") or {}, oci_version=spec.get("ociVersion"),
            hooks={k: hooks[k] for k in ("poststart", "poststop") if hooks.get(k)},
            # What `exec` needs later: the process as the base for CLI flags, seccomp.
            config={"process": process, "seccomp": linux.get("seccomp"),
                    "resources": linux.get("resources") or {}},
        )
        manager = None
        child = init_pid = 0
        parent_ch = child_ch = None
        fifo_fd = -1
        try:
            os.mkfifo(sd.fifo, 0o622)
            # 0622 whatever the umask, owned by the container's root (runc does both): a
            # non-root container user opens it for writing.
            os.chmod(sd.fifo, 0o622)
            os.chown(sd.fifo, _mapped_root(linux, "uidMappings"),
                     _mapped_root(linux, "gidMappings"))
            # Opened here, inherited by init: a user-namespaced init may not be able to
            # walk the runtime root to it.
            fifo_fd = os.open(sd.fifo, os.O_PATH | os.O_CLOEXEC)
            manager = cgroups.open_manager(linux.get("cgroupsPath"), container_id,
                                           systemd=self.systemd_cgroup)
            manager.create()
            st.cgroup = manager.to_state()
            if console_socket:
                console_fd = _connect(console_socket)
            from hutch.runtime.channel import Channel

            parent_ch, child_ch = Channel.pair()
            from hutch.runtime import init

            ctx = init.InitContext(
                spec=spec, bundle=bundle, rootfs=rootfs, fifo_fd=fifo_fd, channel=child_ch,
                no_pivot=no_pivot, console_fd=console_fd, preserve_fds=preserve_fds,
                cgroup_paths=manager.paths(), hook_state=hook_state(st, "creating", 0),
                cgroup=manager,
                cgroup_v2_sync=any(n.get("type") in ("cgroup", "user") and not n.get("path")
                                   for n in linux.get("namespaces") or ()),
                seccomp_cache=self.seccomp_cache,
            )
            child = os.fork()
            if child == 0:
                parent_ch.close()
                init.intermediate(ctx)
            child_ch.close()
            if ctx.seccomp_filter is not None:
                ctx.seccomp_filter.close()
            if console_fd is not None:
                os.close(console_fd)
                console_fd = None
            parent_ch.send("go")
            msg = parent_ch.recv()
            if msg.get("t") == "userns":
                _write_id_maps(child, linux)
                parent_ch.send("ok")
                msg = parent_ch.recv()
            if msg.get("t") == "error":
                raise FailedPrecondition(msg.get("msg", "container init failed"),
                                         errno=msg.get("errno") or 0)
            if msg.get("t") != "pid":
                raise FailedPrecondition(f"sync: expected the init's pid, got {msg.get('t')!r}")
            init_pid = int(msg["pid"])
            _reap(child)
            child = 0
            st.pid = init_pid
            st.pid_start = proc_start_time(init_pid) or 0

            parent_ch.expect("hooks")
            if hooks.get("prestart") or hooks.get("createRuntime"):
                from hutch.runtime.hooks import run_hooks

                state = hook_state(st, "creating")
                run_hooks("prestart", hooks.get("prestart"), state)
                run_hooks("createRuntime", hooks.get("createRuntime"), state)
            parent_ch.send("ok", pid=init_pid)

            parent_ch.expect("ready")
            for w in manager.apply(with_default_devices(linux.get("resources"))):
                self.warn(w)
            _set_rlimits(init_pid, process.get("rlimits"))
            parent_ch.send("ok")
            parent_ch.expect("done")
            sd.save(st)
            if pid_file:
                _write_pid_file(pid_file, init_pid)
            return st
        except BaseException:
            for pid in (init_pid, child):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if child:
                _reap(child)
            if init_pid:
                _wait_gone(init_pid, 2.0)
            if manager is not None:
                try:
                    manager.destroy()
                except (HutchError, OSError):
                    pass
            sd.remove()
            raise
        finally:
            if parent_ch is not None:
                parent_ch.close()
            if fifo_fd >= 0:
                os.close(fifo_fd)
            if console_fd is not None:
                os.close(console_fd)

    # -- start ----------------------------------------------------------------------------
    def start(self, container_id: str) -> None:
        sd, st = self._load(container_id)
        status = status_of(sd, st)
        if status == "stopped":
            raise FailedPrecondition("cannot start a container that has stopped")
        if status != "created":
            raise FailedPrecondition("cannot start an already running container")
        import select

        fd = os.open(sd.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            got = b""
            while True:
                # POLLIN for the byte init writes, then POLLHUP when its write end closes
                # at execve.
                if poller.poll(100):
                    data = os.read(fd, 64)
                    if data:
                        got += data
                        continue
                    if got:
                        break
                if proc_start_time(st.pid) != st.pid_start:
                    if got:
                        break
                    raise FailedPrecondition("container init died before it was started")
        finally:
            os.close(fd)
        try:
            os.unlink(sd.fifo)
        except FileNotFoundError:
            pass
        if st.hooks.get("poststart"):
            from hutch.runtime.hooks import run_hooks

            for w in run_hooks("poststart", st.hooks["poststart"], hook_state(st, "running")):
                self.warn(w)

    # -- kill -----------------------------------------------------------------------------
    def kill(self, container_id: str, sig: int, *, all_processes: bool = False) -> None:
        sd, st = self._load(container_id)
        stopped = status_of(sd, st) == "stopped"
        if stopped and not all_processes:
            raise FailedPrecondition("container not running")
        if all_processes:
            # runc 1.1: --all signals whatever is left in the cgroup, even after the
            # init is gone, and is not an error on a stopped container.
            pids = self._manager(st).pids() if st.cgroup else ([] if stopped else [st.pid])
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            return
        os.kill(st.pid, sig)

    def _manager(self, st: ContainerState):
        from hutch.runtime import cgroups

        return cgroups.manager_from_state(st.cgroup)

    # -- exec -----------------------------------------------------------------------------
    def exec(self, container_id: str, *, process: dict | None = None,
             process_file: str | None = None, args: list[str] | None = None,
             cwd: str | None = None, env: list[str] | None = None, user: str | None = None,
             caps: list[str] | None = None, tty: bool = False, no_new_privs: bool = False,
             detach: bool = False, pid_file: str | None = None,
             console_socket: str | None = None, preserve_fds: int = 0,
             additional_gids: list[int] | None = None, console_fd: int | None = None,
             want_pid: bool = False) -> int:
        """Returns the exit code; with `detach`, 0, or the process's pid if `want_pid`.
        `console_fd` (internal): a connected console socket instead of `console_socket`."""
        from hutch.runtime import exec as _exec

        sd, st = self._load(container_id)
        status = status_of(sd, st)
        if status not in ("running", "created"):
            raise FailedPrecondition(f"cannot exec in a {status} container")
        if process_file:
            process = _read_process(process_file)
        if process is None:
            process = _exec.process_from_args(
                st.config.get("process") or {}, args or [], cwd=cwd, env=env or [],
                user=user, caps=caps or [], tty=tty, no_new_privs=no_new_privs)
        if additional_gids:
            process = {**process, "user": {**(process.get("user") or {}),
                                           "additionalGids": list(additional_gids)}}
        from hutch.linux import caps as _caps

        for k, names in (process.get("capabilities") or {}).items():
            bad = _caps.unknown_names(names)
            if bad:
                raise InvalidArgument(f"unknown capability {bad[0]!r} in {k}")
        if console_socket:
            console_fd = _connect(console_socket)
        try:
            return _exec.exec_process(
                init_pid=st.pid, process=process, seccomp=st.config.get("seccomp"),
                cgroup_manager=self._manager(st) if st.cgroup else None,
                console_fd=console_fd, pid_file=pid_file, detach=detach,
                preserve_fds=preserve_fds, want_pid=want_pid,
                seccomp_cache=self.seccomp_cache)
        finally:
            if console_fd is not None:
                os.close(console_fd)

    # -- ps, pause, resume, update, events ------------------------------------------------
    def pids(self, container_id: str) -> list[int]:
        sd, st = self._load(container_id)
        if not st.cgroup:
            return [st.pid] if status_of(sd, st) != "stopped" else []
        return sorted(self._manager(st).pids())

    def pause(self, container_id: str) -> None:
        sd, st = self._load(container_id)
        status = status_of(sd, st)
        if status not in ("running", "created"):
            raise FailedPrecondition(f"container not running: {status}")
        self._manager(st).freeze()

    def resume(self, container_id: str) -> None:
        sd, st = self._load(container_id)
        if status_of(sd, st) != "paused":
            raise FailedPrecondition("container not paused")
        self._manager(st).thaw()

    def update(self, container_id: str, resources: dict) -> list[str]:
        """runc update: `resources` (sparse, as given) is laid over zeros ("leave
        alone"), merged into what the container has, applied live and remembered."""
        from hutch.runtime import cgroups
        from hutch.runtime.cgroups.update import changes_from_json, merge_update

        sd = self._dir(container_id)
        lock = sd.lock() if sd.exists() else None
        try:
            sd, st = self._load(container_id)
            if status_of(sd, st) == "stopped":
                raise FailedPrecondition("container not running")
            merged = merge_update(st.config.get("resources"), changes_from_json(resources))
            cgroups.validate_resources(merged)
            warnings = self._manager(st).update(merged)
            st.config = {**st.config, "resources": merged}
            sd.save(st)
        finally:
            if lock is not None:
                os.close(lock)
        for w in warnings:
            self.warn(w)
        return warnings

    def stats(self, container_id: str) -> dict:
        sd, st = self._load(container_id)
        if status_of(sd, st) == "stopped":
            raise FailedPrecondition("container not running")
        return self._manager(st).stats()

    def events(self, container_id: str, *, interval: float, stats_only: bool, emit) -> None:
        """runc's `events`: with stats_only one stats event; otherwise a stats event every
        `interval` seconds and an "oom" event for each OOM kill, until the container
        stops."""
        sd, st = self._load(container_id)
        if status_of(sd, st) == "stopped":
            raise FailedPrecondition(f"container with id {container_id} is not running")
        manager = self._manager(st)
        if stats_only:
            emit({"type": "stats", "id": container_id, "data": manager.stats()})
            return
        ooms = manager.oom_kill_count()
        next_stats = time.monotonic()
        while status_of(sd, st) != "stopped":
            now = time.monotonic()
            count = manager.oom_kill_count()
            for _ in range(max(0, count - ooms)):
                emit({"type": "oom", "id": container_id})
            ooms = count
            if now >= next_stats:
                try:
                    emit({"type": "stats", "id": container_id, "data": manager.stats()})
                except (HutchError, OSError):
                    break
                next_stats = now + interval
            time.sleep(min(0.1, interval))
        count = manager.oom_kill_count()
        for _ in range(max(0, count - ooms)):
            emit({"type": "oom", "id": container_id})

    # -- delete ---------------------------------------------------------------------------
    def delete(self, container_id: str, *, force: bool = False) -> None:
        sd = self._dir(container_id)
        if not sd.exists():
            if force and os.path.isdir(sd.path):
                sd.remove()
                return
            raise NotFound(f"container does not exist: {container_id}", id=container_id)
        st = sd.load()
        status = status_of(sd, st)
        if status in ("running", "paused") and not force:
            raise FailedPrecondition(
                f"cannot delete container {container_id} that is not stopped: {status}",
                hint="use --force")
        manager = self._manager(st) if st.cgroup else None
        if status != "stopped":
            self._kill_all(st, manager)
        if manager is not None:
            if manager.pids():
                for pid in manager.pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                _wait_empty(manager, 5.0)
            try:
                manager.destroy()
            except (HutchError, OSError) as e:
                self.warn(f"removing cgroup: {e}")
        sd.remove()
        if st.hooks.get("poststop"):
            from hutch.runtime.hooks import run_hooks

            for w in run_hooks("poststop", st.hooks["poststop"], hook_state(st, "stopped")):
                self.warn(w)

    def _kill_all(self, st: ContainerState, manager) -> None:
        if manager is not None:
            # Thaw first: SIGKILL is not delivered to a frozen cgroup's tasks.
            _thaw(st)
        try:
            os.kill(st.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if manager is not None:
            for pid in manager.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _wait_gone(st.pid, 5.0, st.pid_start)

    # -- run ------------------------------------------------------------------------------
    def run(self, container_id: str, bundle: str, *, detach: bool = False,
            pid_file: str | None = None, console_socket: str | None = None,
            no_pivot: bool = False, preserve_fds: int = 0, keep: bool = False) -> int:
        if not detach:
            # The init is the intermediate's child; as subreaper we inherit it when the
            # intermediate exits, so we can wait for it and report its status.
            # (ctypes is imported only by the verbs that fork: start/kill/state stay light)
            from hutch.linux import libc

            libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        ours = fd = None
        if not detach and not console_socket and _wants_terminal(bundle):
            from hutch.runtime import tty

            ours, fd = tty.console_pair()
        try:
            st = self.create(container_id, bundle, pid_file=pid_file,
                             console_socket=console_socket, no_pivot=no_pivot,
                             preserve_fds=preserve_fds, console_fd=fd)
            master = tty.receive_master(ours) if ours is not None else None
        finally:
            if ours is not None:
                ours.close()
        if detach:
            self.start(container_id)
            return 0
        forwarded = _forward_signals(st.pid)
        try:
            self.start(container_id)
            if master is not None:
                tty.proxy(master, st.pid)
                os.close(master)
            code = _wait_exit(st.pid)
        except BaseException:
            try:
                self.delete(container_id, force=True)
            except HutchError:
                pass
            raise
        finally:
            for s, old in forwarded.items():
                signal.signal(s, old)
        if not keep:
            self.delete(container_id, force=True)
        return code


# --- helpers -----------------------------------------------------------------------------
# runc's AllowedDevices (libcontainer/specconv): appended after the spec's own device
# rules, so the default "deny all" of a spec still leaves a usable /dev.
DEFAULT_DEVICE_RULES = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},             # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # tun
)


def with_default_devices(resources: dict | None) -> dict:
    res = dict(resources or {})
    res["devices"] = list(res.get("devices") or []) + [dict(r) for r in DEFAULT_DEVICE_RULES]
    return res


def _connect(path: str) -> int:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise InvalidArgument(f"cannot connect to console socket {path}: {e.strerror}") from None
    fd = s.detach()
    os.set_inheritable(fd, False)
    return fd


def _wants_terminal(bundle: str) -> bool:
    from hutch.oci.spec import load_spec

    try:
        return bool((load_spec(bundle).get("process") or {}).get("terminal"))
    except HutchError:
        return False  # create reports it properly


def _read_process(path: str) -> dict:
    from hutch.util import fastjson

    try:
        with open(path, "rb") as f:
            data = f.read(4 << 20)
        proc = fastjson.loads(data)
    except OSError as e:
        raise InvalidArgument(f"exec: cannot read --process {path}: {e.strerror}") from None
    except ValueError as e:
        raise InvalidArgument(f"exec: --process {path} is not valid JSON: {e}") from None
    if not isinstance(proc, dict) or not isinstance(proc.get("args"), list):
        raise InvalidArgument(f"exec: --process {path} must be an OCI process object "
                              "with args")
    return proc


def _mapped_root(linux: dict, key: str) -> int:
    """The host id that container id 0 maps to (0 without a user namespace)."""
    for m in linux.get(key) or ():
        if m.get("containerID") == 0:
            return int(m["hostID"])
    return 0


def _write_id_maps(pid: int, linux: dict) -> None:
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        maps = linux.get(key) or []
        if not maps:
            continue
        data = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(data)


_RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def rlim(value) -> int:
    """A spec's uint64 limit for Python's resource module: 2^64-1 (and anything past
    the signed range) is RLIM_INFINITY there."""
    import resource

    v = int(value)
    return resource.RLIM_INFINITY if v >= 1 << 63 or v < 0 else v


def _set_rlimits(pid: int, rlimits: list[dict] | None) -> None:
    """Set from outside with prlimit(2), as runc does at procReady: once inside a user
    namespace the init could no longer raise them."""
    if not rlimits:
        return
    import resource

    for r in rlimits:
        res = _RLIMITS[r["type"]]
        try:
            resource.prlimit(pid, res, (rlim(r["soft"]), rlim(r["hard"])))
        except (OSError, ValueError, OverflowError) as e:
            raise FailedPrecondition(
                f"error setting rlimit type {res} ({r['type']}): "
                f"{getattr(e, 'strerror', None) or e}") from None


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _wait_gone(pid: int, timeout: float, start: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        now = proc_start_time(pid)
        if now is None or (start is not None and now != start):
            return
        time.sleep(0.005)


def _wait_empty(manager, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while manager.pids() and time.monotonic() < deadline:
        time.sleep(0.005)


def _thaw(st: ContainerState) -> None:
    paths = st.cgroup.get("paths") or {}
    for key, fname, value in (("freezer", "freezer.state", "THAWED"),
                              ("", "cgroup.freeze", "0")):
        p = paths.get(key)
        if p and os.path.exists(os.path.join(p, fname)):
            try:
                with open(os.path.join(p, fname), "w") as f:
                    f.write(value)
            except OSError:
                pass


_FORWARD = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
            "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGALRM")


def _forward_signals(pid: int) -> dict:
    def handler(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    old = {}
    for name in _FORWARD:
        s = getattr(signal, name)
        old[s] = signal.signal(s, handler)
    return old


def _wait_exit(pid: int) -> int:
    """Wait for the init (our child now, as subreaper), reaping other orphans on the way;
    return its exit code, or 128+signal as runc run does."""
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if wpid != pid:
            continue
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
