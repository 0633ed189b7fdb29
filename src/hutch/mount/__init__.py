"""Mounts as data (type, source, options) and the code that applies and undoes them.

May import: hutch.linux, hutch.oci, hutch.util, hutch.errors.
"""

from hutch.mount.apply import Syscalls, mount_all, unmount, unmount_all
from hutch.mount.mountinfo import MountInfo, lookup, mounts_under, parse_mountinfo
from hutch.mount.types import Mount, parse_options

__all__ = [
    "Mount", "MountInfo", "Syscalls", "lookup", "mount_all", "mounts_under",
    "parse_mountinfo", "parse_options", "unmount", "unmount_all",
]
