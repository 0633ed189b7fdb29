"""From linux.cgroupsPath to the path inside each cgroup hierarchy, as runc 1.1 does.

runc's specconv.CreateCgroupConfig and fs/fs2 path helpers:

* cgroupfs driver: the path goes through CleanPath (lexically confined, ".." cannot
  climb out). Absolute -> below each hierarchy's mountpoint. Relative -> below the
  runtime's own cgroup in that hierarchy (/proc/self/cgroup); on cgroup v2 below the
  PARENT of our own cgroup (fs2._defaultDirPath: our own cgroup most probably has tasks,
  so controllers cannot be enabled for its children). Empty -> the container id, a
  relative path, so runc puts containers next to itself (we saw
  /sys/fs/cgroup/memory/<runc's memory cgroup>/<id> on this host).
* systemd driver: "slice:prefix:name" -> <expanded slice>/<prefix>-<name>.scope; empty ->
  system.slice and prefix "runc". We have no systemd here, so the unit becomes a plain
  cgroupfs directory at the place systemd would put it.
"""

from __future__ import annotations

import posixpath

from hutch.errors import SpecError

FIELD = "linux.cgroupsPath"


def clean_path(path: str) -> str:
    """runc's utils.CleanPath: clean; a relative path cannot escape with '..'."""
    if path == "":
        return ""
    path = posixpath.normpath(path)
    if not path.startswith("/"):
        path = posixpath.relpath(posixpath.normpath("/" + path), "/")
    path = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX allows it to mean something else); we do not.
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path


def expand_slice(slice_name: str) -> str:
    """systemd's slice nesting: "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice"."""
    suffix = ".slice"
    if len(slice_name) < len(suffix) or not slice_name.endswith(suffix) or "/" in slice_name:
        raise SpecError(f"invalid slice name {slice_name!r} in cgroupsPath", field=FIELD)
    name = slice_name[: -len(suffix)]
    if name == "-":
        return "/"
    path, prefix = "", ""
    for comp in name.split("-"):
        if comp == "":
            raise SpecError(f"invalid slice name {slice_name!r} in cgroupsPath", field=FIELD)
        path += "/" + prefix + comp + suffix
        prefix += comp + "-"
    return path


def systemd_unit_path(cgroups_path: str | None, container_id: str) -> str:
    """The absolute cgroupfs path systemd would give the container's unit."""
    if not cgroups_path:
        parent, prefix, name = "", "runc", container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise SpecError(
                f'expected cgroupsPath to be of format "slice:prefix:name" for systemd '
                f"cgroups, got {cgroups_path!r} instead", field=FIELD)
        parent, prefix, name = parts
    if not name or "/" in name or name in (".", ".."):
        raise SpecError(f"invalid unit name {name!r} in cgroupsPath", field=FIELD)
    if "/" in prefix:
        raise SpecError(f"invalid unit prefix {prefix!r} in cgroupsPath", field=FIELD)
    slice_path = expand_slice(parent or "system.slice")
    # runc's getUnitName: a scope unless the name itself is a slice.
    if name.endswith(".slice"):
        unit = name
    elif prefix:
        unit = f"{prefix}-{name}.scope"
    else:
        unit = f"{name}.scope"
    return posixpath.join(slice_path, unit)


def inner_path(cgroups_path: str | None, container_id: str, systemd: bool = False) -> str:
    """The cleaned path: absolute (from each hierarchy's top) or relative (from ours)."""
    if systemd:
        return systemd_unit_path(cgroups_path, container_id)
    if cgroups_path:
        p = clean_path(cgroups_path)
    else:
        if not container_id:
            raise SpecError("no cgroupsPath and no container id to name the cgroup",
                            field=FIELD)
        p = clean_path(container_id)
    if p in ("", ".", "/"):
        # Joining the container into a hierarchy's root (or our own cgroup) and removing
        # it on delete would be a disaster; runc would do it, we refuse.
        raise SpecError(f"cgroupsPath {cgroups_path!r} names no cgroup of its own",
                        field=FIELD)
    return p


def join_in_hierarchy(mountpoint: str, mount_root: str, own_cgroup: str | None,
                      inner: str, *, v2_parent: bool = False) -> str:
    """Absolute host path of `inner` in a hierarchy mounted at `mountpoint`.

    own_cgroup is our cgroup in that hierarchy as /proc/self/cgroup shows it; it is
    relative to the hierarchy's real root, the mount shows `mount_root` of it.
    """
    if inner.startswith("/"):
        return posixpath.normpath(mountpoint + inner)
    own = own_cgroup or "/"
    rel = posixpath.relpath(own, mount_root) if own.startswith(mount_root) else "."
    if rel.startswith(".."):
        rel = "."  # our cgroup is outside what the mount shows (cgroupns): use its top
    if v2_parent:
        rel = posixpath.dirname(rel) if rel not in (".", "") else "."
    return posixpath.normpath(posixpath.join(mountpoint, rel, inner))
