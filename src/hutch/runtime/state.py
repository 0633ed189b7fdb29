"""Container state on disk: <root>/<id>/state.json plus the exec fifo that is the created
barrier (runc's design: the fifo exists from create until start, so its presence means
"created").

The live status is derived, never stored: the init pid plus its start time (field 22 of
/proc/<pid>/stat, so a recycled pid is not mistaken for the container) tell whether the
container still runs.
"""

from __future__ import annotations

import fcntl
import os
import time

from hutch.errors import AlreadyExists, NotFound
from hutch.util import fastjson

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"


_FIELDS = {
    "id": "", "bundle": "", "rootfs": "", "pid": 0, "pid_start": 0, "created": "",
    "owner": "", "annotations": dict, "cgroup": dict, "hooks": dict, "config": dict,
    "oci_version": "1.0.2", "stopped": False,
}


class ContainerState:
    """What the runtime remembers about one container between verbs.

    A plain class, not a dataclass: importing dataclasses pulls in inspect (~10 ms),
    which every verb would pay for.
    """

    __slots__ = tuple(_FIELDS)

    def __init__(self, **kw: object) -> None:
        for name, default in _FIELDS.items():
            value = kw.get(name)
            if value is None:
                value = default() if callable(default) else default
            setattr(self, name, value)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in _FIELDS}


def rfc3339_now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


class StateDir:
    """One container's directory under the runtime root."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.path, EXEC_FIFO)

    def create(self) -> None:
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id exists: {self.id}", id=self.id) from None

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.path, STATE_FILE))

    def lock(self) -> int:
        """An exclusive flock on the container directory; the fd is the lock."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def save(self, st: ContainerState) -> None:
        tmp = os.path.join(self.path, f".{STATE_FILE}.tmp")
        with open(tmp, "w") as f:
            f.write(fastjson.dumps(st.to_dict()))
        os.rename(tmp, os.path.join(self.path, STATE_FILE))

    def load(self) -> ContainerState:
        try:
            with open(os.path.join(self.path, STATE_FILE)) as f:
                data = fastjson.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {self.id}", id=self.id) from None
        return ContainerState(**{k: v for k, v in data.items() if k in _FIELDS})

    def remove(self) -> None:
        for name in (STATE_FILE, EXEC_FIFO, f".{STATE_FILE}.tmp"):
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        try:
            for name in os.listdir(self.path):
                os.unlink(os.path.join(self.path, name))
            os.rmdir(self.path)
        except FileNotFoundError:
            pass


def status_of(sd: StateDir, st: ContainerState) -> str:
    if st.stopped or st.pid <= 0:
        return "stopped"
    start = proc_start_time(st.pid)
    if start is None or start != st.pid_start:
        return "stopped"
    if os.path.exists(sd.fifo):
        return "created"
    if _frozen(st):
        return "paused"
    return "running"


def _frozen(st: ContainerState) -> bool:
    """Read the freezer directly (no cgroup manager import on the `state` path)."""
    cg = st.cgroup or {}
    paths = cg.get("paths") or {}
    try:
        if paths.get("freezer"):
            with open(os.path.join(paths["freezer"], "freezer.state")) as f:
                return f.read().strip() in ("FROZEN", "FREEZING")
        unified = cg.get("path") or paths.get("")
        if unified:
            with open(os.path.join(unified, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
    except OSError:
        pass
    return False


def oci_state(sd: StateDir, st: ContainerState) -> dict:
    """The state JSON runc prints (runtime-spec runtime.md#state, plus runc's extras)."""
    status = status_of(sd, st)
    out = {
        "ociVersion": st.oci_version,
        "id": st.id,
        "pid": st.pid if status != "stopped" else 0,
        "status": status,
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": st.owner,
        **({"annotations": st.annotations} if st.annotations else {}),
    }
    if status == "stopped" and _oom_killed(st):
        # Not in runc's state; the runtime spec allows extra properties. Tells the
        # caller why the container stopped (what `docker inspect` calls OOMKilled).
        out["oomKilled"] = True
    return out


def _oom_killed(st: ContainerState) -> bool:
    if not st.cgroup:
        return False
    from hutch.runtime import cgroups

    try:
        return cgroups.manager_from_state(st.cgroup).oom_kill_count() > 0
    except Exception:  # noqa: BLE001 - a gone or odd cgroup says nothing
        return False


def hook_state(st: ContainerState, status: str, pid: int | None = None) -> dict:
    """The state passed to hooks on stdin (runtime-spec config.md#posix-platform-hooks)."""
    return {
        "ociVersion": st.oci_version,
        "id": st.id,
        "status": status,
        "pid": st.pid if pid is None else pid,
        "bundle": st.bundle,
        **({"annotations": st.annotations} if st.annotations else {}),
    }
