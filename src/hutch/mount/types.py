"""`Mount`: one mount as data (containerd's mount.Mount), and the parsing of its options
into mount(2) flags, propagation changes and the data string.

Pure data, no I/O: snapshotters build these, the engine decides where (and in which mount
namespace) they are applied, or hands them to the runtime through config.json.
"""

from __future__ import annotations

from hutch.linux import libc
from hutch.util.record import field, record

# Option -> (clear?, flag), as containerd's parseMountOptions (mount/mount_linux.go) and
# mount(8). Anything not listed here is passed to the filesystem in the data string.
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, libc.MS_SYNCHRONOUS),
    "atime": (True, libc.MS_NOATIME),
    "bind": (False, libc.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, libc.MS_NODEV),
    "diratime": (True, libc.MS_NODIRATIME),
    "dirsync": (False, libc.MS_DIRSYNC),
    "exec": (True, libc.MS_NOEXEC),
    "mand": (False, libc.MS_MANDLOCK),
    "noatime": (False, libc.MS_NOATIME),
    "nodev": (False, libc.MS_NODEV),
    "nodiratime": (False, libc.MS_NODIRATIME),
    "noexec": (False, libc.MS_NOEXEC),
    "nomand": (True, libc.MS_MANDLOCK),
    "norelatime": (True, libc.MS_RELATIME),
    "nostrictatime": (True, libc.MS_STRICTATIME),
    "nosuid": (False, libc.MS_NOSUID),
    "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
    "rbind": (False, libc.MS_BIND | libc.MS_REC),
    "relatime": (False, libc.MS_RELATIME),
    "remount": (False, libc.MS_REMOUNT),
    "ro": (False, libc.MS_RDONLY),
    "rw": (True, libc.MS_RDONLY),
    "strictatime": (False, libc.MS_STRICTATIME),
    "suid": (True, libc.MS_NOSUID),
    "sync": (False, libc.MS_SYNCHRONOUS),
}

# Propagation changes are separate mount(2) calls after the mount itself.
_PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE,
    "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE,
    "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}

# Per-mount-point flags a read-only bind needs on its MS_REMOUNT: the first bind mount(2)
# ignores every flag but MS_BIND|MS_REC (mount(2), "Creating a bind mount").
BIND_REMOUNT_MASK = (libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
                     | libc.MS_NOATIME | libc.MS_NODIRATIME | libc.MS_RELATIME
                     | libc.MS_STRICTATIME | libc.MS_NOSYMFOLLOW)


@record(frozen=True)
class ParsedOptions:
    flags: int
    propagation: list[int]
    data: str


def parse_options(options: list[str]) -> ParsedOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation.append(_PROPAGATION[opt])
        else:
            data.append(opt)
    return ParsedOptions(flags, propagation, ",".join(data))


@record(frozen=True)
class Mount:
    """One mount: `type` ("overlay", "bind", "tmpfs", ...), `source` and `options` exactly
    as mount(8) and the OCI runtime spec's mounts[] take them. The target is not part of a
    Mount: the caller chooses it (containerd's mount.Mount)."""

    type: str
    source: str
    options: list[str] = field(default_factory=list)

    @property
    def readonly(self) -> bool:
        return parse_options(self.options).flags & libc.MS_RDONLY != 0

    def option(self, name: str) -> str | None:
        """The value of `name=value` among the options, or None."""
        prefix = name + "="
        for opt in self.options:
            if opt.startswith(prefix):
                return opt[len(prefix):]
        return None

    def to_spec(self, destination: str) -> dict[str, object]:
        """This mount as an OCI runtime spec mounts[] entry (config.json)."""
        return {
            "destination": destination,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }

    def to_dict(self) -> dict[str, object]:
        return {"type": self.type, "source": self.source, "options": list(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> Mount:
        return cls(str(d["type"]), str(d["source"]), [str(o) for o in d.get("options") or []])
