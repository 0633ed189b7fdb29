"""/proc/self/mountinfo, parsed (proc(5)): which mounts exist, where, of what type."""

from __future__ import annotations

import os
import re

from hutch.util.record import record

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo (seq_file mangle).
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


@record(frozen=True)
class MountInfo:
    id: int
    parent_id: int
    major_minor: str
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: str


def parse_mountinfo(text: str) -> list[MountInfo]:
    out: list[MountInfo] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        out.append(MountInfo(
            id=int(f[0]), parent_id=int(f[1]), major_minor=f[2], root=_unescape(f[3]),
            mountpoint=_unescape(f[4]), options=f[5], fstype=r[0], source=_unescape(r[1]),
            super_options=r[2] if len(r) > 2 else "",
        ))
    return out


def read_mountinfo() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def lookup(path: str, text: str | None = None) -> MountInfo:
    """The mount that `path` lives on: the last-mounted entry whose mount point is the
    longest prefix of the resolved path (containerd's mount.Lookup)."""
    real = os.path.realpath(path)
    best: MountInfo | None = None
    for m in parse_mountinfo(text if text is not None else read_mountinfo()):
        mp = m.mountpoint
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mountpoint):
                best = m
    if best is None:  # unreachable on Linux: "/" is always there
        raise FileNotFoundError(f"no mount found for {path}")
    return best


def mounts_under(target: str, text: str | None = None) -> list[MountInfo]:
    """Every mount at or below `target`, in mountinfo order (mount order)."""
    t = target.rstrip("/") or "/"
    prefix = t if t == "/" else t + "/"
    return [m for m in parse_mountinfo(text if text is not None else read_mountinfo())
            if m.mountpoint == t or m.mountpoint.startswith(prefix)]
