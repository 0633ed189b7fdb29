"""ctypes wrappers for the syscalls the standard library lacks (Python 3.11 has no
os.unshare/os.setns).

Every wrapper keeps errno (CDLL(use_errno=True)), retries EINTR and raises OSError naming
the call and the path. Nothing here imports anything beyond the standard library, so the
runtime's start-up path stays cheap.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)

# --- constants (include/uapi/linux/sched.h, mount.h, prctl.h) -----------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2 resolve flags (include/uapi/linux/openat2.h)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYSCALLS = {
    # name: (x86_64, aarch64)
    "pivot_root": (155, 41),
    "capget": (125, 90),
    "capset": (126, 91),
    "setns": (308, 268),
    "unshare": (272, 97),
    "openat2": (437, 437),
    "close_range": (436, 436),
    "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424),
    "keyctl": (250, 219),
    "clone3": (435, 435),
    "seccomp": (317, 277),
}
_ARCH_INDEX = {"x86_64": 0, "aarch64": 1}.get(os.uname().machine, 0)


def syscall_number(name: str) -> int:
    return _SYSCALLS[name][_ARCH_INDEX]


def _enc(path: str | bytes | None) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


def _call(name: str, fn, *args, path: str | bytes | None = None) -> int:
    """Call fn(*args), retrying EINTR; raise OSError(errno, 'name: strerror', path)."""
    while True:
        ret = fn(*args)
        if ret != -1:
            return ret
        err = ctypes.get_errno()
        if err == errno.EINTR:
            continue
        raise OSError(err, f"{name}: {os.strerror(err)}", os.fsdecode(path) if path else None)


_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _call("mount", _libc.mount, _enc(source), _enc(target), _enc(fstype),
          ctypes.c_ulong(flags), _enc(data), path=target)


def umount2(target: str, flags: int = 0) -> None:
    _call("umount2", _libc.umount2, _enc(target), ctypes.c_int(flags), path=target)


def unshare(flags: int) -> None:
    _call("unshare", _libc.unshare, ctypes.c_int(flags))


def setns(fd: int, nstype: int = 0, path: str | None = None) -> None:
    _call("setns", _libc.setns, ctypes.c_int(fd), ctypes.c_int(nstype), path=path)


def pivot_root(new_root: str, put_old: str) -> None:
    _call("pivot_root", _syscall, ctypes.c_long(syscall_number("pivot_root")),
          _enc(new_root), _enc(put_old), path=new_root)


def sethostname(name: str) -> None:
    b = name.encode()
    _call("sethostname", _libc.sethostname, b, ctypes.c_size_t(len(b)))


def setdomainname(name: str) -> None:
    b = name.encode()
    _call("setdomainname", _libc.setdomainname, b, ctypes.c_size_t(len(b)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _call("prctl", _libc.prctl, ctypes.c_int(option), ctypes.c_ulong(arg2),
                 ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT) -> int:
    """openat2(2): resolve `path` as if dirfd were the root; never escapes it."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _call("openat2", _syscall, ctypes.c_long(syscall_number("openat2")),
                 ctypes.c_int(dirfd), _enc(path), ctypes.byref(how),
                 ctypes.c_size_t(ctypes.sizeof(how)), path=path)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _call("close_range", _syscall, ctypes.c_long(syscall_number("close_range")),
          ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags))


CLOSE_RANGE_CLOEXEC = 1 << 2


def pidfd_open(pid: int) -> int:
    return _call("pidfd_open", _syscall, ctypes.c_long(syscall_number("pidfd_open")),
                 ctypes.c_int(pid), ctypes.c_uint(0))


# --- capabilities (include/uapi/linux/capability.h) -------------------------------------
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's effective/permitted/inheritable sets (bit masks of cap numbers)."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _call("capset", _syscall, ctypes.c_long(syscall_number("capset")),
          ctypes.byref(hdr), data)


def capget(pid: int = 0) -> tuple[int, int, int]:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    _call("capget", _syscall, ctypes.c_long(syscall_number("capget")),
          ctypes.byref(hdr), data)
    eff = data[0].effective | (data[1].effective << 32)
    perm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, perm, inh


# --- clone3 (include/uapi/linux/sched.h) --------------------------------------------------
CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(2) whose child is born in the cgroup2 directory `cgroup_fd` (clone3 with
    CLONE_INTO_CGROUP): no migration afterwards, so none of the RCU grace period that
    writing to cgroup.procs costs. Returns 0 in the child, its pid in the parent.

    A raw syscall, so Python's own after-fork bookkeeping does not run in the child: only
    for a single-threaded caller whose child goes on to exec or _exit.
    """
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=_SIGCHLD, cgroup=cgroup_fd)
    return _call("clone3", _syscall, ctypes.c_long(syscall_number("clone3")),
                 ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter_prepared(program: bytes):
    """A function(flags) that loads the BPF `program` (struct sock_filter[]) with
    seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog). Everything is allocated now, so the
    call itself does no Python-side work that a filter could get in the way of."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    nr = ctypes.c_long(syscall_number("seccomp"))
    set_mode_filter = ctypes.c_long(1)

    def load(flags: int) -> None:
        _call("seccomp", _syscall, nr, set_mode_filter, ctypes.c_long(flags),
              ctypes.byref(prog))

    load.keep = (buf, prog)  # the program must outlive every call

    return load
