"""Linux capabilities: names, numbers, and applying the five OCI sets to this process.

Order matters (capabilities(7)): the bounding set is reduced first (needs CAP_SETPCAP),
then, after any setuid with PR_SET_KEEPCAPS held, capset() sets effective/permitted/
inheritable, and ambient capabilities are raised last (each must be permitted and
inheritable).
"""

from __future__ import annotations

from hutch.linux import libc

CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBERS = {name: i for i, name in enumerate(CAP_NAMES)}


def last_cap() -> int:
    """The highest capability this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


def unknown_names(names: list[str] | None) -> list[str]:
    return [n for n in names or () if n.upper() not in CAP_NUMBERS]


def mask(names: list[str] | None) -> int:
    """Bit mask of the known capabilities in `names` (unknown ones are skipped, as runc
    does with a warning: a newer spec may name capabilities this kernel lacks)."""
    top = last_cap()
    m = 0
    for n in names or ():
        num = CAP_NUMBERS.get(n.upper())
        if num is not None and num <= top:
            m |= 1 << num
    return m


def drop_bounding(keep: int) -> None:
    for num in range(last_cap() + 1):
        if not keep & (1 << num):
            libc.prctl(libc.PR_CAPBSET_DROP, num)


def set_ambient(amb: int) -> list[int]:
    """Raise the ambient set; return the capabilities the kernel refused. A capability
    must be permitted and inheritable to be ambient; runc only warns when it is not (its
    default spec lists ambient capabilities with an empty inheritable set)."""
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    refused = []
    for num in range(last_cap() + 1):
        if amb & (1 << num):
            try:
                libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, num)
            except PermissionError:
                refused.append(num)
    return refused
