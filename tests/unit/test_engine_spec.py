"""hutch.engine.spec: config.json from an image config plus docker-run options, as moby's
daemon/oci_linux.go and oci/defaults.go build it."""

from __future__ import annotations

import json
import os
import stat as statmod

import pytest

from hutch.engine import seccomp_default
from hutch.engine.spec import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    STOP_SIGNAL_ANNOTATION,
    RunOptions,
    capabilities,
    command,
    generate_spec,
    parse_bytes,
    parse_device,
    parse_ulimit,
    tmpfs_mount,
)
from hutch.engine.users import resolve_user
from hutch.errors import InvalidArgument, NotSupported
from hutch.linux import seccomp as linux_seccomp
from hutch.oci import spec as oci_spec
from hutch.oci.digest import Digest
from hutch.oci.image import ImageConfig

pytestmark = pytest.mark.unit

DIFF = Digest("sha256:" + "a" * 64)
CID = "0123456789abcdef" * 4

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
# a comment
bob:x:1001:100::/home/bob:/bin/sh
"""
GROUP = """root:x:0:
users:x:100:alice
alice:x:1000:
wheel:x:10:alice,bob
audio:x:29:bob
"""


def image(**kw: object) -> ImageConfig:
    return ImageConfig(architecture="amd64", os="linux", diff_ids=(DIFF,), **kw)


@pytest.fixture
def root(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    return rootfs


def gen(root, opts: RunOptions | None = None, img: ImageConfig | None = None, **kw) -> dict:
    kw.setdefault("cgroup_v2", False)
    kw.setdefault("machine", "x86_64")
    kw.setdefault("kernel", "6.18.0")
    kw.setdefault("host_cpus", 4)
    kw.setdefault("host_caps", tuple(ALL_CAPABILITIES))
    return generate_spec(
        img or image(cmd=("sh",)), opts or RunOptions(), rootfs=str(root),
        container_id=CID, cgroups_path="/hutch/" + CID, passwd_root=str(root), **kw)


def allowed(spec: dict) -> set[str]:
    """Syscalls allowed without argument filters."""
    return {n for r in spec["linux"]["seccomp"]["syscalls"]
            if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}


# --- entrypoint / cmd: the table of docker's Dockerfile reference ---------------------------

@pytest.mark.parametrize(
    ("entrypoint", "cmd", "expected"),
    [
        (None, ("/bin/cmd", "p1"), ["/bin/cmd", "p1"]),
        (("/bin/ep", "e1"), None, ["/bin/ep", "e1"]),
        (("/bin/ep", "e1"), ("/bin/cmd", "p1"), ["/bin/ep", "e1", "/bin/cmd", "p1"]),
        (("/bin/sh", "-c", "ep e1"), ("/bin/cmd", "p1"),
         ["/bin/sh", "-c", "ep e1", "/bin/cmd", "p1"]),
    ],
)
def test_image_entrypoint_and_cmd_combine_as_docker_documents(entrypoint, cmd, expected):
    assert command(image(entrypoint=entrypoint, cmd=cmd), RunOptions()) == expected


def test_run_arguments_replace_the_image_cmd_but_keep_its_entrypoint():
    img = image(entrypoint=("/ep",), cmd=("default",))
    assert command(img, RunOptions(cmd=["x", "y"])) == ["/ep", "x", "y"]


def test_an_entrypoint_flag_drops_the_image_cmd():
    img = image(entrypoint=("/ep",), cmd=("default",))
    assert command(img, RunOptions(entrypoint=["/other"])) == ["/other"]
    assert command(img, RunOptions(entrypoint=["/other"], cmd=["a"])) == ["/other", "a"]


def test_an_empty_entrypoint_flag_resets_the_entrypoint_and_keeps_the_cmd():
    img = image(entrypoint=("/ep",), cmd=("default",))
    assert command(img, RunOptions(entrypoint=[])) == ["default"]
    assert command(img, RunOptions(entrypoint=[], cmd=["ls"])) == ["ls"]


def test_no_command_at_all_is_refused():
    with pytest.raises(InvalidArgument, match="no command specified"):
        command(image(), RunOptions())
    with pytest.raises(InvalidArgument, match="no command specified"):
        command(image(entrypoint=("/ep",)), RunOptions(entrypoint=[]))


def test_init_puts_the_command_behind_dev_init_and_mounts_only_a_given_path(root):
    spec = gen(root, RunOptions(init=True))
    assert spec["process"]["args"] == ["/dev/init", "--", "sh"]
    assert not any(m["destination"] == "/dev/init" for m in spec["mounts"])
    spec = gen(root, RunOptions(init=True, init_path="/usr/libexec/hutch-init"))
    init = [m for m in spec["mounts"] if m["destination"] == "/dev/init"]
    assert init == [{"destination": "/dev/init", "type": "bind",
                     "source": "/usr/libexec/hutch-init", "options": ["bind", "ro"]}]


# --- environment ------------------------------------------------------------------------------

def test_env_defaults_path_hostname_home_and_term_with_a_tty(root):
    env = gen(root, RunOptions(tty=True))["process"]["env"]
    assert env == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"HOSTNAME={CID[:12]}", "TERM=xterm", "HOME=/root",
    ]
    assert "TERM=xterm" not in gen(root)["process"]["env"]


def test_env_precedence_is_image_then_env_file_then_env(root):
    img = image(cmd=("sh",), env=("PATH=/img/bin", "A=image", "B=image", "C=image", "D=image"))
    opts = RunOptions(env_file=["B=file", "C=file"], env=["C=flag", "D", "E=flag"])
    env = gen(root, opts, img)["process"]["env"]
    assert env == [
        "PATH=/img/bin", f"HOSTNAME={CID[:12]}", "A=image", "B=file", "C=flag", "E=flag",
        "HOME=/root",
    ]


def test_an_explicit_home_is_kept(root):
    env = gen(root, RunOptions(env=["HOME=/data"], user="alice"))["process"]["env"]
    assert [e for e in env if e.startswith("HOME=")] == ["HOME=/data"]


def test_cwd_is_workdir_then_image_working_dir_then_root(root):
    assert gen(root)["process"]["cwd"] == "/"
    img = image(cmd=("sh",), working_dir="/app/")
    assert gen(root, img=img)["process"]["cwd"] == "/app"
    assert gen(root, RunOptions(workdir="/srv"), img)["process"]["cwd"] == "/srv"
    with pytest.raises(InvalidArgument, match="absolute path"):
        gen(root, RunOptions(workdir="srv"))


# --- users ------------------------------------------------------------------------------------

def test_user_by_name_brings_uid_gid_home_and_supplementary_groups(root):
    u = resolve_user("alice", str(root))
    assert (u.uid, u.gid, u.home, u.additional_gids) == (1000, 1000, "/home/alice", (100, 10))


def test_user_by_uid_in_passwd_resolves_like_the_name(root):
    u = resolve_user("1001", str(root))
    assert (u.uid, u.gid, u.home, u.additional_gids) == (1001, 100, "/home/bob", (10, 29))


def test_numeric_user_not_in_passwd_runs_as_gid_0_in_root_dir(root):
    u = resolve_user("4242", str(root))
    assert (u.uid, u.gid, u.home, u.additional_gids) == (4242, 0, "/", ())
    u = resolve_user("4242:4343", str(root))
    assert (u.uid, u.gid) == (4242, 4343)


def test_an_explicit_group_replaces_the_primary_and_drops_supplementary_ones(root):
    u = resolve_user("alice:wheel", str(root))
    assert (u.uid, u.gid, u.additional_gids) == (1000, 10, ())
    assert resolve_user("alice:29", str(root)).gid == 29


def test_unknown_user_and_group_names_are_refused_like_docker(root):
    with pytest.raises(InvalidArgument,
                       match="^unable to find user nobody: no matching entries in passwd file$"):
        resolve_user("nobody", str(root))
    with pytest.raises(InvalidArgument, match="unable to find group staff: no matching entries"):
        resolve_user("alice:staff", str(root))


def test_default_user_is_root_and_works_without_passwd(tmp_path):
    u = resolve_user("", str(tmp_path))
    assert (u.uid, u.gid, u.home) == (0, 0, "/")


def test_a_symlinked_passwd_is_resolved_inside_the_root(tmp_path, root):
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "passwd").write_text("mallory:x:7:7::/m:/bin/sh\n")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "real").write_text("carol:x:5:5::/c:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("/etc/real")
    assert resolve_user("carol", str(root)).uid == 5
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../../../evil/passwd")
    with pytest.raises(InvalidArgument, match="unable to find user mallory"):
        resolve_user("mallory", str(root))


def test_image_user_is_used_unless_overridden(root):
    img = image(cmd=("sh",), user="bob")
    spec = gen(root, img=img)
    assert spec["process"]["user"] == {"uid": 1001, "gid": 100, "additionalGids": [10, 29]}
    assert gen(root, RunOptions(user="0"), img)["process"]["user"] == {"uid": 0, "gid": 0}


# --- capabilities -------------------------------------------------------------------------------

def test_default_capabilities_are_dockers(root):
    caps = gen(root)["process"]["capabilities"]
    assert caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "inheritable" not in caps and "ambient" not in caps


def test_cap_add_and_drop_accept_short_and_lower_case_names():
    caps = capabilities(["sys_admin", "CAP_NET_ADMIN"], ["net_raw", "MKNOD"], False)
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_ADMIN" in caps
    assert "CAP_NET_RAW" not in caps and "CAP_MKNOD" not in caps
    assert caps[: len(DEFAULT_CAPABILITIES) - 2] == [
        c for c in DEFAULT_CAPABILITIES if c not in ("CAP_NET_RAW", "CAP_MKNOD")]


def test_cap_drop_all_keeps_only_the_added_ones():
    assert capabilities(["chown"], ["ALL"], False) == ["CAP_CHOWN"]
    assert capabilities([], ["all"], False) == []


def test_cap_add_all_gives_everything_but_the_dropped():
    caps = capabilities(["ALL"], ["sys_admin"], False)
    assert len(caps) == len(ALL_CAPABILITIES) - 1 and "CAP_SYS_ADMIN" not in caps


def test_all_means_the_capabilities_the_host_has():
    # moby#42933: a host without CAP_SYS_RESOURCE cannot give it to a container.
    have = tuple(c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE")
    assert capabilities([], [], True, have) == list(have)
    caps = capabilities(["ALL"], ["chown"], False, have)
    assert "CAP_SYS_RESOURCE" not in caps and "CAP_CHOWN" not in caps
    assert len(caps) == len(ALL_CAPABILITIES) - 2


def test_privileged_spec_has_only_the_host_capabilities(root):
    have = ("CAP_CHOWN", "CAP_SYS_ADMIN")
    spec = gen(root, RunOptions(privileged=True), host_caps=have)
    assert spec["process"]["capabilities"]["bounding"] == list(have)


def test_unknown_capability_is_refused():
    with pytest.raises(InvalidArgument, match="unknown capability: 'CAP_FLY'"):
        capabilities(["CAP_FLY"], [], False)


def test_privileged_gets_all_caps_no_seccomp_no_masking_and_all_devices(root):
    spec = gen(root, RunOptions(privileged=True, cap_drop=["ALL"], devices=["/dev/null"]))
    assert spec["process"]["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
    linux = spec["linux"]
    assert "seccomp" not in linux
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sysfs = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert "ro" not in sysfs["/sys"] and "ro" not in sysfs["/sys/fs/cgroup"]


# --- mounts, namespaces, root -----------------------------------------------------------------

def test_default_mounts_masked_and_readonly_paths_are_dockers(root):
    spec = gen(root)
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert list(by_dest) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                             "/dev/mqueue", "/dev/shm"]
    assert "gid=5" in by_dest["/dev/pts"]["options"]
    assert "size=67108864" in by_dest["/dev/shm"]["options"]
    assert "ro" in by_dest["/sys"]["options"] and "ro" in by_dest["/sys/fs/cgroup"]["options"]
    assert spec["linux"]["maskedPaths"] == list(MASKED_PATHS)
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]


def test_user_mounts_replace_defaults_and_come_parents_first(root):
    binds = [
        {"destination": "/data/sub", "type": "bind", "source": "/b", "options": ["rbind"]},
        {"destination": "/data", "type": "bind", "source": "/a", "options": ["rbind"]},
    ]
    spec = gen(root, RunOptions(binds=binds, tmpfs={"/dev/shm": "size=1m"}))
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/dev/shm") == 1
    assert dests.index("/data") < dests.index("/data/sub")
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert shm["source"] == "tmpfs" and "size=1m" in shm["options"]


def test_tmpfs_defaults_to_noexec_nosuid_nodev_unless_overridden():
    assert tmpfs_mount("/run", "")["options"] == ["noexec", "nosuid", "nodev"]
    assert tmpfs_mount("/run", "exec,size=64k,mode=1777")["options"] == [
        "nosuid", "nodev", "exec", "size=64k", "mode=1777"]
    with pytest.raises(InvalidArgument):
        tmpfs_mount("run", "")


def test_read_only_sets_root_readonly(root):
    assert gen(root)["root"] == {"path": str(root), "readonly": False}
    assert gen(root, RunOptions(read_only=True))["root"]["readonly"] is True


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("bridge", [{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
                    {"type": "ipc"}]),
        ("none", [{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
                  {"type": "ipc"}]),
        ("host", [{"type": "mount"}, {"type": "uts"}, {"type": "pid"}, {"type": "ipc"}]),
        ("container:/proc/42/ns/net",
         [{"type": "mount"}, {"type": "network", "path": "/proc/42/ns/net"}, {"type": "uts"},
          {"type": "pid"}, {"type": "ipc"}]),
    ],
)
def test_namespaces_follow_the_network_mode(root, network, expected):
    assert gen(root, RunOptions(network=network))["linux"]["namespaces"] == expected


def test_cgroup_namespace_only_on_cgroup_v2(root):
    assert {"type": "cgroup"} in gen(root, cgroup_v2=True)["linux"]["namespaces"]
    assert {"type": "cgroup"} not in gen(root, cgroup_v2=False)["linux"]["namespaces"]


def test_bad_network_mode_is_refused(root):
    with pytest.raises(InvalidArgument, match="invalid network mode"):
        gen(root, RunOptions(network="container:abc"))


def test_a_prepared_network_namespace_is_joined_by_path(root):
    nss = gen(root, RunOptions(network="mynet", netns_path="/run/hutch/netns/x"))
    assert {"type": "network", "path": "/run/hutch/netns/x"} in nss["linux"]["namespaces"]
    nss = gen(root, RunOptions(network="host", netns_path="/run/hutch/netns/x"))
    assert all(n["type"] != "network" for n in nss["linux"]["namespaces"])


def test_hostname_labels_and_stop_signal(root):
    img = image(cmd=("sh",), labels={"a": "img", "b": "img"}, stop_signal="SIGQUIT")
    spec = gen(root, RunOptions(hostname="web", labels={"b": "run"}), img)
    assert spec["hostname"] == "web"
    assert spec["annotations"] == {"a": "img", "b": "run", STOP_SIGNAL_ANNOTATION: "SIGQUIT"}
    spec = gen(root, RunOptions(stop_signal="SIGINT"), img)
    assert spec["annotations"][STOP_SIGNAL_ANNOTATION] == "SIGINT"
    assert gen(root)["annotations"][STOP_SIGNAL_ANNOTATION] == "SIGTERM"


# --- resources, rlimits, devices ---------------------------------------------------------------

def test_cpus_become_a_quota_over_a_100ms_period(root):
    cpu = gen(root, RunOptions(cpus=1.5, cpu_shares=512, cpuset_cpus="0-1"))["linux"][
        "resources"]["cpu"]
    assert cpu == {"quota": 150000, "period": 100000, "shares": 512, "cpus": "0-1"}
    assert gen(root, RunOptions(cpus=0.5))["linux"]["resources"]["cpu"]["quota"] == 50000


def test_cpus_beyond_the_host_are_refused(root):
    with pytest.raises(InvalidArgument, match="range of CPUs is from 0.01 to 4.00"):
        gen(root, RunOptions(cpus=8))
    with pytest.raises(InvalidArgument):
        gen(root, RunOptions(cpus=0))


def test_memory_swap_defaults_to_twice_memory_and_pids_limit(root):
    res = gen(root, RunOptions(memory="64m", pids_limit=100))["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["pids"] == {"limit": 100}
    res = gen(root, RunOptions(memory=64 << 20, memory_swap=-1, pids_limit=-1))["linux"][
        "resources"]
    assert res["memory"]["swap"] == -1 and "pids" not in res


@pytest.mark.parametrize(
    ("memory", "swap", "message"),
    [("1m", None, "minimum memory limit"), (None, "1g", "always set the memory limit"),
     ("1g", "512m", "larger than memory limit")],
)
def test_memory_limits_are_checked_like_docker(root, memory, swap, message):
    with pytest.raises(InvalidArgument, match=message):
        gen(root, RunOptions(memory=memory, memory_swap=swap))


def test_parse_bytes_units():
    assert parse_bytes("1g", "x") == 1 << 30
    assert parse_bytes("512k", "x") == 512 << 10
    assert parse_bytes("100", "x") == 100
    with pytest.raises(InvalidArgument):
        parse_bytes("lots", "x")


def test_ulimits_become_rlimits(root):
    spec = gen(root, RunOptions(ulimits=["nofile=1024:2048", "nproc=64", "core=-1"]))
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
        {"type": "RLIMIT_NPROC", "soft": 64, "hard": 64},
        {"type": "RLIMIT_CORE", "soft": (1 << 64) - 1, "hard": (1 << 64) - 1},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nofile", "invalid ulimit argument: nofile"),
        ("files=1", "invalid ulimit type: files"),
        ("nofile=a:b", "not an integer"),
        ("nofile=2048:1024", "soft limit must be less than or equal to hard limit: 2048 > 1024"),
        ("nofile=1:2:3", "too many limit value arguments"),
        ("nofile=-5", "negative"),
    ],
)
def test_bad_ulimits_are_refused(text, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_ulimit(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/dev/sda", ("/dev/sda", "/dev/sda", "rwm")),
        ("/dev/sda:r", ("/dev/sda", "/dev/sda", "r")),
        ("/dev/sda:/dev/xvda", ("/dev/sda", "/dev/xvda", "rwm")),
        ("/dev/sda:/dev/xvda:rw", ("/dev/sda", "/dev/xvda", "rw")),
    ],
)
def test_device_specs_parse_like_docker(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["dev/sda", "/dev/sda:xvda", "/dev/a:/dev/b:rwx", "/a:/b:r:w"])
def test_bad_device_specs_are_refused(text):
    with pytest.raises(InvalidArgument):
        parse_device(text)


def fake_stat(mode: int, rdev: int):
    def stat(path: str) -> os.stat_result:
        if path == "/dev/missing":
            raise FileNotFoundError(2, "No such file or directory")
        # st_rdev is not in the 10-field tuple: pass it as an extra field.
        return os.stat_result((mode, 0, 0, 1, 0, 6, 0, 0, 0, 0), {"st_rdev": rdev})
    return stat


def test_devices_add_nodes_and_cgroup_rules(root):
    stat = fake_stat(statmod.S_IFBLK | 0o660, os.makedev(8, 0))
    spec = gen(root, RunOptions(devices=["/dev/sda:/dev/xvda:r"]), stat=stat)
    assert spec["linux"]["devices"] == [{"path": "/dev/xvda", "type": "b", "major": 8,
                                         "minor": 0, "fileMode": 0o660, "uid": 0, "gid": 6}]
    assert spec["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_devices_must_exist_and_be_device_nodes(root):
    with pytest.raises(InvalidArgument, match="not a device node"):
        gen(root, RunOptions(devices=["/dev/thing"]), stat=fake_stat(statmod.S_IFREG, 0))
    with pytest.raises(InvalidArgument, match="No such file"):
        gen(root, RunOptions(devices=["/dev/missing"]), stat=fake_stat(statmod.S_IFCHR, 1))


# --- security options and seccomp ---------------------------------------------------------------

def test_default_seccomp_profile_is_present_and_valid(root):
    sc = gen(root)["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    linux_seccomp.validate(sc)
    try:
        pfc = linux_seccomp.export_pfc(sc)  # libseccomp builds the filter (no root needed)
    except (OSError, NotSupported):
        pfc = None
    if pfc is not None:
        assert "ALLOW" in pfc or "allow" in pfc.lower()
    names = {n for r in sc["syscalls"] for n in r["names"]}
    assert "arch_prctl" in names and "s390_runtime_instr" not in names


def test_seccomp_unconfined_drops_the_profile(root):
    assert "seccomp" not in gen(root, RunOptions(security_opt=["seccomp=unconfined"]))["linux"]


def test_mount_is_allowed_only_with_cap_sys_admin(root):
    assert "mount" not in allowed(gen(root))
    assert "unshare" not in allowed(gen(root))
    spec = gen(root, RunOptions(cap_add=["SYS_ADMIN"]))
    assert {"mount", "unshare", "setns", "clone"} <= allowed(spec)
    assert not any(r["names"] == ["clone3"] for r in spec["linux"]["seccomp"]["syscalls"])


def test_clone_without_sys_admin_cannot_create_namespaces_and_clone3_says_enosys(root):
    rules = gen(root)["linux"]["seccomp"]["syscalls"]
    clone = [r for r in rules if r["names"] == ["clone"]]
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in rules


def test_socket_allows_every_family_but_vsock(root):
    rules = gen(root)["linux"]["seccomp"]["syscalls"]
    assert {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]} in rules


def test_dropping_a_capability_removes_its_syscalls(root):
    assert "chroot" in allowed(gen(root))
    assert "chroot" not in allowed(gen(root, RunOptions(cap_drop=["SYS_CHROOT"])))


def test_ptrace_needs_kernel_4_8_or_cap_sys_ptrace(root):
    assert "ptrace" in allowed(gen(root))
    assert "ptrace" not in allowed(gen(root, kernel="4.4.0-generic"))
    assert "ptrace" in allowed(gen(root, RunOptions(cap_add=["SYS_PTRACE"]), kernel="4.4.0"))


def test_other_arches_get_their_own_arch_list_and_rules():
    prof = seccomp_default.build_profile(seccomp_default.DEFAULT_PROFILE,
                                         list(DEFAULT_CAPABILITIES), machine="s390x",
                                         kernel="6.1")
    assert prof["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    clone = [r for r in prof["syscalls"] if r["names"] == ["clone"]]
    assert [r["args"][0]["index"] for r in clone] == [1]


def test_a_custom_seccomp_profile_is_filtered_for_the_capabilities(root):
    custom = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO",
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["reboot"], "action": "SCMP_ACT_KILL"}]}
    opts = RunOptions(security_opt=["seccomp=" + json.dumps(custom)])
    sc = gen(root, opts)["linux"]["seccomp"]
    assert [r["names"] for r in sc["syscalls"]] == [["mount"], ["reboot"]]
    linux_seccomp.validate(sc)
    with pytest.raises(InvalidArgument, match="decoding seccomp profile failed"):
        gen(root, RunOptions(security_opt=["seccomp={"]))


@pytest.mark.parametrize(
    ("opt", "expected"),
    [([], False), (["no-new-privileges"], True), (["no-new-privileges:true"], True),
     (["no-new-privileges=false"], False)],
)
def test_no_new_privileges_from_security_opt(root, opt, expected):
    assert gen(root, RunOptions(security_opt=opt))["process"]["noNewPrivileges"] is expected


def test_unknown_security_opts_are_refused(root):
    with pytest.raises(InvalidArgument):
        gen(root, RunOptions(security_opt=["bogus=1"]))
    with pytest.raises(InvalidArgument):
        gen(root, RunOptions(security_opt=["no-new-privileges=maybe"]))


# --- the whole spec -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "opts",
    [
        RunOptions(),
        RunOptions(tty=True, user="alice", workdir="/tmp", read_only=True, init=True,
                   init_path="/usr/bin/tini", tmpfs={"/run": "size=1m"}, hostname="h"),
        RunOptions(privileged=True, network="host", ulimits=["nofile=100:200"]),
        RunOptions(cap_add=["ALL"], cap_drop=["MKNOD"], memory="1g", cpus=2, pids_limit=10,
                   security_opt=["no-new-privileges", "seccomp=unconfined"], network="none"),
        RunOptions(cap_drop=["ALL"], network="container:/proc/1/ns/net",
                   binds=[{"destination": "/data", "type": "bind", "source": "/srv",
                           "options": ["rbind", "ro"]}]),
    ],
)
def test_generated_specs_pass_validation(root, opts):
    spec = gen(root, opts, cgroup_v2=True)
    oci_spec.validate(spec, str(root))
    if "seccomp" in spec["linux"]:
        linux_seccomp.validate(spec["linux"]["seccomp"])
    json.dumps(spec)  # plain JSON data


def test_a_rm_containers_overlay_is_mounted_volatile_and_unmarked(tmp_path):
    from hutch.engine.containers import _volatile_overlay
    from hutch.mount import Mount

    marker = tmp_path / "work" / "work" / "incompat" / "volatile"
    marker.mkdir(parents=True)  # left by an earlier volatile mount: the kernel would refuse
    (marker / "dirty").touch()
    overlay = Mount("overlay", "overlay", ["lowerdir=/l", "upperdir=/u",
                                           f"workdir={tmp_path / 'work'}"])
    out = _volatile_overlay([overlay])
    assert out[0].options[-1] == "volatile" and overlay.options[-1] != "volatile"
    assert not marker.exists()
    assert _volatile_overlay([Mount("bind", "/x", ["rbind"])]) == []  # native: nothing
