"""CgroupFS: the only place the cgroup managers touch the filesystem.

The default instance works on the real paths. Tests pass an instance whose `root` is a
temporary directory (every absolute path is looked up below it) and/or whose mountinfo
and /proc/self/cgroup texts are given verbatim, so no test patches module internals.

Cgroup files are pseudo-files: a value must reach the kernel in ONE write(2) on a file
opened without O_CREAT (a missing file means the host lacks the knob, and creating it
on a tmpfs fake would hide that), as runc's cgroups.WriteFile does.
"""

from __future__ import annotations

import os


class CgroupMount:
    """One line of /proc/self/mountinfo whose fstype is cgroup or cgroup2.

    A plain class, not a dataclass: importing dataclasses (and inspect) costs ~20 ms on
    the runtime's start-up path.
    """

    __slots__ = ("mountpoint", "root", "fstype", "controllers")

    def __init__(self, mountpoint: str, root: str, fstype: str,
                 controllers: tuple[str, ...] = ()) -> None:
        self.mountpoint = mountpoint
        self.root = root  # the cgroup this mount shows at its mountpoint (field 4)
        self.fstype = fstype  # "cgroup" (v1) or "cgroup2"
        self.controllers = controllers  # v1: "cpu", "name=systemd", ...

    def __repr__(self) -> str:
        return (f"CgroupMount({self.mountpoint!r}, root={self.root!r}, "
                f"fstype={self.fstype!r}, controllers={self.controllers!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CgroupMount) and repr(self) == repr(other)

    __hash__ = None  # type: ignore[assignment]


# v1 controllers the kernel knows (Documentation/admin-guide/cgroup-v1); used to tell
# controllers from plain mount options in the super-block options field.
V1_CONTROLLERS = frozenset({
    "cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls",
    "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc", "debug",
})


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup mounts in mountinfo order (proc(5): fields, ' - ', fstype, source, opts)."""
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype = tail[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        ctrls: tuple[str, ...] = ()
        if fstype == "cgroup":
            ctrls = tuple(o for o in tail[2].split(",")
                          if o in V1_CONTROLLERS or o.startswith("name="))
        mounts.append(CgroupMount(mountpoint=_unescape(fields[4]), root=_unescape(fields[3]),
                                  fstype=fstype, controllers=ctrls))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller: path}; the v2 line ("0::/x") has key ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if ctrls == "":
            out[""] = path
            continue
        for c in ctrls.split(","):
            out[c] = path
    return out


class CgroupFS:
    """File operations on cgroup paths, all given as absolute host paths.

    root: prefix under which every absolute path is looked up ("/" for the real host).
    mountinfo / self_cgroup: texts to use instead of reading <root>/proc/self/mountinfo
    and <root>/proc/self/cgroup (e.g. to point a manager at a cgroup2 mounted elsewhere).
    """

    def __init__(self, root: str = "/", *, mountinfo: str | None = None,
                 self_cgroup: str | None = None) -> None:
        self.root = root
        self._mountinfo = mountinfo
        self._self_cgroup = self_cgroup

    def real(self, path: str) -> str:
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    # --- reads -------------------------------------------------------------------------
    def read(self, path: str) -> str:
        with open(self.real(path), encoding="utf-8", errors="replace") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(self.real(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self.real(path))

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self.real(path))

    def mountinfo(self) -> str:
        if self._mountinfo is not None:
            return self._mountinfo
        return self.read("/proc/self/mountinfo")

    def self_cgroup(self) -> str:
        if self._self_cgroup is not None:
            return self._self_cgroup
        return self.read("/proc/self/cgroup")

    # --- writes ------------------------------------------------------------------------
    def write(self, path: str, data: str) -> None:
        """One write(2) to an existing file (raises FileNotFoundError if it is missing)."""
        fd = os.open(self.real(path), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            b = data.encode()
            while True:
                try:
                    os.write(fd, b)
                    return
                except InterruptedError:
                    continue
        finally:
            os.close(fd)

    def mkdir(self, path: str, mode: int = 0o755) -> bool:
        """Create one directory; False if it existed already."""
        try:
            os.mkdir(self.real(path), mode)
            return True
        except FileExistsError:
            return False

    def rmdir(self, path: str) -> None:
        os.rmdir(self.real(path))
