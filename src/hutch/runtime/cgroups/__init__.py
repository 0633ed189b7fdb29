"""cgroup v1 and v2 managers for hutch-runtime: create, join, limit, remove.

They write what runc 1.1 writes (same files, formats and order) so that a container
looks the same under either runtime. Standard library only (plain file I/O), because
the runtime imports this on its start-up path. May import hutch.errors only.

Use:
    mgr = open_manager(spec_linux.get("cgroupsPath"), container_id, systemd=False)
    mgr.create()                      # mkdir in every hierarchy
    warnings = mgr.apply(resources)   # before add_pid: cpuset/rt must be set first
    mgr.add_pid(pid)
    state["cgroups"] = mgr.to_state() # later: manager_from_state(state["cgroups"])
    mgr.freeze(); mgr.frozen(); mgr.thaw()          # pause / resume / state "paused"
    mgr.stats()                       # `runc events --stats` "data" object
    mgr.oom_kill_count(); mgr.under_oom()           # events "oom", state
    mgr.update(update.merge_update(stored, update.changes_from_flags(flags)))
    mgr.destroy()

stats.py and update.py are imported lazily (only events/update need them).

v1 or v2 is decided from /proc/self/mountinfo (through the CgroupFS object): any v1
hierarchy with a controller means legacy/hybrid -> v1 manager (which also manages the
hybrid cgroup2 directory); only cgroup2 -> v2 manager.

apply() raises hutch.errors.SpecError for malformed resources, NotSupported when a
limit names a controller the host does not have, and returns warnings for knobs that
are ignored (kernel memory, swap without swap accounting, v1-only knobs on v2, ...).
Device rules are applied on v1; the caller passes the complete list (runc adds its
default allowed devices in spec conversion, not in the cgroup manager).
"""

from __future__ import annotations

from hutch.errors import InvalidArgument, NotSupported

from .base import CgroupManager
from .fs import V1_CONTROLLERS, CgroupFS, CgroupMount, parse_mountinfo, parse_proc_cgroup
from .paths import inner_path
from .v1 import V1Manager
from .v2 import V2Manager, shares_to_weight
from .validate import validate_resources

__all__ = [
    "CgroupFS", "CgroupManager", "CgroupMount", "V1Manager", "V2Manager", "detect_version",
    "manager_from_state", "open_manager", "parse_mountinfo", "parse_proc_cgroup",
    "shares_to_weight", "validate_resources",
]


def detect_version(mounts: list[CgroupMount]) -> int:
    """1 if any v1 hierarchy carries a controller (legacy or hybrid), 2 if only cgroup2."""
    if any(m.fstype == "cgroup" and any(c in V1_CONTROLLERS for c in m.controllers)
           for m in mounts):
        return 1
    if any(m.fstype == "cgroup2" for m in mounts):
        return 2
    raise NotSupported("no cgroup filesystem is mounted (see /proc/self/mountinfo)")


def open_manager(cgroups_path: str | None, container_id: str, *, systemd: bool = False,
                 fs: CgroupFS | None = None) -> CgroupManager:
    """The manager for this container's cgroup, paths resolved as runc 1.1 resolves them."""
    fs = fs or CgroupFS()
    inner = inner_path(cgroups_path, container_id, systemd)
    mounts = parse_mountinfo(fs.mountinfo())
    if detect_version(mounts) == 1:
        return V1Manager.open(fs, mounts, inner)
    unified = [m for m in mounts if m.fstype == "cgroup2"]
    # Prefer the usual place if cgroup2 is mounted more than once.
    unified.sort(key=lambda m: m.mountpoint != "/sys/fs/cgroup")
    return V2Manager.open(fs, unified[0], inner)


def manager_from_state(d: dict, fs: CgroupFS | None = None) -> CgroupManager:
    """Reopen a manager from what to_state() returned."""
    fs = fs or CgroupFS()
    try:
        version = d["version"]
        if version == 1:
            return V1Manager(fs, dict(d["paths"]), dict(d.get("mounts") or {}))
        if version == 2:
            return V2Manager(fs, d["path"], d["mountpoint"])
    except (KeyError, TypeError) as e:
        raise InvalidArgument(f"malformed cgroup state: {e!r}") from None
    raise InvalidArgument(f"malformed cgroup state: unknown version {version!r}")
