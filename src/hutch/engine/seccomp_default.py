"""docker's default seccomp profile, and moby's filtering of a profile for one container.

`DEFAULT_PROFILE` ports moby's profiles/seccomp/default.json (the JSON that moby generates
from profiles/seccomp/default_linux.go; ported from moby/moby at commit 00f3d189, the
docker 24/25 era list) as Python data, in moby's own profile format: entries may carry
`includes` / `excludes` with `caps`, `arches` and `minKernel`, and the architectures come
from an `archMap`. `build_profile()` turns such a profile into the OCI `linux.seccomp`
object for one container exactly as moby's seccomp.setupSeccomp does: an entry is kept
only if every included capability is in the container's bounding set, none of the
excluded ones is, the native arch matches, and the running kernel is new enough.

Not ported: moby's newer additions after that commit (cachestat, fchmodat2,
map_shadow_stack, ...) — a profile for a newer kernel is a later update of this list.
"""

from __future__ import annotations

import os

from hutch.errors import InvalidArgument

_ALLOW = "SCMP_ACT_ALLOW"

# The unconditional allow list: syscalls any container may make (moby default.json[0]).
_ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address
setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()

AF_VSOCK = 40
# CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
# CLONE_NEWCGROUP: clone() may not create namespaces without CAP_SYS_ADMIN.
CLONE_NAMESPACE_FLAGS = 0x7E020000
# personality(2) values docker allows: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
# and 0xffffffff (query the current persona).
_PERSONAS = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)


def _allow(names: list[str], **extra: object) -> dict:
    return {"names": names, "action": _ALLOW, **extra}


def _needs_cap(names: list[str], cap: str) -> dict:
    return _allow(names, includes={"caps": [cap]})


def _arg(index: int, value: int, op: str) -> list[dict]:
    return [{"index": index, "value": value, "op": op}]


DEFAULT_PROFILE: dict = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,  # EPERM
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        {"architecture": "SCMP_ARCH_MIPS64",
         "subArchitectures": ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]},
        {"architecture": "SCMP_ARCH_MIPS64N32",
         "subArchitectures": ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"]},
        {"architecture": "SCMP_ARCH_MIPSEL64",
         "subArchitectures": ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]},
        {"architecture": "SCMP_ARCH_MIPSEL64N32",
         "subArchitectures": ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"]},
        {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
        {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": []},
    ],
    "syscalls": [
        _allow(_ALLOWED),
        # ptrace became safe to allow in a container with kernel 4.8 (seccomp bypass fixed).
        _allow(["process_vm_readv", "process_vm_writev", "ptrace"],
               includes={"minKernel": "4.8"}),
        # Every socket family but AF_VSOCK (not namespaced: it would reach the host's).
        _allow(["socket"], args=_arg(0, AF_VSOCK, "SCMP_CMP_NE")),
        *(_allow(["personality"], args=_arg(0, p, "SCMP_CMP_EQ")) for p in _PERSONAS),
        _allow(["sync_file_range2", "swapcontext"], includes={"arches": ["ppc64le"]}),
        _allow(["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                "cacheflush", "set_tls"], includes={"arches": ["arm", "arm64"]}),
        _allow(["arch_prctl"], includes={"arches": ["amd64", "x32"]}),
        _allow(["modify_ldt"], includes={"arches": ["amd64", "x32", "x86"]}),
        _allow(["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
               includes={"arches": ["s390", "s390x"]}),
        _allow(["riscv_flush_icache"], includes={"arches": ["riscv64"]}),
        _needs_cap(["open_by_handle_at"], "CAP_DAC_READ_SEARCH"),
        _needs_cap(["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
                    "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
                    "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
                    "sethostname", "setns", "syslog", "umount", "umount2", "unshare"],
                   "CAP_SYS_ADMIN"),
        _allow(["clone"], args=_arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ"),
               excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        _allow(["clone"], args=_arg(1, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ"),
               comment="s390 parameter ordering for clone is different",
               includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        # clone3 passes its flags in a struct seccomp cannot read: answer ENOSYS so that
        # glibc falls back to clone(), which the rule above filters.
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        _needs_cap(["reboot"], "CAP_SYS_BOOT"),
        _needs_cap(["chroot"], "CAP_SYS_CHROOT"),
        _needs_cap(["delete_module", "init_module", "finit_module"], "CAP_SYS_MODULE"),
        _needs_cap(["acct"], "CAP_SYS_PACCT"),
        _needs_cap(["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                    "process_vm_writev", "ptrace"], "CAP_SYS_PTRACE"),
        _needs_cap(["iopl", "ioperm"], "CAP_SYS_RAWIO"),
        _needs_cap(["settimeofday", "stime", "clock_settime", "clock_settime64"], "CAP_SYS_TIME"),
        _needs_cap(["vhangup"], "CAP_SYS_TTY_CONFIG"),
        _needs_cap(["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
                   "CAP_SYS_NICE"),
        _needs_cap(["syslog"], "CAP_SYSLOG"),
        _needs_cap(["bpf"], "CAP_BPF"),
        _needs_cap(["perf_event_open"], "CAP_PERFMON"),
    ],
}

# uname -m -> the Go GOARCH names moby's includes/excludes use.
_GOARCH = {
    "x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
    "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
    "mips64": "mips64", "mips64el": "mips64le",
}
# uname -m -> libseccomp's native arch, as moby reads it from seccomp.GetNativeArch().
_SCMP_ARCH = {
    "x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "armv7l": "SCMP_ARCH_ARM",
    "armv6l": "SCMP_ARCH_ARM", "i686": "SCMP_ARCH_X86", "i386": "SCMP_ARCH_X86",
    "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
    "mips64": "SCMP_ARCH_MIPS64", "mips64el": "SCMP_ARCH_MIPSEL64",
}


def _kernel_tuple(release: str) -> tuple[int, int]:
    parts = []
    for piece in release.split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def parse_profile(text: str) -> dict:
    """A profile given as JSON text (`--security-opt seccomp=<json>`), in moby's format."""
    import json  # here: a custom profile is rare, and json costs ~1 ms to import

    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("decoding seccomp profile failed: not a JSON object")
    return profile


def build_profile(
    profile: dict,
    capabilities: list[str],
    *,
    machine: str | None = None,
    kernel: str | None = None,
) -> dict:
    """The OCI `linux.seccomp` object of `profile` for a container with `capabilities`
    (its bounding set) on `machine` (uname -m) with `kernel` (uname -r); moby's
    setupSeccomp."""
    machine = machine or os.uname().machine
    kernel_version = _kernel_tuple(kernel or os.uname().release)
    goarch = _GOARCH.get(machine, machine)
    caps = set(capabilities)

    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("seccomp profile: use either 'architectures' or 'archMap'")
    out: dict = {"defaultAction": profile.get("defaultAction", "")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    native = _SCMP_ARCH.get(machine)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            import copy

            out[key] = copy.deepcopy(profile[key])

    syscalls = []
    for i, call in enumerate(profile.get("syscalls") or []):
        if not isinstance(call, dict):
            raise InvalidArgument(f"seccomp profile: syscalls[{i}] must be an object")
        if _skip(call.get("excludes") or {}, caps, goarch, kernel_version, exclude=True):
            continue
        if _skip(call.get("includes") or {}, caps, goarch, kernel_version, exclude=False):
            continue
        names = list(call.get("names") or [])
        if call.get("name"):  # moby's legacy single-name form
            if names:
                raise InvalidArgument(
                    f"seccomp profile: syscalls[{i}]: use either 'name' or 'names'")
            names = [call["name"]]
        rule: dict = {"names": names, "action": call.get("action", "")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [
                {"index": a.get("index", 0), "value": a.get("value", 0),
                 "valueTwo": a.get("valueTwo", 0), "op": a.get("op", "")}
                for a in call["args"]
            ]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def _skip(cond: dict, caps: set[str], goarch: str, kernel: tuple[int, int], *,
          exclude: bool) -> bool:
    """moby: an `excludes` matches when ANY listed arch or cap is present (or the kernel is
    at least minKernel); an `includes` fails when the arch is not listed, ANY listed cap is
    missing, or the kernel is older than minKernel."""
    arches = cond.get("arches") or []
    want_caps = cond.get("caps") or []
    min_kernel = cond.get("minKernel")
    newer = min_kernel is not None and kernel >= _kernel_tuple(str(min_kernel))
    if exclude:
        return goarch in arches or any(c in caps for c in want_caps) or newer
    if arches and goarch not in arches:
        return True
    if any(c not in caps for c in want_caps):
        return True
    return min_kernel is not None and not newer
