"""The OCI runtime spec (config.json): load, validate, default, and parse mount options.

Pure data. The only I/O is `load_spec` reading <bundle>/config.json and `validate`
(through `resolve_rootfs`) looking at the rootfs directory. Standard library only, and
only cheap modules: this runs before fork on every `create`.

Validation follows what runc does in libcontainer/specconv and
libcontainer/configs/validate, plus the runtime-spec's own MUSTs, and refuses anything
hostile (NUL bytes, paths escaping the root) before the first syscall. It deliberately
leaves out `linux.seccomp` (hutch.linux.seccomp.validate) and `linux.resources`
(hutch.runtime.cgroups.validate_resources). Unknown properties are ignored, as the
runtime-spec requires ("MUST NOT generate an error if they encounter an unknown
property").

Error fields name the offending key with JSON-path-like syntax: "process.args",
"mounts[2].destination", 'linux.sysctl["net.ipv4.ip_forward"]'.
"""

from __future__ import annotations

import os

from hutch.errors import InvalidArgument, NotFound, PermissionDenied, SpecError
from hutch.util import fastjson

__all__ = [
    "MAX_CONFIG_SIZE",
    "MountOptions",
    "default_spec",
    "load_spec",
    "namespace_flags",
    "parse_mount_options",
    "resolve_rootfs",
    "validate",
    "validate_container_id",
]

MAX_CONFIG_SIZE = 4 << 20  # a real config.json is a few KiB; a docker seccomp profile ~30 KiB

# --- kernel constants, copied (not imported from hutch.linux) so that oci stays pure -----
# include/uapi/linux/sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# include/uapi/linux/mount.h (same values as hutch/linux/libc.py)
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
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# mount_setattr(2) attributes, for the recursive "r*" options (kernel >= 5.12)
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR__ATIME = 0x00000070
MOUNT_ATTR_RELATIME = 0x00000000
MOUNT_ATTR_NOATIME = 0x00000010
MOUNT_ATTR_STRICTATIME = 0x00000020
MOUNT_ATTR_NODIRATIME = 0x00000080
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000

#: OCI namespace type -> CLONE_* flag (runtime-spec config-linux.md#namespaces).
namespace_flags: dict[str, int] = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

# --- mount options (runc libcontainer/specconv parseMountOptions) -------------------------
# option -> (clear?, MS_* flag). "defaults" is absent on purpose: runc maps it to 0 and
# then, because the flag is 0, passes it on as fs data, which tmpfs refuses; it means
# "no flags", so we drop it (as crun does).
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),  # kernel >= 5.10
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "symfollow": (True, MS_NOSYMFOLLOW),
    "sync": (False, MS_SYNCHRONOUS),
}

#: propagation option -> flags for a separate mount(2) call after the mount itself.
MOUNT_PROPAGATION: dict[str, int] = {
    "rprivate": MS_PRIVATE | MS_REC,
    "private": MS_PRIVATE,
    "rslave": MS_SLAVE | MS_REC,
    "slave": MS_SLAVE,
    "rshared": MS_SHARED | MS_REC,
    "shared": MS_SHARED,
    "runbindable": MS_UNBINDABLE | MS_REC,
    "unbindable": MS_UNBINDABLE,
}

#: recursive option -> (clear?, MOUNT_ATTR_*), applied with mount_setattr(AT_RECURSIVE).
MOUNT_REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME),
    "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),  # kernel >= 5.14
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}


class MountOptions:
    """A mount's "options" split the way mount(2) wants them.

    `flags` go to the mount call, `clear_flags` are flags the options explicitly turned
    off (matters for bind remounts, which otherwise inherit them), each of
    `propagation_flags` is one more mount(2) call (MS_PRIVATE|MS_REC, ...),
    `rec_attr_set`/`rec_attr_clr` are for mount_setattr(2) with AT_RECURSIVE (the "r*"
    options; the mounter raises NotSupported if it cannot apply them), `data` is what
    the filesystem parses ("mode=755,size=65536k"). `tmpcopyup` is runc's extension
    (copy the shadowed directory's content into a new tmpfs); `idmap` is None, "idmap"
    or "ridmap".

    A hand-written value class rather than a dataclass: dataclasses imports inspect,
    ~10 ms on the create path.
    """

    __slots__ = (
        "flags",
        "clear_flags",
        "propagation_flags",
        "rec_attr_set",
        "rec_attr_clr",
        "data",
        "tmpcopyup",
        "idmap",
    )

    def __init__(
        self,
        flags: int = 0,
        clear_flags: int = 0,
        propagation_flags: list[int] | None = None,
        rec_attr_set: int = 0,
        rec_attr_clr: int = 0,
        data: str = "",
        tmpcopyup: bool = False,
        idmap: str | None = None,
    ) -> None:
        self.flags = flags
        self.clear_flags = clear_flags
        self.propagation_flags = [] if propagation_flags is None else propagation_flags
        self.rec_attr_set = rec_attr_set
        self.rec_attr_clr = rec_attr_clr
        self.data = data
        self.tmpcopyup = tmpcopyup
        self.idmap = idmap

    @property
    def has_rec_attr(self) -> bool:
        return bool(self.rec_attr_set or self.rec_attr_clr)

    def _astuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MountOptions):
            return NotImplemented
        return self._astuple() == other._astuple()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq=True

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"MountOptions({fields})"


def parse_mount_options(options: list[str] | None) -> MountOptions:
    """Split OCI mount options into flags, propagation, recursive attributes and data.

    Later options win over earlier ones ("ro,rw" is rw). Anything not in the tables is
    filesystem data, joined with "," in the given order.
    """
    m = MountOptions()
    data: list[str] = []
    for o in options or ():
        f = MOUNT_FLAGS.get(o)
        if f is not None:
            clear, flag = f
            if clear:
                m.flags &= ~flag
                m.clear_flags |= flag
            else:
                m.flags |= flag
                m.clear_flags &= ~flag
            continue
        p = MOUNT_PROPAGATION.get(o)
        if p is not None:
            m.propagation_flags.append(p)
            continue
        r = MOUNT_REC_ATTRS.get(o)
        if r is not None:
            clear, attr = r
            if clear:
                m.rec_attr_clr |= attr
                m.rec_attr_set &= ~attr
            else:
                m.rec_attr_set |= attr
                m.rec_attr_clr &= ~attr
                if attr & MOUNT_ATTR__ATIME == attr:
                    # mount_setattr(2): an access-time setting in attr_set needs
                    # MOUNT_ATTR__ATIME in attr_clr too.
                    m.rec_attr_clr |= MOUNT_ATTR__ATIME
            continue
        if o == "defaults":
            continue
        if o == "tmpcopyup":
            m.tmpcopyup = True
        elif o in ("idmap", "ridmap"):
            m.idmap = o
        else:
            data.append(o)
    m.data = ",".join(data)
    return m


# --- container ids -------------------------------------------------------------------------
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
MAX_ID_LENGTH = 1024


def validate_container_id(id: str) -> None:
    """runc's rule: ^[\\w+.-]+$ (ASCII), not "." or ".."; we also cap the length.

    The id becomes a directory name under the state root, so "/" or ".." would escape it.
    """
    if not isinstance(id, str) or not id:
        raise InvalidArgument("container id must not be empty")
    if len(id) > MAX_ID_LENGTH:
        raise InvalidArgument(f"container id is too long ({len(id)} > {MAX_ID_LENGTH} characters)")
    if id in (".", ".."):
        raise InvalidArgument(f"invalid container id {id!r}")
    if not _ID_CHARS.issuperset(id):
        raise InvalidArgument(
            f"invalid container id {_short(id)}: only letters, digits and _ + - . are allowed"
        )


# --- loading -------------------------------------------------------------------------------
def _refuse_constant(name: str) -> None:
    # Python's json accepts NaN/Infinity; JSON (and Go) do not.
    raise ValueError(f"{name} is not valid JSON")


def load_spec(bundle: str) -> dict:
    """Read and parse <bundle>/config.json. Checks only that it is a sane JSON object."""
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file (is {bundle!r} an OCI bundle?)", path=path) from None
    except NotADirectoryError:
        raise NotFound(f"{path}: bundle {bundle!r} is not a directory", path=path) from None
    except PermissionError:
        raise PermissionDenied(f"{path}: permission denied", path=path) from None
    except OSError as e:  # ELOOP, ENAMETOOLONG, EIO...
        raise SpecError(f"{path}: cannot open: {e.strerror}", path=path) from None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000:  # S_ISREG; a FIFO or device would block/flood
            raise SpecError(f"{path}: not a regular file", field=None, path=path)
        if st.st_size > MAX_CONFIG_SIZE:
            raise SpecError(
                f"{path}: too large ({st.st_size} bytes, limit {MAX_CONFIG_SIZE})", path=path
            )
        # Read at most limit+1 bytes: the file may grow after fstat.
        chunks = []
        left = MAX_CONFIG_SIZE + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}", path=path) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_SIZE:
        raise SpecError(f"{path}: too large (limit {MAX_CONFIG_SIZE} bytes)", path=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 (byte {e.start})", path=path) from None
    try:
        spec = fastjson.loads(text)
    except (ValueError, RecursionError):
        spec = _slow_parse(text, path)
    if not isinstance(spec, dict):
        raise SpecError(
            f"{path}: top level must be a JSON object, not {_json_type(spec)}", path=path
        )
    return spec


def _slow_parse(text: str, path: str) -> object:
    """Parse again with the json module for a precise message (line and column)."""
    import json

    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise SpecError(
            f"{path}: invalid JSON: {e.msg} (line {e.lineno} column {e.colno})", path=path
        ) from None
    except (ValueError, RecursionError) as e:
        raise SpecError(f"{path}: invalid JSON: {_one_line(str(e))}", path=path) from None


# --- default spec (what `runc spec` writes, runc 1.1.5) ----------------------------------
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False, *, uid: int | None = None, gid: int | None = None) -> dict:
    """A fresh copy of the spec `runc spec` (or `runc spec --rootless`) writes.

    Rootless maps container root to the caller's effective uid/gid (or `uid`/`gid`),
    drops the network namespace, adds a user namespace, bind-mounts /sys (sysfs cannot
    be mounted without a network namespace of one's own), drops gid=5 from devpts and
    the cgroup device rules (runc's specconv.ToRootless).
    """
    devpts_options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    sys_mount: dict = {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    }
    if rootless:
        devpts_options.pop()  # gid 5 (tty) is not mapped in a rootless container
        sys_mount = {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    spec: dict = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_DEFAULT_CAPS),
                "effective": list(_DEFAULT_CAPS),
                "permitted": list(_DEFAULT_CAPS),
                "ambient": list(_DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": devpts_options,
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            sys_mount,
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {},
    }
    linux = spec["linux"]
    if rootless:
        host_uid = os.geteuid() if uid is None else uid
        host_gid = os.getegid() if gid is None else gid
        linux["uidMappings"] = [{"containerID": 0, "hostID": host_uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": host_gid, "size": 1}]
        names = ["pid", "ipc", "uts", "mount", "user"]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        names = ["pid", "network", "ipc", "uts", "mount"]
    linux["namespaces"] = [{"type": n} for n in names]
    linux["maskedPaths"] = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ]
    linux["readonlyPaths"] = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    return spec


# --- validation ----------------------------------------------------------------------------
UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MAX_ID_MAP_EXTENTS = 340  # kernel UID_GID_MAP_MAX_EXTENTS since 4.15

RLIMIT_NAMES = frozenset(
    "RLIMIT_" + n
    for n in (
        "AS CORE CPU DATA FSIZE LOCKS MEMLOCK MSGQUEUE NICE NOFILE NPROC RSS RTPRIO "
        "RTTIME SIGPENDING STACK"
    ).split()
)
ROOTFS_PROPAGATIONS = frozenset(MOUNT_PROPAGATION)
DEVICE_TYPES = frozenset("cbup")
HOOK_NAMES = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
IOPRIO_CLASSES = frozenset(("IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"))
SCHED_POLICIES = frozenset(
    (
        "SCHED_OTHER",
        "SCHED_FIFO",
        "SCHED_RR",
        "SCHED_BATCH",
        "SCHED_ISO",
        "SCHED_IDLE",
        "SCHED_DEADLINE",
    )
)
PERSONALITY_DOMAINS = frozenset(("LINUX", "LINUX32"))
# sysctls namespaced by the IPC namespace (runc validate.sysctl), besides fs.mqueue.*
_IPC_SYSCTLS = frozenset(
    (
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    )
)


def resolve_rootfs(spec: dict, bundle: str) -> str:
    """The absolute, symlink-free path of the container's root filesystem.

    root.path is relative to the bundle unless absolute. Symlinks are resolved (the
    runtime mounts the result, never the name); runc refuses a symlinked rootfs instead,
    we accept it because nothing downstream uses the unresolved name.
    """
    root = spec.get("root")
    if root is None:
        raise SpecError("root: required (the container's root filesystem)", field="root")
    if not isinstance(root, dict):
        raise SpecError(f"root: must be an object, not {_json_type(root)}", field="root")
    path = root.get("path")
    if path is None or path == "":
        raise SpecError("root.path: required", field="root.path")
    if not isinstance(path, str):
        raise SpecError(f"root.path: must be a string, not {_json_type(path)}", field="root.path")
    if "\0" in path:
        raise SpecError("root.path: contains a NUL byte", field="root.path")
    full = os.path.realpath(os.path.join(os.path.abspath(bundle), path))
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise SpecError(f"root.path: {full} does not exist", field="root.path") from None
    except OSError as e:
        raise SpecError(f"root.path: {full}: {e.strerror}", field="root.path") from None
    if (st.st_mode & 0o170000) != 0o040000:  # S_ISDIR
        raise SpecError(f"root.path: {full} is not a directory", field="root.path")
    return full


def validate(spec: dict, bundle: str, *, require_process: bool = True) -> None:
    """Raise SpecError (with `field`) for anything malformed or hostile in `spec`.

    `require_process` is True for create/run (the spec's "process" is REQUIRED then).
    """
    if not isinstance(spec, dict):
        raise SpecError(f"spec must be a JSON object, not {_json_type(spec)}")
    _check_no_nul(spec)

    version = spec.get("ociVersion")
    if version is None:
        raise SpecError("ociVersion: required", field="ociVersion")
    _str(version, "ociVersion")
    if not version.startswith("1.") or not version[2:3].isdigit():
        raise SpecError(
            f"ociVersion: {_short(version)} is not supported (want 1.x)", field="ociVersion"
        )

    resolve_rootfs(spec, bundle)
    _opt_bool(spec["root"], "readonly", "root.readonly")

    linux = spec.get("linux")
    if linux is None:
        linux = {}
    else:
        _obj(linux, "linux")
    namespaces = _check_namespaces(linux)

    process = spec.get("process")
    if process is None:
        if require_process:
            raise SpecError("process: required to create a container", field="process")
    else:
        _check_process(process)

    for key in ("hostname", "domainname"):
        value = spec.get(key)
        if value is None:
            continue
        _str(value, key)
        if value and "uts" not in namespaces:
            raise SpecError(
                f"{key}: cannot be set without a private UTS namespace (add uts to linux.namespaces)",
                field=key,
            )
    if len(spec.get("hostname") or "") > 64:  # HOST_NAME_MAX
        raise SpecError("hostname: longer than 64 characters", field="hostname")

    _check_mounts(spec.get("mounts"))
    _check_hooks(spec.get("hooks"))
    annotations = spec.get("annotations")
    if annotations is not None:
        _obj(annotations, "annotations")
        for k, v in annotations.items():
            _str(v, f"annotations[{_key(k)}]")
    _check_linux(linux, namespaces)


def _check_namespaces(linux: dict) -> dict[str, str]:
    """Validate linux.namespaces; return type -> path ("" for a new namespace)."""
    result: dict[str, str] = {}
    nss = linux.get("namespaces")
    if nss is None:
        return result
    _list(nss, "linux.namespaces")
    for i, ns in enumerate(nss):
        field = f"linux.namespaces[{i}]"
        _obj(ns, field)
        t = ns.get("type")
        if t is None:
            raise SpecError(f"{field}.type: required", field=f"{field}.type")
        _str(t, f"{field}.type")
        if t not in namespace_flags:
            raise SpecError(
                f"{field}.type: unknown namespace type {_short(t)} "
                f"(want one of {', '.join(namespace_flags)})",
                field=f"{field}.type",
            )
        if t in result:
            raise SpecError(f"{field}.type: duplicate namespace {t!r}", field=f"{field}.type")
        path = ns.get("path")
        if path is None:
            path = ""
        _str(path, f"{field}.path")
        if path and not path.startswith("/"):
            raise SpecError(
                f"{field}.path: must be an absolute path, got {_short(path)}", field=f"{field}.path"
            )
        result[t] = path
    return result


def _check_process(process: object) -> None:
    _obj(process, "process")
    assert isinstance(process, dict)
    _opt_bool(process, "terminal", "process.terminal")
    size = process.get("consoleSize")
    if size is not None:
        _obj(size, "process.consoleSize")
        for dim in ("height", "width"):
            if dim in size:
                # struct winsize holds unsigned shorts
                _int(size[dim], f"process.consoleSize.{dim}", 0, 0xFFFF)

    user = process.get("user")
    if user is not None:
        _obj(user, "process.user")
        for key in ("uid", "gid", "umask"):
            if user.get(key) is not None:
                _int(user[key], f"process.user.{key}", 0, UINT32_MAX)
        if user.get("umask") is not None and user["umask"] > 0o7777:
            raise SpecError("process.user.umask: larger than 0o7777", field="process.user.umask")
        gids = user.get("additionalGids")
        if gids is not None:
            _list(gids, "process.user.additionalGids")
            for i, g in enumerate(gids):
                _int(g, f"process.user.additionalGids[{i}]", 0, UINT32_MAX)
        if user.get("username") is not None:
            _str(user["username"], "process.user.username")

    args = process.get("args")
    if args is None or args == []:
        raise SpecError("process.args: must not be empty", field="process.args")
    _str_list(args, "process.args")
    if args[0] == "":
        raise SpecError("process.args[0]: must not be empty", field="process.args[0]")
    if process.get("commandLine") is not None:
        _str(process["commandLine"], "process.commandLine")

    env = process.get("env")
    if env is not None:
        _str_list(env, "process.env")
        for i, pair in enumerate(env):
            # Same rules as runc's populateProcessEnvironment.
            name, eq, _ = pair.partition("=")
            if not eq:
                raise SpecError(
                    f"process.env[{i}]: {_short(pair)} is not KEY=VALUE", field=f"process.env[{i}]"
                )
            if not name:
                raise SpecError(
                    f"process.env[{i}]: variable name must not be empty", field=f"process.env[{i}]"
                )

    cwd = process.get("cwd")
    if cwd is None or cwd == "":
        raise SpecError("process.cwd: required", field="process.cwd")
    _str(cwd, "process.cwd")
    if not cwd.startswith("/"):
        raise SpecError(
            f"process.cwd: must be an absolute path, got {_short(cwd)}", field="process.cwd"
        )

    caps = process.get("capabilities")
    if caps is not None:
        _obj(caps, "process.capabilities")
        for name in CAPABILITY_SETS:
            if caps.get(name) is not None:
                _str_list(caps[name], f"process.capabilities.{name}")

    rlimits = process.get("rlimits")
    if rlimits is not None:
        _list(rlimits, "process.rlimits")
        seen: set[str] = set()
        for i, rl in enumerate(rlimits):
            field = f"process.rlimits[{i}]"
            _obj(rl, field)
            t = rl.get("type")
            _str(t, f"{field}.type")
            if t not in RLIMIT_NAMES:
                raise SpecError(f"{field}.type: unknown rlimit {_short(t)}", field=f"{field}.type")
            if t in seen:
                raise SpecError(f"{field}.type: duplicate rlimit {t}", field=f"{field}.type")
            seen.add(t)
            soft = rl.get("soft", 0)
            hard = rl.get("hard", 0)
            _int(soft, f"{field}.soft", 0, UINT64_MAX)
            _int(hard, f"{field}.hard", 0, UINT64_MAX)
            if soft > hard:
                raise SpecError(
                    f"{field}.soft: {soft} is above the hard limit {hard} for {t}",
                    field=f"{field}.soft",
                )

    _opt_bool(process, "noNewPrivileges", "process.noNewPrivileges")
    for key in ("apparmorProfile", "selinuxLabel"):
        if process.get(key) is not None:
            _str(process[key], f"process.{key}")
    if process.get("oomScoreAdj") is not None:
        _int(process["oomScoreAdj"], "process.oomScoreAdj", -1000, 1000)

    sched = process.get("scheduler")
    if sched is not None:
        _obj(sched, "process.scheduler")
        policy = sched.get("policy")
        if not policy:
            raise SpecError("process.scheduler.policy: required", field="process.scheduler.policy")
        _str(policy, "process.scheduler.policy")
        if policy not in SCHED_POLICIES:
            raise SpecError(
                f"process.scheduler.policy: unknown policy {_short(policy)}",
                field="process.scheduler.policy",
            )
        if sched.get("nice") is not None:
            _int(sched["nice"], "process.scheduler.nice", -20, 19)

    ioprio = process.get("ioPriority")
    if ioprio is not None:
        _obj(ioprio, "process.ioPriority")
        cls = ioprio.get("class")
        _str(cls, "process.ioPriority.class")
        if cls not in IOPRIO_CLASSES:
            raise SpecError(
                f"process.ioPriority.class: unknown class {_short(cls)}",
                field="process.ioPriority.class",
            )
        if ioprio.get("priority") is not None:
            _int(ioprio["priority"], "process.ioPriority.priority", 0, 7)


def _check_mounts(mounts: object) -> None:
    if mounts is None:
        return
    _list(mounts, "mounts")
    assert isinstance(mounts, list)
    for i, m in enumerate(mounts):
        field = f"mounts[{i}]"
        _obj(m, field)
        dest = m.get("destination")
        if dest is None or dest == "":
            raise SpecError(f"{field}.destination: required", field=f"{field}.destination")
        _str(dest, f"{field}.destination")
        # runc still accepts relative destinations (with a deprecation warning) and joins
        # them to "/"; the runtime-spec says MUST be absolute, and we refuse them.
        _abs_path(dest, f"{field}.destination")
        for key in ("type", "source"):
            if m.get(key) is not None:
                _str(m[key], f"{field}.{key}")
        if m.get("options") is not None:
            _str_list(m["options"], f"{field}.options")
        for key in ("uidMappings", "gidMappings"):
            if m.get(key) is not None:
                _check_id_map(m[key], f"{field}.{key}")


def _check_hooks(hooks: object) -> None:
    if hooks is None:
        return
    _obj(hooks, "hooks")
    assert isinstance(hooks, dict)
    for name in HOOK_NAMES:
        entries = hooks.get(name)
        if entries is None:
            continue
        _list(entries, f"hooks.{name}")
        for i, h in enumerate(entries):
            field = f"hooks.{name}[{i}]"
            _obj(h, field)
            path = h.get("path")
            if not path:
                raise SpecError(f"{field}.path: required", field=f"{field}.path")
            _str(path, f"{field}.path")
            if not path.startswith("/"):
                raise SpecError(
                    f"{field}.path: must be an absolute path, got {_short(path)}",
                    field=f"{field}.path",
                )
            for key in ("args", "env"):
                if h.get(key) is not None:
                    _str_list(h[key], f"{field}.{key}")
            timeout = h.get("timeout")
            if timeout is not None:
                _int(timeout, f"{field}.timeout", 1, INT64_MAX)


def _check_linux(linux: dict, namespaces: dict[str, str]) -> None:
    has_userns = "user" in namespaces
    for key in ("uidMappings", "gidMappings"):
        maps = linux.get(key)
        if maps is None:
            continue
        _check_id_map(maps, f"linux.{key}")
        if maps and not has_userns:
            raise SpecError(
                f"linux.{key}: set, but there is no user namespace in linux.namespaces",
                field=f"linux.{key}",
            )
    if has_userns and not namespaces["user"]:
        # A new user namespace needs mappings with container root in them: runc derives
        # the owner of /dev nodes and cgroups from HostRootUID/HostRootGID.
        for key in ("uidMappings", "gidMappings"):
            maps = linux.get(key) or []
            if not maps:
                raise SpecError(
                    f"linux.{key}: a new user namespace needs mappings", field=f"linux.{key}"
                )
            if not any(e["containerID"] == 0 for e in maps):
                raise SpecError(
                    f"linux.{key}: a new user namespace needs container id 0 mapped",
                    field=f"linux.{key}",
                )

    sysctl = linux.get("sysctl")
    if sysctl is not None:
        _obj(sysctl, "linux.sysctl")
        for key, value in sysctl.items():
            _check_sysctl(key, namespaces)
            _str(value, f"linux.sysctl[{_key(key)}]")

    devices = linux.get("devices")
    if devices is not None:
        _list(devices, "linux.devices")
        for i, d in enumerate(devices):
            field = f"linux.devices[{i}]"
            _obj(d, field)
            t = d.get("type")
            _str(t, f"{field}.type")
            if t not in DEVICE_TYPES:
                raise SpecError(
                    f"{field}.type: must be one of c, b, u, p, got {_short(t)}",
                    field=f"{field}.type",
                )
            path = d.get("path")
            if not path:
                raise SpecError(f"{field}.path: required", field=f"{field}.path")
            _str(path, f"{field}.path")
            _abs_path(path, f"{field}.path")
            for key in ("major", "minor"):
                if d.get(key) is None:
                    if t != "p":  # a FIFO has no device number
                        raise SpecError(
                            f"{field}.{key}: required for type {t}", field=f"{field}.{key}"
                        )
                else:
                    _int(d[key], f"{field}.{key}", INT64_MIN, INT64_MAX)
            for key in ("fileMode", "uid", "gid"):
                if d.get(key) is not None:
                    _int(d[key], f"{field}.{key}", 0, UINT32_MAX)

    for key in ("maskedPaths", "readonlyPaths"):
        paths = linux.get(key)
        if paths is None:
            continue
        _str_list(paths, f"linux.{key}")
        for i, p in enumerate(paths):
            if not p.startswith("/"):
                raise SpecError(
                    f"linux.{key}[{i}]: must be an absolute path, got {_short(p)}",
                    field=f"linux.{key}[{i}]",
                )
        if paths and "mount" not in namespaces:
            # runc validate.security: masking in the host's mount namespace hides host files.
            raise SpecError(f"linux.{key}: needs a private mount namespace", field=f"linux.{key}")

    prop = linux.get("rootfsPropagation")
    if prop is not None and prop != "":
        _str(prop, "linux.rootfsPropagation")
        if prop not in ROOTFS_PROPAGATIONS:
            raise SpecError(
                f"linux.rootfsPropagation: {_short(prop)} is not one of "
                f"{', '.join(sorted(ROOTFS_PROPAGATIONS))}",
                field="linux.rootfsPropagation",
            )

    for key in ("cgroupsPath", "mountLabel"):
        if linux.get(key) is not None:
            _str(linux[key], f"linux.{key}")

    if linux.get("timeOffsets") and "time" not in namespaces:
        raise SpecError(
            "linux.timeOffsets: set, but there is no time namespace in linux.namespaces",
            field="linux.timeOffsets",
        )

    personality = linux.get("personality")
    if personality is not None:
        _obj(personality, "linux.personality")
        domain = personality.get("domain")
        _str(domain, "linux.personality.domain")
        if domain not in PERSONALITY_DOMAINS:
            raise SpecError(
                f"linux.personality.domain: {_short(domain)} is not LINUX or LINUX32",
                field="linux.personality.domain",
            )


def _check_id_map(maps: object, field: str) -> None:
    _list(maps, field)
    assert isinstance(maps, list)
    if len(maps) > MAX_ID_MAP_EXTENTS:
        raise SpecError(
            f"{field}: {len(maps)} entries, the kernel takes at most {MAX_ID_MAP_EXTENTS}",
            field=field,
        )
    for i, e in enumerate(maps):
        f = f"{field}[{i}]"
        _obj(e, f)
        for key in ("containerID", "hostID", "size"):
            if key not in e:
                raise SpecError(f"{f}.{key}: required", field=f"{f}.{key}")
            _int(e[key], f"{f}.{key}", 0, UINT32_MAX)
        if e["size"] == 0:
            raise SpecError(f"{f}.size: must be at least 1", field=f"{f}.size")
        if (
            e["containerID"] + e["size"] > UINT32_MAX + 1
            or e["hostID"] + e["size"] > UINT32_MAX + 1
        ):
            raise SpecError(f"{f}: range overflows 32-bit ids", field=f)


def _check_sysctl(key: str, namespaces: dict[str, str]) -> None:
    """runc validate.sysctl: only sysctls namespaced by a namespace the container owns."""
    field = f"linux.sysctl[{_key(key)}]"
    name = key
    # sysctl(8) also accepts "/" as separator: "net/ipv4/conf/eth0.100/rp_filter".
    slash, dot = name.find("/"), name.find(".")
    if slash != -1 and (dot == -1 or slash < dot):
        name = name.translate(_SWAP_DOT_SLASH)
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        if "ipc" not in namespaces:
            raise SpecError(
                f"{field}: not allowed in the host's IPC namespace (add ipc to linux.namespaces)",
                field=field,
            )
        return
    if name.startswith("net."):
        # runc also refuses a netns path that is the host's own: that needs a stat, so the
        # runtime checks it where it opens the namespace.
        if "network" not in namespaces:
            raise SpecError(
                f"{field}: not allowed in the host's network namespace "
                "(add network to linux.namespaces)",
                field=field,
            )
        return
    if "uts" in namespaces:
        if name == "kernel.domainname":
            return
        if name == "kernel.hostname":
            raise SpecError(f"{field}: conflicts with the OCI hostname field", field=field)
    raise SpecError(f"{field}: not in a kernel namespace the container owns", field=field)


_SWAP_DOT_SLASH = str.maketrans("./", "/.")


# --- small typed accessors -----------------------------------------------------------------
def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _short(s: object, limit: int = 60) -> str:
    """repr() of a value, shortened: messages stay one readable line."""
    r = repr(s)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _key(key: str) -> str:
    """A map key as it appears in a field name: JSON-quoted, shortened."""
    q = fastjson.dumps_str(key)
    return q if len(q) <= 60 else q[:56] + '..."'


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _obj(v: object, field: str) -> None:
    if not isinstance(v, dict):
        raise SpecError(f"{field}: must be an object, not {_json_type(v)}", field=field)


def _list(v: object, field: str) -> None:
    if not isinstance(v, list):
        raise SpecError(f"{field}: must be an array, not {_json_type(v)}", field=field)


def _str(v: object, field: str) -> None:
    if not isinstance(v, str):
        raise SpecError(f"{field}: must be a string, not {_json_type(v)}", field=field)


def _str_list(v: object, field: str) -> None:
    _list(v, field)
    assert isinstance(v, list)
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise SpecError(
                f"{field}[{i}]: must be a string, not {_json_type(s)}", field=f"{field}[{i}]"
            )


def _int(v: object, field: str, lo: int, hi: int) -> None:
    # bool is an int in Python, not in JSON; a float like 1.0 is not an integer to Go.
    if not isinstance(v, int) or isinstance(v, bool):
        raise SpecError(f"{field}: must be an integer, not {_json_type(v)}", field=field)
    if not lo <= v <= hi:
        raise SpecError(f"{field}: {v} is out of range [{lo}, {hi}]", field=field)


def _opt_bool(obj: dict, key: str, field: str) -> None:
    v = obj.get(key)
    if v is not None and not isinstance(v, bool):
        raise SpecError(f"{field}: must be true or false, not {_json_type(v)}", field=field)


def _abs_path(path: str, field: str) -> None:
    """Absolute, and ".." never climbs above "/" (a naive join under the rootfs would
    then land outside it)."""
    if not path.startswith("/"):
        raise SpecError(f"{field}: must be an absolute path, got {_short(path)}", field=field)
    if ".." not in path:
        return
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise SpecError(f"{field}: {_short(path)} escapes the root", field=field)
        elif part and part != ".":
            depth += 1


def _check_no_nul(spec: dict) -> None:
    """No string anywhere (keys included) may hold a NUL: C strings end there, so the
    kernel would see a different path or argument than the one validated."""
    # Iterative walk: a hostile, deeply nested spec must not blow the recursion limit.
    # Paths are kept as (parent, key) pairs and formatted only when needed.
    stack: list[tuple[object, object]] = [(spec, None)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                field = _format_where(where)
                raise SpecError(f"{field}: contains a NUL byte", field=field)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and "\0" in k:
                    field = _format_where(where) or "spec"
                    raise SpecError(f"{field}: key {_short(k)} contains a NUL byte", field=field)
                stack.append((v, (where, k)))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                stack.append((v, (where, i)))


def _format_where(where: object) -> str:
    parts: list[object] = []
    while where is not None:
        assert isinstance(where, tuple)
        where, key = where
        parts.append(key)
    out = ""
    for key in reversed(parts):
        if isinstance(key, int):
            out += f"[{key}]"
        elif key.isidentifier():  # type: ignore[union-attr]
            out += f".{key}" if out else str(key)
        else:
            out += f"[{_key(key)}]"
    return out
