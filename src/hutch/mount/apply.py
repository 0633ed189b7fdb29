"""Apply and undo lists of `Mount`s: the only place in hutch above `linux` that calls
mount(2)/umount2(2). All kernel access goes through a `Syscalls` object so unit tests can
record the calls without root.
"""

from __future__ import annotations

import errno
import os
import time

from hutch.errors import (
    FailedPrecondition,
    HutchError,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from hutch.linux import libc
from hutch.mount.mountinfo import mounts_under, read_mountinfo
from hutch.mount.types import BIND_REMOUNT_MASK, Mount, parse_options

# mount(2) copies at most one page of option data (copy_mount_options); overlay's lowerdir
# list is the one option that outgrows it (a 128-layer image).
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class Syscalls:
    """The kernel, as mount_all/unmount need it. Replace with a recorder in unit tests."""

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None) -> None:
        libc.mount(source, target, fstype, flags, data)

    def mount_in(self, cwd: str, source: str | None, target: str, fstype: str | None,
                 flags: int, data: str | None) -> None:
        """mount(2) from a helper process whose working directory is `cwd`, so relative
        paths in `data` resolve against it. A child, not our own chdir: the cwd is shared
        by every thread of this process (containerd's mountAt forks for the same reason).
        """
        pid = os.fork()
        if pid == 0:  # child: only chdir + mount, then _exit (no Python clean-up)
            code = 0
            try:
                os.chdir(cwd)
                libc.mount(source, target, fstype, flags, data)
            except OSError as e:
                code = e.errno or 255
            except BaseException:
                code = 255
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err = code if code > 0 else errno.EINTR
            raise OSError(err, f"mount: {os.strerror(err)}", target)

    def umount2(self, target: str, flags: int) -> None:
        libc.umount2(target, flags)

    def mountinfo(self) -> str:
        return read_mountinfo()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


_ERRNO_CLASS: dict[int, type[HutchError]] = {
    errno.EPERM: PermissionDenied,
    errno.EACCES: PermissionDenied,
    errno.ENOENT: NotFound,
    errno.ENOTDIR: NotFound,
    errno.ENODEV: NotSupported,
    errno.EBUSY: FailedPrecondition,
    errno.EINVAL: InvalidArgument,
}
_HINTS = {
    errno.EPERM: "mounting needs CAP_SYS_ADMIN in the mount namespace (run as root)",
    errno.ENODEV: "the kernel lacks this filesystem type (modprobe it, or pick another "
                  "snapshotter)",
}


def _error(op: str, target: str, exc: OSError) -> HutchError:
    cls = _ERRNO_CLASS.get(exc.errno or 0, HutchError)
    return cls(f"{op} {target}: {os.strerror(exc.errno or 0)}", hint=_HINTS.get(exc.errno or 0),
               op=op, path=target, errno=exc.errno)


def split_lowerdir(value: str) -> list[str]:
    """overlay's lowerdir list: ':'-separated, '\\:' escapes a colon inside a path."""
    out, cur, i = [], [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if c == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def compact_lowerdir(data: str) -> tuple[str | None, str]:
    """Shorten an overlay data string by making lowerdir entries relative to their common
    parent directory. Returns (that directory or None, the new data); the mount must then
    run with that directory as cwd (containerd mount_linux.go compactLowerdirOption)."""
    opts = data.split(",")
    idx = next((i for i, o in enumerate(opts) if o.startswith("lowerdir=")), None)
    if idx is None:
        return None, data
    dirs = split_lowerdir(opts[idx][len("lowerdir="):])
    if len(dirs) < 2 or not all(d.startswith("/") for d in dirs):
        return None, data
    common = os.path.commonpath(dirs)
    if common == "/":
        return None, data
    rel = [os.path.relpath(d, common).replace(":", "\\:") for d in dirs]
    opts[idx] = "lowerdir=" + ":".join(rel)
    return common, ",".join(opts)


def _mount_one(m: Mount, target: str, sys: Syscalls) -> None:
    p = parse_options(m.options)
    flags = p.flags
    is_bind = bool(flags & libc.MS_BIND) or m.type in ("bind", "rbind")
    if m.type == "rbind":
        flags |= libc.MS_BIND | libc.MS_REC
    elif m.type == "bind":
        flags |= libc.MS_BIND
    fstype = None if is_bind else m.type
    data = p.data
    cwd = None
    if m.type == "overlay" and len(data.encode()) >= PAGE_SIZE:
        cwd, data = compact_lowerdir(data)
        if len(data.encode()) >= PAGE_SIZE:
            n = len(split_lowerdir(m.option("lowerdir") or ""))
            raise InvalidArgument(
                f"mount overlay on {target}: options are {len(data)} bytes for {n} lower "
                f"layers, over the {PAGE_SIZE}-byte mount data limit",
                hint="keep snapshotter roots short, or flatten the image", path=target)
    op = f"mount {m.type}"
    try:
        if cwd is not None:
            sys.mount_in(cwd, m.source, target, fstype, flags, data or None)
        else:
            sys.mount(m.source, target, fstype, flags, data or None)
    except OSError as e:
        raise _error(op, target, e) from e
    try:
        # A bind mount ignores every flag but MS_BIND|MS_REC: read-only and the other
        # per-mount flags take a second, remount call (mount(2), "Creating a bind mount").
        if is_bind and flags & BIND_REMOUNT_MASK:
            sys.mount(None, target, None,
                      libc.MS_REMOUNT | libc.MS_BIND | (flags & BIND_REMOUNT_MASK), None)
        for pflag in p.propagation:
            sys.mount(None, target, None, pflag, None)
    except OSError as e:
        try:
            sys.umount2(target, libc.MNT_DETACH)
        except OSError:
            pass
        raise _error(op, target, e) from e


def mount_all(mounts: list[Mount], target: str, *, syscalls: Syscalls | None = None) -> None:
    """Mount every entry of `mounts` on `target`, in order (each stacks on the previous,
    as containerd's mount.All). On failure, the ones already applied are undone."""
    sys = syscalls or Syscalls()
    target = os.path.abspath(target)
    done = 0
    try:
        for m in mounts:
            _mount_one(m, target, sys)
            done += 1
    except BaseException:
        for _ in range(done):
            try:
                sys.umount2(target, libc.MNT_DETACH)
            except OSError:
                pass
        raise


def _umount(target: str, flags: int, sys: Syscalls, retries: int, delay: float) -> None:
    for attempt in range(retries + 1):
        try:
            sys.umount2(target, flags)
            return
        except OSError as e:
            # EBUSY is often transient: a process that had its cwd there is exiting.
            if e.errno == errno.EBUSY and attempt < retries:
                sys.sleep(delay)
                continue
            raise


def unmount(target: str, *, detach: bool = False, syscalls: Syscalls | None = None,
            retries: int = 50, delay: float = 0.02) -> None:
    """umount2(target); retries EBUSY for about a second (`retries` x `delay`);
    `detach=True` is MNT_DETACH (lazy). Raises InvalidArgument if target is not a mount
    point, NotFound if it does not exist."""
    sys = syscalls or Syscalls()
    flags = libc.MNT_DETACH if detach else 0
    try:
        _umount(target, flags, sys, retries, delay)
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise InvalidArgument(f"unmount {target}: not a mount point", path=target) from e
        err = _error("unmount", target, e)
        if e.errno == errno.EBUSY:
            err.hint = "still in use; unmount(detach=True) unmounts lazily"
        raise err from e


def unmount_all(target: str, *, detach: bool = False, syscalls: Syscalls | None = None,
                retries: int = 50, delay: float = 0.02) -> None:
    """Unmount everything at or below `target`: submounts deepest first, then every mount
    stacked on `target` itself until it is a plain directory again. Quiet if nothing is
    mounted there or the path does not exist."""
    sys = syscalls or Syscalls()
    real = os.path.realpath(target)
    flags = libc.MNT_DETACH if detach else 0
    if detach:
        # A lazy unmount takes every mount below with the one it detaches: when `target`
        # is a mount point (a container's rootfs always is) mountinfo is not needed.
        try:
            _umount(real, flags, sys, retries, delay)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            if e.errno != errno.EINVAL:
                raise _error("unmount", real, e) from e
        else:
            return _unmount_stack(real, flags, sys, retries, delay)
    subs = list(enumerate(mounts_under(real, sys.mountinfo())))
    # Deepest first; at one mount point, the last mounted (top of the stack) first.
    subs.sort(key=lambda im: (im[1].mountpoint.rstrip("/").count("/"), im[0]), reverse=True)
    for _, m in subs:
        try:
            _umount(m.mountpoint, flags, sys, retries, delay)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):  # gone with a detached parent
                continue
            raise _error("unmount", m.mountpoint, e) from e
    # Safety net for mounts mountinfo did not show us (another namespace's view).
    _unmount_stack(real, flags, sys, retries, delay)


def _unmount_stack(real: str, flags: int, sys: Syscalls, retries: int,
                   delay: float) -> None:
    """Unmount at `real` until nothing is mounted there."""
    for _ in range(256):
        try:
            _umount(real, flags, sys, retries, delay)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise _error("unmount", real, e) from e
    raise FailedPrecondition(f"unmount {real}: still mounted after 256 unmounts", path=real)
