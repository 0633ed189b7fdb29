"""The OCI runtime spec (config.json) of a container: image config + docker-run options.

Follows moby: oci/defaults.go (DefaultLinuxSpec: mounts, masked and read-only paths, the
default capability set, cgroup device rules) and daemon/oci_linux.go (withCommonOptions,
WithNamespaces, WithCapabilities, WithSeccomp, WithDevices, WithResources, WithRlimits,
WithMounts, WithUser), plus daemon/create.go's merge of the image config.

Deliberately not done here (docker does these elsewhere or we do not support them yet):
user namespaces (--userns-remap), AppArmor/SELinux labels, --ipc/--pid/--uts host or
container modes, --group-add, --sysctl, --oom-score-adj, blkio/memory-reservation knobs,
and, for --privileged, adding every host device node to linux.devices (docker walks
/dev); a privileged container here gets all capabilities, no seccomp, no masked or
read-only paths, rw /sys and /sys/fs/cgroup, and an allow-all device cgroup rule.
"""

from __future__ import annotations

import os
import posixpath
import stat as statmod
from collections.abc import Callable

from hutch.engine import seccomp_default
from hutch.engine.users import resolve_user
from hutch.errors import InvalidArgument
from hutch.linux.caps import CAP_NAMES
from hutch.oci.image import ImageConfig
from hutch.util.record import field, record

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_SIGNAL_ANNOTATION = "org.hutch.stop-signal"
INIT_PATH = "/dev/init"
DEFAULT_SHM_SIZE = 64 << 20  # docker's --shm-size default
CPU_PERIOD = 100_000  # docker: --cpus sets quota against a 100 ms period

# oci/defaults.go DefaultCapabilities
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
# capability.h, 0 .. CAP_LAST_CAP: what --privileged and --cap-add ALL give.
ALL_CAPABILITIES = CAP_NAMES
# oci/defaults.go; /sys/devices/virtual/powercap since moby 20.10.? (CVE-2020-8694,
# PLATYPUS: RAPL energy counters leak secrets).
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _cdev(major: int, minor: int, allow: bool = True) -> dict:
    return {"allow": allow, "type": "c", "major": major, "minor": minor, "access": "rwm"}


# oci/defaults.go: deny all, then null, zero, full... as docker lists them. The runtime
# adds runc's own allowed set (pts, ptmx, mknod of anything) on top.
DEFAULT_DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    _cdev(1, 5),  # /dev/zero
    _cdev(1, 3),  # /dev/null
    _cdev(1, 9),  # /dev/urandom
    _cdev(1, 8),  # /dev/random
    _cdev(5, 0),  # /dev/tty
    _cdev(5, 1),  # /dev/console
    _cdev(10, 229, allow=False),  # /dev/net/tun: docker denies it explicitly
)

ULIMIT_NAMES = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack".split()
)
RLIM_INFINITY = (1 << 64) - 1


@record
class RunOptions:
    """What `docker run` flags say about the container's spec. None/empty = docker default.

    `binds` are OCI mount dicts the caller resolved (volumes, binds, resolv.conf, hosts).
    `entrypoint`: None keeps the image's, [] resets it (`--entrypoint ""`).
    `env` entries without "=" unset the variable (moby's ReplaceOrAppendEnvValues).
    `seccomp` profile JSON comes through `security_opt` as "seccomp=<json text>".
    """

    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    env_file: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    binds: list[dict] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    security_opt: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    memory: int | str | None = None
    memory_swap: int | str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str = ""
    pids_limit: int | None = None
    ulimits: list[str] = field(default_factory=list)
    init: bool = False
    init_path: str = ""
    stop_signal: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    interactive: bool = False
    network: str = "bridge"
    netns_path: str = ""  # a prepared network namespace to join (bridge networks)
    shm_size: int = DEFAULT_SHM_SIZE


# --- small parsers (docker's opts / go-units) ----------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value: int | str, what: str) -> int:
    """go-units RAMInBytes: "512m", "1g", "1024", -1 for unlimited."""
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid {what}: {value!r}")
    if isinstance(value, int):
        return value
    text = value.strip().lower()
    if text == "-1":
        return -1
    num = text.rstrip("bkmgtpi")
    suffix = text[len(num):].replace("ib", "").replace("b", "") or ""
    try:
        number = float(num)
        factor = _UNITS[suffix]
    except (ValueError, KeyError):
        raise InvalidArgument(f"invalid {what}: {value!r} (want a size like 512m or 1g)") from None
    if number < 0:
        raise InvalidArgument(f"invalid {what}: {value!r} is negative")
    return int(number * factor)


def parse_ulimit(text: str) -> dict:
    """go-units ParseUlimit: "nofile=1024[:2048]" -> an OCI rlimit."""
    name, eq, limits = text.partition("=")
    if not eq:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    if colon and ":" in hard_s:
        raise InvalidArgument(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise InvalidArgument(f"invalid ulimit value in {text!r}: not an integer") from None
    for v in (soft, hard):
        if v < -1:
            raise InvalidArgument(f"invalid ulimit value in {text!r}: negative")
    # -1 is "unlimited" (RLIM_INFINITY), which is above any number.
    s = RLIM_INFINITY if soft == -1 else soft
    h = RLIM_INFINITY if hard == -1 else hard
    if s > h:
        raise InvalidArgument(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"type": "RLIMIT_" + name.upper(), "soft": s, "hard": h}


def parse_device(text: str) -> tuple[str, str, str]:
    """docker's opts.ParseDevice: "/dev/x[:/dev/y][:rwm]" -> (host, container, permissions)."""
    parts = text.split(":")
    src, dst, perms = "", "", "rwm"
    if len(parts) == 3:
        if not _valid_perms(parts[2]):
            raise InvalidArgument(f"invalid device mode: {parts[2]}")
        src, dst, perms = parts
    elif len(parts) == 2:
        if _valid_perms(parts[1]):
            src, perms = parts
        else:
            src, dst = parts
    elif len(parts) == 1:
        src = parts[0]
    else:
        raise InvalidArgument(f"invalid device specification: {text}")
    dst = dst or src
    for p in (src, dst):
        if not p.startswith("/"):
            raise InvalidArgument(f"bad format for path: {p}")
    return src, posixpath.normpath(dst), perms


def _valid_perms(mode: str) -> bool:
    return bool(mode) and all(c in "rwm" for c in mode) and len(set(mode)) == len(mode)


def _normalize_cap(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return upper


def host_capabilities() -> tuple[str, ...]:
    """What "all capabilities" means here: our own bounding set (moby#42933 — a host
    without, say, CAP_SYS_RESOURCE cannot hand it to a container)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return tuple(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)
    except (OSError, ValueError):
        pass
    return tuple(ALL_CAPABILITIES)


def capabilities(add: list[str], drop: list[str], privileged: bool,
                 available: tuple[str, ...] | None = None) -> list[str]:
    """moby's caps.TweakCapabilities; "all" is `available` (default: every one)."""
    every = list(ALL_CAPABILITIES if available is None else available)
    if privileged:
        return every
    if not add and not drop:
        return list(DEFAULT_CAPABILITIES)
    adds = [_normalize_cap(c) for c in add]
    drops = [_normalize_cap(c) for c in drop]
    if "ALL" in adds:
        caps = [c for c in every if c not in drops]
    elif "ALL" in drops:
        caps = [c for c in adds if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops] + adds
    return list(dict.fromkeys(caps))


# --- process ---------------------------------------------------------------------------------

def command(image: ImageConfig, opts: RunOptions) -> list[str]:
    """moby daemon/create.go merge(): a non-empty --entrypoint drops the image's Cmd;
    `--entrypoint ""` (an empty, non-None list) keeps it."""
    cmd = list(opts.cmd)
    entrypoint = opts.entrypoint
    if not entrypoint:
        if not cmd:
            cmd = list(image.cmd or ())
        if entrypoint is None:
            entrypoint = list(image.entrypoint or ())
    args = list(entrypoint) + cmd
    if not args:
        raise InvalidArgument("no command specified", hint="give a command after the image name")
    return args


def _merge_env(env: list[str], overrides: list[str]) -> list[str]:
    """moby's ReplaceOrAppendEnvValues: KEY=VALUE replaces KEY, a bare KEY deletes it."""
    out = list(env)
    for entry in overrides:
        key, eq, _ = entry.partition("=")
        idx = next((i for i, e in enumerate(out) if e.partition("=")[0] == key), None)
        if not eq:
            if idx is not None:
                del out[idx]
        elif idx is not None:
            out[idx] = entry
        else:
            out.append(entry)
    return out


def environment(image: ImageConfig, opts: RunOptions, hostname: str, home: str) -> list[str]:
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if opts.tty:
        base.append("TERM=xterm")
    env = _merge_env(base, list(image.env))
    env = _merge_env(env, list(opts.env_file))
    env = _merge_env(env, list(opts.env))
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home}")  # what runc's init does when HOME is missing
    return env


# --- mounts ---------------------------------------------------------------------------------

def default_mounts(shm_size: int) -> list[dict]:
    """oci/defaults.go DefaultLinuxSpec mounts, with /dev/shm sized as daemon does."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


_FLAG_OPPOSITES = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro"}
_FLAG_OPPOSITES.update({v: k for k, v in list(_FLAG_OPPOSITES.items())})


def tmpfs_mount(path: str, options: str) -> dict:
    """docker --tmpfs PATH[:OPTS]: noexec,nosuid,nodev unless the user says otherwise
    (moby's mount.MergeTmpfsOptions: a user flag replaces its opposite)."""
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid --tmpfs destination {path!r}: must be absolute")
    opts = ["noexec", "nosuid", "nodev"]
    for o in (x.strip() for x in options.split(",")):
        if not o:
            continue
        opposite = _FLAG_OPPOSITES.get(o)
        if opposite in opts:
            opts.remove(opposite)
        key = o.partition("=")[0]
        if "=" in o:
            opts = [x for x in opts if x.partition("=")[0] != key]
        if o not in opts:
            opts.append(o)
    return {"destination": posixpath.normpath(path), "type": "tmpfs", "source": "tmpfs",
            "options": opts}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def mounts(opts: RunOptions) -> list[dict]:
    user = [dict(m) for m in opts.binds]
    user += [tmpfs_mount(p, o) for p, o in opts.tmpfs.items()]
    for m in user:
        dest = m.get("destination", "")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise InvalidArgument(f"invalid mount destination {dest!r}: must be absolute")
        m["destination"] = posixpath.normpath(dest)
    dests = {m["destination"] for m in user}
    # moby WithMounts: a user mount replaces the default at the same place, and a user
    # /dev replaces every default under /dev.
    result = []
    for m in default_mounts(opts.shm_size):
        if m["destination"] in dests or ("/dev" in dests and _under(m["destination"], "/dev")):
            continue
        if opts.privileged and m["destination"] in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"]
        result.append(m)
    # Parents before children (moby sorts mounts by the depth of their destination).
    user.sort(key=lambda m: len([p for p in m["destination"].split("/") if p]))
    result += user
    if opts.init and opts.init_path:
        result.append({"destination": INIT_PATH, "type": "bind", "source": opts.init_path,
                       "options": ["bind", "ro"]})
    return result


# --- linux ---------------------------------------------------------------------------------

def namespaces(network: str, cgroup_v2: bool, netns_path: str = "") -> list[dict]:
    """moby WithNamespaces for the default pid/ipc/uts modes and the given network mode.
    `netns_path`: the namespace the engine prepared for a bridge network (any mode but
    host and container:)."""
    nss: list[dict] = [{"type": "mount"}]
    if network.startswith("container:"):
        path = network.partition(":")[2]
        if not path.startswith("/"):
            raise InvalidArgument(
                f"invalid network mode {network!r}: want container:<namespace path>")
        nss.append({"type": "network", "path": path})
    elif network != "host":  # none, bridge or a user-defined network's name
        nss.append({"type": "network", "path": netns_path} if netns_path
                   else {"type": "network"})
    nss += [{"type": "uts"}, {"type": "pid"}, {"type": "ipc"}]
    if cgroup_v2:  # docker's default --cgroupns is private on v2, host on v1
        nss.append({"type": "cgroup"})
    return nss


def devices(specs: list[str], stat: Callable[[str], os.stat_result]) -> tuple[list, list]:
    """--device: linux.devices entries and their device cgroup allow rules."""
    nodes, rules = [], []
    for text in specs:
        src, dst, perms = parse_device(text)
        try:
            st = stat(src)
        except OSError as e:
            raise InvalidArgument(
                f"error gathering device information while adding custom device {src!r}: "
                f"{e.strerror}") from None
        if statmod.S_ISCHR(st.st_mode):
            kind = "c"
        elif statmod.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            raise InvalidArgument(
                f"error gathering device information while adding custom device {src!r}: "
                "not a device node")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        nodes.append({"path": dst, "type": kind, "major": major, "minor": minor,
                      "fileMode": statmod.S_IMODE(st.st_mode), "uid": st.st_uid,
                      "gid": st.st_gid})
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": perms})
    return nodes, rules


def resources(opts: RunOptions, device_rules: list[dict],
              host_cpus: int) -> dict:
    res: dict = {}
    if opts.privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        res["devices"] = [dict(r) for r in DEFAULT_DEVICE_RULES] + device_rules
    memory = parse_bytes(opts.memory, "--memory") if opts.memory is not None else 0
    swap = parse_bytes(opts.memory_swap, "--memory-swap") if opts.memory_swap is not None else 0
    # moby daemon/daemon_unix.go verifyPlatformContainerResources / adaptContainerSettings
    if memory and memory < 6 << 20:
        raise InvalidArgument("minimum memory limit allowed is 6MB")
    if swap > 0 and not memory:
        raise InvalidArgument("you should always set the memory limit when using memoryswap limit")
    if memory and swap > 0 and swap < memory:
        raise InvalidArgument("minimum memoryswap limit should be larger than memory limit")
    if memory:
        res["memory"] = {"limit": memory, "swap": swap if swap else 2 * memory}
    cpu: dict = {}
    if opts.cpus is not None:
        nano = round(opts.cpus * 1e9)
        if nano <= 0 or nano > host_cpus * 1_000_000_000:
            raise InvalidArgument(
                f"range of CPUs is from 0.01 to {host_cpus}.00, as there are only "
                f"{host_cpus} CPUs available")
        cpu["quota"] = max(nano * CPU_PERIOD // 1_000_000_000, 1000)  # kernel minimum 1 ms
        cpu["period"] = CPU_PERIOD
    if opts.cpu_shares:
        if opts.cpu_shares < 0:
            raise InvalidArgument("--cpu-shares must not be negative")
        cpu["shares"] = opts.cpu_shares
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if opts.pids_limit is not None and opts.pids_limit > 0:  # 0 and -1 mean unlimited
        res["pids"] = {"limit": opts.pids_limit}
    return res


def _security(opts: RunOptions) -> tuple[bool, str | None, bool]:
    """--security-opt -> (unconfined, custom profile json, no_new_privileges)."""
    unconfined, profile, nnp = False, None, False
    for item in opts.security_opt:
        key, sep, value = item.partition("=")
        if not sep:
            key, sep, value = item.partition(":")  # docker's legacy "key:value" form
        if key == "no-new-privileges":
            if not sep or value == "true":
                nnp = True
            elif value == "false":
                nnp = False
            else:
                raise InvalidArgument(f"invalid --security-opt 2: {item!r}")
        elif key == "seccomp" and sep:
            if value == "unconfined":
                unconfined, profile = True, None
            else:
                unconfined, profile = False, value
        elif key in ("apparmor", "label"):
            raise InvalidArgument(f"--security-opt {key} is not supported by hutch")
        else:
            raise InvalidArgument(f"invalid --security-opt: {item!r}")
    return unconfined, profile, nnp


def _cgroup_v2_host() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def generate_spec(
    image_config: ImageConfig,
    opts: RunOptions,
    *,
    rootfs: str,
    container_id: str,
    cgroups_path: str,
    passwd_root: str,
    cgroup_v2: bool | None = None,
    machine: str | None = None,
    kernel: str | None = None,
    host_cpus: int | None = None,
    stat: Callable[[str], os.stat_result] = os.stat,
    host_caps: tuple[str, ...] | None = None,
) -> dict:
    """The config.json for a container of `image_config` run with `opts`.

    The keyword-only host facts (cgroup v2, uname -m/-r, cpu count, stat for --device)
    default to this host's; unit tests pass them in.
    """
    if cgroup_v2 is None:
        cgroup_v2 = _cgroup_v2_host()
    if host_cpus is None:
        host_cpus = os.cpu_count() or 1

    hostname = opts.hostname
    if not hostname:
        hostname = os.uname().nodename if opts.network == "host" else container_id[:12]
    user = resolve_user(opts.user or image_config.user, passwd_root)
    args = command(image_config, opts)
    if opts.init:
        args = [INIT_PATH, "--", *args]
    workdir = opts.workdir or image_config.working_dir or "/"
    if not workdir.startswith("/"):
        if opts.workdir:
            raise InvalidArgument(
                f"the working directory {workdir!r} is invalid, it needs to be an absolute path")
        workdir = "/" + workdir
    caps = capabilities(opts.cap_add, opts.cap_drop, opts.privileged,
                        host_capabilities() if host_caps is None else host_caps)
    unconfined, custom_profile, nnp = _security(opts)
    rlimits = [parse_ulimit(u) for u in opts.ulimits]
    seen: dict[str, dict] = {}
    for rl in rlimits:
        seen[rl["type"]] = rl  # the last --ulimit for a type wins, as in docker
    dev_nodes, dev_rules = ([], []) if opts.privileged else devices(opts.devices, stat)

    process: dict = {
        "terminal": bool(opts.tty),
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": environment(image_config, opts, hostname, user.home),
        "cwd": posixpath.normpath(workdir),
        # No inheritable/ambient set: moby dropped them for CVE-2022-24769.
        "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
        "noNewPrivileges": nnp,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    if seen:
        process["rlimits"] = list(seen.values())

    linux: dict = {
        "cgroupsPath": cgroups_path,
        "namespaces": namespaces(opts.network, cgroup_v2, opts.netns_path),
        "resources": resources(opts, dev_rules, host_cpus),
    }
    if dev_nodes:
        linux["devices"] = dev_nodes
    if not opts.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    # moby WithSeccomp: privileged and unconfined run without a filter; a profile the user
    # gives explicitly applies even to a privileged container.
    if custom_profile is not None:
        profile = seccomp_default.parse_profile(custom_profile)
        linux["seccomp"] = seccomp_default.build_profile(profile, caps, machine=machine,
                                                         kernel=kernel)
    elif not unconfined and not opts.privileged:
        linux["seccomp"] = seccomp_default.build_profile(
            seccomp_default.DEFAULT_PROFILE, caps, machine=machine, kernel=kernel)

    annotations = {**image_config.labels, **opts.labels}
    annotations[STOP_SIGNAL_ANNOTATION] = opts.stop_signal or image_config.stop_signal or "SIGTERM"

    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(opts.read_only)},
        "hostname": hostname,
        "mounts": mounts(opts),
        "annotations": annotations,
        "linux": linux,
    }
