"""The container's filesystem view: mounts, /dev, pivot_root, masked and read-only paths.

Runs inside the container's new mount namespace, in init, before the user process. Every
mount destination is resolved inside the rootfs with symlinks followed *as if the rootfs
were /* (the securejoin rule), so a hostile image or config cannot make us mount over a
host path (CVE-2021-30465 class).
"""

from __future__ import annotations

import os
import stat

from hutch.errors import SpecError
from hutch.linux import libc
from hutch.oci.spec import parse_mount_options

_MAX_SYMLINKS = 255

# runc's default devices (libcontainer/specconv AllowedDevices with a path): created in
# every container with a fresh /dev, mode 0666, root-owned.
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/tty", "c", 5, 0),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/random", "c", 1, 8),
)
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


def secure_join(root: str, unsafe: str) -> str:
    """Join `unsafe` onto `root`, resolving symlinks as if `root` were "/".

    The result is always `root` or below it. Components that do not exist are joined
    lexically (they will be created as real directories, never through a symlink).
    """
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        cand = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(cand)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(40, "too many levels of symbolic links", cand)
        target = os.readlink(cand)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def _mkdir_all(root: str, path: str, mode: int = 0o755) -> None:
    """Create `path` (already secure-joined under root) one component at a time, refusing
    to walk through anything that is not a real directory."""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return
    cur = root
    for part in rel.split("/"):
        cur = os.path.join(cur, part)
        try:
            os.mkdir(cur, mode)
        except FileExistsError:
            st = os.lstat(cur)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(20, "not a directory", cur) from None


def _create_target(root: str, dest: str, is_dir: bool) -> str:
    path = secure_join(root, dest)
    if is_dir:
        _mkdir_all(root, path)
    else:
        _mkdir_all(root, os.path.dirname(path))
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o755)
            os.close(fd)
        except FileExistsError:
            pass
    return path


class RootfsBuilder:
    """Prepares `rootfs` from a validated spec. One instance per container init."""

    def __init__(self, spec: dict, rootfs: str, bundle: str, *, in_userns: bool,
                 cgroup_paths: dict[str, str] | None = None, cgroupns: bool = False) -> None:
        self.spec = spec
        self.linux = spec.get("linux") or {}
        self.root = rootfs
        self.bundle = bundle
        self.in_userns = in_userns
        self.cgroup_paths = cgroup_paths or {}
        self.cgroupns = cgroupns
        self.setup_dev = not any(
            m.get("destination", "").rstrip("/") == "/dev" and _is_bind(m)
            for m in spec.get("mounts") or ()
        )

    # -- before pivot_root ---------------------------------------------------------------
    def prepare(self) -> None:
        prop = self.linux.get("rootfsPropagation")
        flags = _propagation_flags(prop) if prop else libc.MS_SLAVE | libc.MS_REC
        libc.mount(None, "/", None, flags)
        self._make_parent_private()
        libc.mount(self.root, self.root, "bind", libc.MS_BIND | libc.MS_REC)
        for i, m in enumerate(self.spec.get("mounts") or ()):
            try:
                self._mount(m)
            except OSError as e:
                raise SpecError(
                    f"mounting {m.get('source')!r} to rootfs at {m.get('destination')!r}: "
                    f"{e.strerror or e}", field=f"mounts[{i}]") from None
        if self.setup_dev:
            self._create_devices()
            self._dev_symlinks()
        else:
            for d in self.linux.get("devices") or ():
                self._device(d)
        cwd = (self.spec.get("process") or {}).get("cwd")
        if cwd:
            _mkdir_all(self.root, secure_join(self.root, cwd))

    def _make_parent_private(self) -> None:
        """pivot_root(2) fails if the new root's parent mount is shared; runc makes it
        private (rootfsParentMountPrivate)."""
        best, best_opt = "", ""
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mp = fields[4]
                if (self.root == mp or self.root.startswith(mp.rstrip("/") + "/")) and len(
                        mp) > len(best):
                    best = mp
                    sep = fields.index("-")
                    best_opt = " ".join(fields[6:sep])
        if "shared:" in best_opt:
            libc.mount(None, best, None, libc.MS_PRIVATE)

    def _mount(self, m: dict) -> None:
        dest = m["destination"]
        typ = m.get("type") or ""
        opts = parse_mount_options(m.get("options") or [])
        source = m.get("source") or ""
        if _is_bind(m):
            if not source.startswith("/"):
                source = os.path.join(self.bundle, source)
            st = os.stat(source)
            target = _create_target(self.root, dest, stat.S_ISDIR(st.st_mode))
            libc.mount(source, target, "bind", libc.MS_BIND | (opts.flags & libc.MS_REC))
            # The kernel ignores per-mount flags on the first bind: remount to apply them.
            extra = opts.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
            if extra:
                libc.mount(None, target, None,
                           extra | libc.MS_BIND | libc.MS_REMOUNT | self._locked(target))
        elif typ == "cgroup":
            target = _create_target(self.root, dest, True)
            self._mount_cgroup(target, opts.flags)
        else:
            target = _create_target(self.root, dest, True)
            if typ == "sysfs" and not self._has_ns("network"):
                # A sysfs mount is refused without a private network namespace: runc
                # binds the host's /sys instead.
                libc.mount("/sys", target, "bind", libc.MS_BIND | libc.MS_REC)
                if opts.flags & libc.MS_RDONLY:
                    libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT
                               | libc.MS_RDONLY | self._locked(target))
            else:
                libc.mount(source or typ, target, typ, opts.flags, opts.data or None)
        for p in opts.propagation_flags:
            libc.mount(None, target, None, p)

    def _locked(self, path: str) -> int:
        """Flags a user namespace may not clear on remount (runc's getMountFlags)."""
        return _statvfs_flags(path) if self.in_userns else 0

    def _has_ns(self, typ: str) -> bool:
        return any(n.get("type") == typ for n in self.linux.get("namespaces") or ())

    def _mount_cgroup(self, target: str, flags: int) -> None:
        """A `cgroup` mount: v1 gets a tmpfs with one directory per hierarchy (the real
        hierarchy when the container has a cgroup namespace, else a bind of its own
        cgroup, as runc does); v2 gets cgroup2 or a bind of the container's cgroup."""
        hier = _host_cgroup_mounts()
        if "cgroup2" in hier and len(hier) == 1:
            if self.cgroupns:
                libc.mount("cgroup2", target, "cgroup2", flags)
            else:
                src = self.cgroup_paths.get("") or hier["cgroup2"][0]
                libc.mount(src, target, "bind", libc.MS_BIND | libc.MS_REC)
                if flags & libc.MS_RDONLY:
                    libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | flags)
            return
        libc.mount("tmpfs", target, "tmpfs", flags & ~libc.MS_RDONLY, "mode=755")
        for name, (mountpoint, opts) in sorted(hier.items()):
            if name == "cgroup2":
                continue
            sub = os.path.join(target, os.path.basename(mountpoint))
            os.makedirs(sub, exist_ok=True)
            own = self.cgroup_paths.get(name) or self.cgroup_paths.get(
                name.replace("name=", ""), "")
            if self.cgroupns:
                libc.mount("cgroup", sub, "cgroup", flags, opts)
            elif own and os.path.isdir(own):
                libc.mount(own, sub, "bind", libc.MS_BIND | libc.MS_REC)
                libc.mount(None, sub, None, libc.MS_BIND | libc.MS_REMOUNT | flags)
            else:
                libc.mount(mountpoint, sub, "bind", libc.MS_BIND | libc.MS_REC)
                libc.mount(None, sub, None, libc.MS_BIND | libc.MS_REMOUNT | flags)
        # The tmpfs itself stays writable, as runc leaves it; the hierarchies carry "ro".

    def _create_devices(self) -> None:
        old = os.umask(0)
        try:
            paths = set()
            for d in self.linux.get("devices") or ():
                paths.add(d["path"])
                self._device(d)
            for path, typ, major, minor in DEFAULT_DEVICES:
                if path not in paths:
                    self._device({"path": path, "type": typ, "major": major, "minor": minor,
                                  "fileMode": 0o666, "uid": 0, "gid": 0})
        finally:
            os.umask(old)

    def _device(self, d: dict) -> None:
        path = secure_join(self.root, d["path"])
        _mkdir_all(self.root, os.path.dirname(path))
        if self.in_userns:
            # mknod is refused in a user namespace: bind the host's node (runc does).
            _create_target(self.root, d["path"], False)
            libc.mount(d["path"], path, "bind", libc.MS_BIND)
            return
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                "p": stat.S_IFIFO}[d.get("type", "c")]
        mode = d.get("fileMode", 0o666) & 0o7777
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mknod(path, kind | mode, os.makedev(d.get("major", 0), d.get("minor", 0)))
        os.chown(path, d.get("uid", 0), d.get("gid", 0))

    def _dev_symlinks(self) -> None:
        links = list(DEV_SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        for src, dst in links:
            try:
                os.symlink(src, os.path.join(self.root, dst.lstrip("/")))
            except FileExistsError:
                pass
        ptmx = os.path.join(self.root, "dev/ptmx")
        try:
            os.unlink(ptmx)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", ptmx)

    # -- the switch ----------------------------------------------------------------------
    def pivot(self, no_pivot: bool) -> None:
        os.chdir(self.root)
        if no_pivot:
            libc.mount(self.root, "/", None, libc.MS_MOVE)
            os.chroot(".")
            os.chdir("/")
            return
        # runc's trick: pivot_root(".", ".") stacks the old root on top of the new one;
        # detach it from there without needing a directory for it inside the rootfs.
        old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        new = os.open(self.root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(new)
            libc.pivot_root(".", ".")
            os.fchdir(old)
            libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
            libc.umount2(".", libc.MNT_DETACH)
            os.chdir("/")
        finally:
            os.close(old)
            os.close(new)

    # -- after pivot_root ----------------------------------------------------------------
    def finalize(self) -> None:
        if (self.spec.get("root") or {}).get("readonly"):
            try:
                libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY)
            except PermissionError:
                libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY
                           | self._locked("/"))

    def readonly_paths(self) -> None:
        for p in self.linux.get("readonlyPaths") or ():
            try:
                libc.mount(p, p, None, libc.MS_BIND | libc.MS_REC)
            except FileNotFoundError:
                continue
            libc.mount(None, p, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY
                       | libc.MS_REC | self._locked(p) | _statvfs_flags(p))

    def masked_paths(self) -> None:
        for p in self.linux.get("maskedPaths") or ():
            try:
                is_dir = stat.S_ISDIR(os.stat(p).st_mode)
            except FileNotFoundError:
                continue
            if is_dir:
                libc.mount("tmpfs", p, "tmpfs", libc.MS_RDONLY)
            else:
                libc.mount("/dev/null", p, None, libc.MS_BIND)


def _statvfs_flags(path: str) -> int:
    st = os.statvfs(path)
    flags = 0
    for bit, f in ((os.ST_NOSUID, libc.MS_NOSUID), (os.ST_NODEV, libc.MS_NODEV),
                   (os.ST_NOEXEC, libc.MS_NOEXEC)):
        if st.f_flag & bit:
            flags |= f
    return flags


def _is_bind(m: dict) -> bool:
    if m.get("type") == "bind":
        return True
    return any(o in ("bind", "rbind") for o in m.get("options") or ())


_PROPAGATION = {
    "shared": libc.MS_SHARED, "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE, "rslave": libc.MS_SLAVE | libc.MS_REC,
    "private": libc.MS_PRIVATE, "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE, "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}


def _propagation_flags(name: str) -> int:
    try:
        return _PROPAGATION[name]
    except KeyError:
        raise SpecError(f"invalid rootfsPropagation {name!r}",
                        field="linux.rootfsPropagation") from None


def _host_cgroup_mounts() -> dict[str, tuple[str, str]]:
    """controller name (or name=X, or cgroup2) -> (mountpoint, mount options)."""
    out: dict[str, tuple[str, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype == "cgroup2":
                out.setdefault("cgroup2", (fields[4], ""))
            elif fstype == "cgroup":
                superopts = fields[sep + 3].split(",")
                ctrls = [o for o in superopts if o not in ("rw", "ro") and "=" not in o
                         or o.startswith("name=")]
                opts = ",".join(ctrls)
                for c in ctrls:
                    out.setdefault(c, (fields[4], opts))
    # One mount may carry several controllers: key the mount once per mountpoint.
    seen: dict[str, tuple[str, str]] = {}
    for name, (mp, opts) in out.items():
        if mp not in {v[0] for v in seen.values()}:
            seen[name] = (mp, opts)
    return seen
