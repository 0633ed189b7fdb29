"""hutch.oci.spec: loading config.json, validating it like runc, the default spec, ids and
mount options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

from hutch.errors import InvalidArgument, NotFound, SpecError
from hutch.oci import spec as oci
from hutch.oci.spec import (
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MountOptions,
    default_spec,
    load_spec,
    parse_mount_options,
    resolve_rootfs,
    validate,
    validate_container_id,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def bundle(tmp_path) -> str:
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def rejected(spec: dict, bundle: str, **kw) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate(spec, bundle, **kw)
    err = info.value
    assert "\n" not in str(err), "a user sees one line"
    return err


# --- default spec --------------------------------------------------------------------------


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_default_spec_is_what_runc_spec_writes(tmp_path, rootless):
    runc = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
    if runc is None:
        pytest.skip("runc is not installed")
    cmd = [runc, "spec"] + (["--rootless"] if rootless else [])
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    with open(tmp_path / "config.json") as f:
        expected = json.load(f)
    assert default_spec(rootless=rootless) == expected


def test_default_spec_keeps_runc_key_order():
    assert list(default_spec()) == ["ociVersion", "process", "root", "hostname", "mounts", "linux"]


def test_rootless_default_spec_maps_root_to_given_ids():
    spec = default_spec(rootless=True, uid=1000, gid=1001)
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert spec["linux"]["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    assert {"type": "network"} not in spec["linux"]["namespaces"]
    assert {"type": "user"} in spec["linux"]["namespaces"]


def test_default_spec_returns_a_fresh_copy_each_time():
    a = default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"].clear()
    b = default_spec()
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]
    assert len(b["mounts"]) == 7


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_default_spec_is_valid(bundle, rootless):
    validate(default_spec(rootless=rootless), bundle)


# --- validation: accepted ------------------------------------------------------------------


def test_spec_without_process_is_valid_when_not_required(bundle):
    spec = default_spec()
    del spec["process"]
    validate(spec, bundle, require_process=False)


def test_absolute_root_path_is_accepted(tmp_path):
    rootfs = tmp_path / "elsewhere"
    rootfs.mkdir()
    spec = default_spec()
    spec["root"]["path"] = str(rootfs)
    validate(spec, str(tmp_path / "no-such-bundle-dir-needed"))


def test_rootfs_is_resolved_relative_to_the_bundle_and_through_symlinks(tmp_path):
    real = tmp_path / "real-rootfs"
    real.mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "rootfs").symlink_to(real)
    assert resolve_rootfs(default_spec(), str(bundle)) == str(real.resolve())


def test_harmless_dotdot_in_mount_destination_is_accepted(bundle):
    spec = default_spec()
    spec["mounts"].append({"destination": "/a/../b", "type": "tmpfs", "source": "tmpfs"})
    validate(spec, bundle)


@pytest.mark.parametrize(
    "key,namespace",
    [
        ("net.ipv4.ip_forward", "network"),
        ("net/ipv4/conf/eth0.100/rp_filter", "network"),
        ("kernel.shmmax", "ipc"),
        ("kernel.sem", "ipc"),
        ("fs.mqueue.msg_max", "ipc"),
        ("kernel.domainname", "uts"),
    ],
)
def test_namespaced_sysctls_are_accepted_with_their_namespace(bundle, key, namespace):
    spec = default_spec()
    spec["linux"]["namespaces"] = [{"type": namespace}, {"type": "mount"}]
    spec["hostname"] = "" if namespace != "uts" else "x"
    spec["linux"]["sysctl"] = {key: "1"}
    validate(spec, bundle)


def test_unknown_properties_are_ignored(bundle):
    spec = default_spec()
    spec["vendorThing"] = {"x": 1}
    spec["process"]["futureField"] = [1, 2]
    spec["hooks"] = {"futureHook": "anything"}
    validate(spec, bundle)


def test_seccomp_and_resources_are_left_to_their_owners(bundle):
    spec = default_spec()
    spec["linux"]["seccomp"] = {"defaultAction": "NOT_AN_ACTION"}
    spec["linux"]["resources"] = {"memory": {"limit": "lots"}}
    validate(spec, bundle)


# --- validation: rejected, with the field ----------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict], None]:
    """Mutation setting a dotted path (list indexes as numbers) in the spec."""

    def mutate(spec: dict) -> None:
        *parents, last = path.split(".")
        node: object = spec
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})  # type: ignore[index,union-attr]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value  # type: ignore[index]

    return mutate


def _del(path: str) -> Callable[[dict], None]:
    def mutate(spec: dict) -> None:
        *parents, last = path.split(".")
        node: object = spec
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]  # type: ignore[index]
        del node[last]  # type: ignore[union-attr]

    return mutate


def _namespaces(*types: str) -> Callable[[dict], None]:
    return _set("linux.namespaces", [{"type": t} for t in types])


def _many(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(spec: dict) -> None:
        for m in mutations:
            m(spec)

    return mutate


ALL_BUT_USER = ("pid", "network", "ipc", "uts", "mount")

REJECTIONS: list[tuple[str, Callable[[dict], None], str]] = [
    # ociVersion
    ("version-missing", _del("ociVersion"), "ociVersion"),
    ("version-2", _set("ociVersion", "2.0.0"), "ociVersion"),
    ("version-0", _set("ociVersion", "0.5.0"), "ociVersion"),
    ("version-number", _set("ociVersion", 1.0), "ociVersion"),
    # root
    ("root-missing", _del("root"), "root"),
    ("root-not-object", _set("root", "rootfs"), "root"),
    ("root-path-missing", _del("root.path"), "root.path"),
    ("root-path-empty", _set("root.path", ""), "root.path"),
    ("root-path-absent", _set("root.path", "nope"), "root.path"),
    ("root-path-file", _set("root.path", "config.json"), "root.path"),
    ("root-readonly-string", _set("root.readonly", "yes"), "root.readonly"),
    # process
    ("process-missing", _del("process"), "process"),
    ("process-not-object", _set("process", []), "process"),
    ("args-missing", _del("process.args"), "process.args"),
    ("args-empty", _set("process.args", []), "process.args"),
    ("args-string", _set("process.args", "sh"), "process.args"),
    ("args-number", _set("process.args", ["sh", 1]), "process.args[1]"),
    ("args-empty-argv0", _set("process.args", [""]), "process.args[0]"),
    ("cwd-missing", _del("process.cwd"), "process.cwd"),
    ("cwd-relative", _set("process.cwd", "tmp"), "process.cwd"),
    ("env-not-list", _set("process.env", "A=B"), "process.env"),
    ("env-no-equals", _set("process.env", ["A=B", "NOEQUALS"]), "process.env[1]"),
    ("env-empty-name", _set("process.env", ["=value"]), "process.env[0]"),
    ("env-number", _set("process.env", [7]), "process.env[0]"),
    ("terminal-string", _set("process.terminal", "yes"), "process.terminal"),
    (
        "console-too-wide",
        _set("process.consoleSize", {"height": 24, "width": 70000}),
        "process.consoleSize.width",
    ),
    (
        "console-negative",
        _set("process.consoleSize", {"height": -1, "width": 80}),
        "process.consoleSize.height",
    ),
    ("uid-negative", _set("process.user.uid", -1), "process.user.uid"),
    ("gid-too-big", _set("process.user.gid", 1 << 32), "process.user.gid"),
    ("uid-float", _set("process.user.uid", 0.0), "process.user.uid"),
    (
        "additional-gid-string",
        _set("process.user.additionalGids", ["5"]),
        "process.user.additionalGids[0]",
    ),
    ("umask-too-big", _set("process.user.umask", 0o10000), "process.user.umask"),
    (
        "caps-not-list",
        _set("process.capabilities.bounding", "CAP_KILL"),
        "process.capabilities.bounding",
    ),
    ("caps-number", _set("process.capabilities.ambient", [1]), "process.capabilities.ambient[0]"),
    ("caps-not-object", _set("process.capabilities", ["CAP_KILL"]), "process.capabilities"),
    (
        "rlimit-unknown",
        _set("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
        "process.rlimits[0].type",
    ),
    (
        "rlimit-duplicate",
        _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2),
        "process.rlimits[1].type",
    ),
    (
        "rlimit-soft-above-hard",
        _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
        "process.rlimits[0].soft",
    ),
    (
        "rlimit-negative",
        _set("process.rlimits", [{"type": "RLIMIT_CORE", "soft": -1, "hard": 1}]),
        "process.rlimits[0].soft",
    ),
    (
        "rlimit-float",
        _set("process.rlimits", [{"type": "RLIMIT_CORE", "soft": 1, "hard": 1.5}]),
        "process.rlimits[0].hard",
    ),
    (
        "rlimit-over-uint64",
        _set("process.rlimits", [{"type": "RLIMIT_CORE", "soft": 1, "hard": 1 << 64}]),
        "process.rlimits[0].hard",
    ),
    ("oom-too-high", _set("process.oomScoreAdj", 1001), "process.oomScoreAdj"),
    ("oom-too-low", _set("process.oomScoreAdj", -1001), "process.oomScoreAdj"),
    ("oom-bool", _set("process.oomScoreAdj", True), "process.oomScoreAdj"),
    ("nnp-string", _set("process.noNewPrivileges", "true"), "process.noNewPrivileges"),
    ("sched-no-policy", _set("process.scheduler", {"nice": 1}), "process.scheduler.policy"),
    (
        "sched-bad-nice",
        _set("process.scheduler", {"policy": "SCHED_OTHER", "nice": 20}),
        "process.scheduler.nice",
    ),
    (
        "ioprio-bad-class",
        _set("process.ioPriority", {"class": "FAST", "priority": 1}),
        "process.ioPriority.class",
    ),
    (
        "ioprio-bad-priority",
        _set("process.ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 8}),
        "process.ioPriority.priority",
    ),
    # NUL bytes anywhere
    ("nul-in-args", _set("process.args", ["sh", "-c\x00rm"]), "process.args[1]"),
    ("nul-in-env", _set("process.env", ["A=\x00"]), "process.env[0]"),
    ("nul-in-mount-source", _set("mounts.1.source", "tmp\x00fs"), "mounts[1].source"),
    ("nul-in-mount-option", _set("mounts.1.options", ["mode=755\x00"]), "mounts[1].options[0]"),
    ("nul-in-hostname", _set("hostname", "a\x00b"), "hostname"),
    ("nul-in-root-path", _set("root.path", "rootfs\x00"), "root.path"),
    ("nul-in-annotation-value", _set("annotations", {"a.b": "x\x00"}), 'annotations["a.b"]'),
    ("nul-in-annotation-key", _set("annotations", {"a\x00b": "x"}), "annotations"),
    ("nul-in-sysctl-key", _set("linux.sysctl", {"net.x\x00": "1"}), "linux.sysctl"),
    (
        "nul-in-seccomp",
        _set("linux.seccomp", {"syscalls": [{"names": ["read\x00"]}]}),
        "linux.seccomp.syscalls[0].names[0]",
    ),
    ("nul-in-cgroups-path", _set("linux.cgroupsPath", "/a\x00"), "linux.cgroupsPath"),
    # mounts
    ("mounts-not-list", _set("mounts", {}), "mounts"),
    ("mount-not-object", _set("mounts", ["/proc"]), "mounts[0]"),
    ("mount-no-destination", _del("mounts.0.destination"), "mounts[0].destination"),
    ("mount-relative-destination", _set("mounts.0.destination", "proc"), "mounts[0].destination"),
    (
        "mount-escaping-destination",
        _set("mounts.2.destination", "/../etc"),
        "mounts[2].destination",
    ),
    (
        "mount-deep-escape",
        _set("mounts.2.destination", "/dev/../../../etc"),
        "mounts[2].destination",
    ),
    ("mount-type-number", _set("mounts.0.type", 5), "mounts[0].type"),
    ("mount-source-list", _set("mounts.0.source", ["proc"]), "mounts[0].source"),
    ("mount-options-string", _set("mounts.1.options", "ro,nosuid"), "mounts[1].options"),
    ("mount-option-number", _set("mounts.1.options", ["ro", 1]), "mounts[1].options[1]"),
    (
        "mount-uidmap-bad",
        _set("mounts.0.uidMappings", [{"containerID": 0, "hostID": 0}]),
        "mounts[0].uidMappings[0].size",
    ),
    # hostname / domainname need a UTS namespace
    ("hostname-without-uts", _namespaces("pid", "network", "ipc", "mount"), "hostname"),
    (
        "domainname-without-uts",
        _many(_set("hostname", ""), _set("domainname", "example.org"), _namespaces("pid", "mount")),
        "domainname",
    ),
    ("hostname-not-string", _set("hostname", 5), "hostname"),
    ("hostname-too-long", _set("hostname", "h" * 65), "hostname"),
    # namespaces
    ("namespaces-not-list", _set("linux.namespaces", {"type": "pid"}), "linux.namespaces"),
    ("namespace-unknown", _set("linux.namespaces", [{"type": "pidd"}]), "linux.namespaces[0].type"),
    (
        "namespace-no-type",
        _set("linux.namespaces", [{"path": "/proc/1/ns/net"}]),
        "linux.namespaces[0].type",
    ),
    ("namespace-duplicate", _namespaces(*ALL_BUT_USER, "pid"), "linux.namespaces[5].type"),
    (
        "namespace-relative-path",
        _set("linux.namespaces", [{"type": "network", "path": "proc/1/ns/net"}]),
        "linux.namespaces[0].path",
    ),
    ("linux-not-object", _set("linux", []), "linux"),
    # user namespace mappings
    (
        "uidmap-without-userns",
        _set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
        "linux.uidMappings",
    ),
    (
        "gidmap-without-userns",
        _set("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
        "linux.gidMappings",
    ),
    ("userns-without-mappings", _namespaces(*ALL_BUT_USER, "user"), "linux.uidMappings"),
    (
        "idmap-missing-size",
        _set("linux.uidMappings", [{"containerID": 0, "hostID": 0}]),
        "linux.uidMappings[0].size",
    ),
    (
        "idmap-zero-size",
        _set("linux.uidMappings", [{"containerID": 0, "hostID": 0, "size": 0}]),
        "linux.uidMappings[0].size",
    ),
    (
        "idmap-negative",
        _set("linux.gidMappings", [{"containerID": 0, "hostID": -5, "size": 1}]),
        "linux.gidMappings[0].hostID",
    ),
    (
        "idmap-overflow",
        _set("linux.uidMappings", [{"containerID": 0, "hostID": (1 << 32) - 1, "size": 2}]),
        "linux.uidMappings[0]",
    ),
    ("idmap-not-list", _set("linux.uidMappings", {"containerID": 0}), "linux.uidMappings"),
    (
        "idmap-too-many",
        _set("linux.uidMappings", [{"containerID": i, "hostID": i, "size": 1} for i in range(341)]),
        "linux.uidMappings",
    ),
    # sysctl must be namespaced by a namespace the container owns (runc validate.sysctl)
    (
        "sysctl-net-host-netns",
        _many(
            _namespaces("pid", "ipc", "uts", "mount"),
            _set("linux.sysctl", {"net.ipv4.ip_forward": "1"}),
        ),
        'linux.sysctl["net.ipv4.ip_forward"]',
    ),
    (
        "sysctl-net-slashes-host-netns",
        _many(
            _namespaces("pid", "uts", "mount"), _set("linux.sysctl", {"net/ipv4/ip_forward": "1"})
        ),
        'linux.sysctl["net/ipv4/ip_forward"]',
    ),
    (
        "sysctl-shm-host-ipc",
        _many(
            _namespaces("pid", "network", "uts", "mount"),
            _set("linux.sysctl", {"kernel.shmmax": "1"}),
        ),
        'linux.sysctl["kernel.shmmax"]',
    ),
    (
        "sysctl-msg-host-ipc",
        _many(_namespaces("pid", "uts", "mount"), _set("linux.sysctl", {"kernel.msgmax": "1"})),
        'linux.sysctl["kernel.msgmax"]',
    ),
    (
        "sysctl-mqueue-host-ipc",
        _many(_namespaces("pid", "uts", "mount"), _set("linux.sysctl", {"fs.mqueue.msg_max": "1"})),
        'linux.sysctl["fs.mqueue.msg_max"]',
    ),
    (
        "sysctl-hostname-conflicts",
        _set("linux.sysctl", {"kernel.hostname": "x"}),
        'linux.sysctl["kernel.hostname"]',
    ),
    (
        "sysctl-domainname-host-uts",
        _many(
            _set("hostname", ""),
            _namespaces("pid", "mount"),
            _set("linux.sysctl", {"kernel.domainname": "x"}),
        ),
        'linux.sysctl["kernel.domainname"]',
    ),
    (
        "sysctl-not-namespaced",
        _set("linux.sysctl", {"vm.swappiness": "0"}),
        'linux.sysctl["vm.swappiness"]',
    ),
    (
        "sysctl-kernel-other",
        _set("linux.sysctl", {"kernel.panic": "1"}),
        'linux.sysctl["kernel.panic"]',
    ),
    (
        "sysctl-value-number",
        _set("linux.sysctl", {"net.ipv4.ip_forward": 1}),
        'linux.sysctl["net.ipv4.ip_forward"]',
    ),
    ("sysctl-not-object", _set("linux.sysctl", ["net.ipv4.ip_forward=1"]), "linux.sysctl"),
    # devices
    (
        "device-bad-type",
        _set("linux.devices", [{"type": "x", "path": "/dev/x", "major": 1, "minor": 1}]),
        "linux.devices[0].type",
    ),
    (
        "device-relative-path",
        _set("linux.devices", [{"type": "c", "path": "dev/null", "major": 1, "minor": 3}]),
        "linux.devices[0].path",
    ),
    (
        "device-escaping-path",
        _set("linux.devices", [{"type": "c", "path": "/../null", "major": 1, "minor": 3}]),
        "linux.devices[0].path",
    ),
    (
        "device-no-path",
        _set("linux.devices", [{"type": "c", "major": 1, "minor": 3}]),
        "linux.devices[0].path",
    ),
    (
        "device-no-major",
        _set("linux.devices", [{"type": "c", "path": "/dev/null", "minor": 3}]),
        "linux.devices[0].major",
    ),
    (
        "device-mode-string",
        _set("linux.devices", [{"type": "p", "path": "/dev/fifo", "fileMode": "0666"}]),
        "linux.devices[0].fileMode",
    ),
    # masked / readonly paths
    ("masked-relative", _set("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths[0]"),
    (
        "readonly-relative",
        _set("linux.readonlyPaths", ["/proc/sys", "proc/bus"]),
        "linux.readonlyPaths[1]",
    ),
    ("masked-not-list", _set("linux.maskedPaths", "/proc/kcore"), "linux.maskedPaths"),
    (
        "masked-without-mountns",
        _many(_set("hostname", ""), _namespaces("pid", "network", "ipc")),
        "linux.maskedPaths",
    ),
    # hooks
    ("hooks-not-object", _set("hooks", []), "hooks"),
    ("hook-list-not-list", _set("hooks", {"prestart": {"path": "/bin/true"}}), "hooks.prestart"),
    (
        "hook-relative-path",
        _set("hooks", {"poststart": [{"path": "bin/true"}]}),
        "hooks.poststart[0].path",
    ),
    (
        "hook-no-path",
        _set("hooks", {"createRuntime": [{"args": ["x"]}]}),
        "hooks.createRuntime[0].path",
    ),
    (
        "hook-args-string",
        _set("hooks", {"poststop": [{"path": "/bin/true", "args": "true"}]}),
        "hooks.poststop[0].args",
    ),
    (
        "hook-env-number",
        _set("hooks", {"startContainer": [{"path": "/bin/true", "env": [1]}]}),
        "hooks.startContainer[0].env[0]",
    ),
    (
        "hook-timeout-zero",
        _set("hooks", {"createContainer": [{"path": "/bin/true", "timeout": 0}]}),
        "hooks.createContainer[0].timeout",
    ),
    (
        "hook-timeout-negative",
        _set("hooks", {"prestart": [{"path": "/bin/true", "timeout": -3}]}),
        "hooks.prestart[0].timeout",
    ),
    # misc linux
    ("propagation-bogus", _set("linux.rootfsPropagation", "bogus"), "linux.rootfsPropagation"),
    ("propagation-number", _set("linux.rootfsPropagation", 1), "linux.rootfsPropagation"),
    (
        "time-offsets-without-timens",
        _set("linux.timeOffsets", {"monotonic": {"secs": 1}}),
        "linux.timeOffsets",
    ),
    (
        "personality-bad",
        _set("linux.personality", {"domain": "WINDOWS"}),
        "linux.personality.domain",
    ),
    ("annotations-not-object", _set("annotations", ["a=b"]), "annotations"),
    ("annotation-value-number", _set("annotations", {"a": 1}), 'annotations["a"]'),
]


@pytest.mark.parametrize(
    "mutate,field", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_validate_rejects_with_the_field(bundle, mutate, field):
    spec = default_spec()
    mutate(spec)
    err = rejected(spec, bundle)
    assert err.field == field, str(err)
    assert str(err).startswith(field), str(err)


def test_userns_mappings_must_map_container_root(bundle):
    spec = default_spec(rootless=True)
    spec["linux"]["uidMappings"] = [{"containerID": 1, "hostID": 1000, "size": 10}]
    assert rejected(spec, bundle).field == "linux.uidMappings"


def test_joined_userns_needs_no_mappings(bundle):
    spec = default_spec()
    spec["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    validate(spec, bundle)


def test_spec_that_is_not_an_object_is_rejected(bundle):
    with pytest.raises(SpecError):
        validate([], bundle)  # type: ignore[arg-type]


def test_deeply_nested_spec_does_not_blow_the_stack(bundle):
    spec = default_spec()
    deep: list = []
    node = deep
    for _ in range(50_000):
        child: list = []
        node.append(child)
        node = child
    node.append("x\x00")
    spec["annotations_extra"] = deep
    err = rejected(spec, bundle)
    assert err.field is not None and err.field.startswith("annotations_extra[0][0]")


def test_rootfs_propagation_values_accepted(bundle):
    for prop in (
        "shared",
        "slave",
        "private",
        "unbindable",
        "rshared",
        "rslave",
        "rprivate",
        "runbindable",
    ):
        spec = default_spec()
        spec["linux"]["rootfsPropagation"] = prop
        validate(spec, bundle)


# --- load_spec -----------------------------------------------------------------------------


def write_config(bundle: str, data: bytes) -> None:
    with open(os.path.join(bundle, "config.json"), "wb") as f:
        f.write(data)


def test_load_spec_reads_the_bundle_config(bundle):
    write_config(bundle, json.dumps(default_spec()).encode())
    assert load_spec(bundle) == default_spec()


def test_load_spec_missing_config_is_not_found(bundle):
    with pytest.raises(NotFound) as info:
        load_spec(bundle)
    assert "config.json" in str(info.value)


def test_load_spec_missing_bundle_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        load_spec(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "data,words",
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"ociVersion": "1.0.2",}', "invalid JSON"),
        (b'{"a":\n\n  [1, 2', "line 3"),
        (b"[]", "JSON object"),
        (b'"config"', "JSON object"),
        (b"null", "JSON object"),
        (b'{"oomScoreAdj": NaN}', "invalid JSON"),
        (b'{"x": Infinity}', "invalid JSON"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),  # a BOM: Go refuses it too
        (b"", "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
        (b'{"n": ' + b"9" * 5000 + b"}", "invalid JSON"),
    ],
    ids=[
        "latin1",
        "trailing-comma",
        "truncated",
        "array",
        "string",
        "null",
        "nan",
        "infinity",
        "bom",
        "empty",
        "deep",
        "huge-int",
    ],
)
def test_load_spec_refuses_malformed_files_in_one_line(bundle, data, words):
    write_config(bundle, data)
    with pytest.raises(SpecError) as info:
        load_spec(bundle)
    msg = str(info.value)
    assert words in msg
    assert "\n" not in msg and len(msg) < 300


def test_load_spec_refuses_a_file_over_4_mib(bundle):
    path = os.path.join(bundle, "config.json")
    with open(path, "wb") as f:
        f.truncate(4 * 1024 * 1024 + 1)  # sparse: no need to write 4 MiB
    with pytest.raises(SpecError, match="too large"):
        load_spec(bundle)


def test_load_spec_accepts_a_file_of_exactly_4_mib(bundle):
    body = b'{"pad": "' + b"x" * (4 * 1024 * 1024 - 12) + b'"}'
    assert len(body) == 4 * 1024 * 1024 - 1
    write_config(bundle, body + b"\n")
    assert len(load_spec(bundle)["pad"]) == 4 * 1024 * 1024 - 12


def test_load_spec_refuses_a_directory(bundle):
    os.mkdir(os.path.join(bundle, "config.json"))
    with pytest.raises(SpecError, match="regular file"):
        load_spec(bundle)


def test_load_spec_refuses_a_symlink_loop(bundle):
    os.symlink("config.json", os.path.join(bundle, "config.json"))
    with pytest.raises(SpecError, match="cannot open"):
        load_spec(bundle)


def test_load_spec_refuses_a_fifo_without_blocking(bundle):
    os.mkfifo(os.path.join(bundle, "config.json"))
    with pytest.raises(SpecError, match="regular file"):
        load_spec(bundle)


# --- container ids -------------------------------------------------------------------------


@pytest.mark.parametrize("cid", ["a", "abc", "A-b_c.d+e", "0123", "x" * 1024, "...", ".a", "a.."])
def test_container_id_accepts_runc_ids(cid):
    validate_container_id(cid)


@pytest.mark.parametrize(
    "cid",
    [
        "",
        ".",
        "..",
        "a/b",
        "/abs",
        "a b",
        "tab\t",
        "new\nline",
        "caf\u00e9",
        "a\x00b",
        "x" * 1025,
        "a:b",
        "~",
    ],
)
def test_container_id_rejects_everything_else(cid):
    with pytest.raises(InvalidArgument) as info:
        validate_container_id(cid)
    assert "\n" not in str(info.value)


# --- namespaces ----------------------------------------------------------------------------


def test_namespace_flags_match_the_kernel_constants():
    libc = pytest.importorskip("hutch.linux.libc")
    assert oci.namespace_flags == {
        "pid": libc.CLONE_NEWPID,
        "network": libc.CLONE_NEWNET,
        "mount": libc.CLONE_NEWNS,
        "ipc": libc.CLONE_NEWIPC,
        "uts": libc.CLONE_NEWUTS,
        "user": libc.CLONE_NEWUSER,
        "cgroup": libc.CLONE_NEWCGROUP,
        "time": libc.CLONE_NEWTIME,
    }


def test_mount_flags_match_hutch_linux_libc():
    libc = pytest.importorskip("hutch.linux.libc")
    names = [n for n in dir(libc) if n.startswith("MS_")]
    assert names
    for name in names:
        assert getattr(oci, name) == getattr(libc, name), name


# --- mount options -------------------------------------------------------------------------


def test_mount_options_runc_dev_tmpfs():
    m = parse_mount_options(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert m.flags == MS_NOSUID | MS_STRICTATIME
    assert m.clear_flags == 0
    assert m.data == "mode=755,size=65536k"
    assert m.propagation_flags == []
    assert not m.has_rec_attr


def test_mount_options_bind_readonly_private():
    m = parse_mount_options(["ro", "nosuid", "nodev", "rbind", "rprivate"])
    assert m.flags == MS_RDONLY | MS_NOSUID | MS_NODEV | MS_BIND | MS_REC
    assert m.propagation_flags == [MS_PRIVATE | MS_REC]
    assert m.data == ""


def test_mount_options_devpts_data_keeps_order():
    m = parse_mount_options(
        ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    )
    assert m.flags == MS_NOSUID | MS_NOEXEC
    assert m.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_mount_options_later_option_wins():
    assert parse_mount_options(["ro", "rw"]) == MountOptions(clear_flags=MS_RDONLY)
    assert parse_mount_options(["rw", "ro"]) == MountOptions(flags=MS_RDONLY)
    m = parse_mount_options(["nosuid", "suid", "relatime", "norelatime"])
    assert m.flags == 0
    assert m.clear_flags == MS_NOSUID | MS_RELATIME


def test_mount_options_propagation_in_order():
    m = parse_mount_options(["bind", "shared", "rslave"])
    assert m.flags == MS_BIND
    assert m.propagation_flags == [MS_SHARED, MS_SLAVE | MS_REC]


def test_mount_options_defaults_means_nothing():
    assert parse_mount_options(["defaults"]) == MountOptions()


def test_mount_options_empty():
    assert parse_mount_options(None) == MountOptions()
    assert parse_mount_options([]) == MountOptions()


def test_mount_options_recursive_attributes():
    m = parse_mount_options(["rbind", "rro", "rnosuid"])
    assert m.flags == MS_BIND | MS_REC
    assert m.rec_attr_set == MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
    assert m.rec_attr_clr == 0
    m = parse_mount_options(["rro", "rrw"])
    assert m.rec_attr_set == 0 and m.rec_attr_clr == MOUNT_ATTR_RDONLY
    assert m.has_rec_attr


def test_mount_options_recursive_atime_also_clears_the_atime_field():
    m = parse_mount_options(["rnoatime"])
    assert m.rec_attr_set == MOUNT_ATTR_NOATIME
    assert m.rec_attr_clr == MOUNT_ATTR__ATIME


def test_mount_options_runc_extensions():
    m = parse_mount_options(["tmpcopyup", "ridmap", "size=1m"])
    assert m.tmpcopyup and m.idmap == "ridmap" and m.data == "size=1m"


def test_mount_options_repr_and_equality():
    a = parse_mount_options(["ro", "mode=755"])
    assert a == MountOptions(flags=MS_RDONLY, data="mode=755")
    assert a != MountOptions(flags=MS_RDONLY)
    assert "data='mode=755'" in repr(a)
