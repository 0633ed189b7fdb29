"""Namespaces: what the container sees of its pid/uts/user/net/ipc/mnt namespaces,
compared between runc (reference) and the runtime under test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

NS_TYPES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt"}


def _ns_links(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, _, link = line.partition("=")
        out[name] = link
    return out


NS_SCRIPT = "for n in pid net ipc uts mnt user cgroup; do echo $n=$(readlink /proc/self/ns/$n); done"


def test_pid_namespace_makes_the_process_pid_1(observe):
    obs = observe("sh", "-c", "echo $$; cat /proc/1/comm")
    assert obs.ref.stdout.splitlines()[0] == "1", obs.ref
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout == obs.ref.stdout


def test_each_namespace_in_the_spec_is_new_and_the_others_are_the_hosts(observe):
    obs = observe("sh", "-c", NS_SCRIPT)
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "net", "ipc", "uts", "mnt", "user", "cgroup")}

    def differs(text: str) -> dict[str, bool]:
        return {n: link != host[n] for n, link in _ns_links(text).items()}

    assert differs(obs.ref.stdout) == {
        "pid": True, "net": True, "ipc": True, "uts": True, "mnt": True,
        "user": False, "cgroup": False,
    }
    assert obs.mine.ok, obs.mine
    assert differs(obs.mine.stdout) == differs(obs.ref.stdout)


def test_without_a_network_namespace_the_container_shares_the_hosts(observe):
    obs = observe("readlink", "/proc/self/ns/net", prepare=lambda b: b.drop_namespace("network"))
    host = os.readlink("/proc/self/ns/net")
    assert obs.ref.stdout.strip() == host
    assert obs.mine.stdout.strip() == host, obs.mine


def test_hostname(observe):
    obs = observe("hostname", prepare=lambda b: b.spec.update(hostname="hutchbox"))
    assert obs.ref.stdout == "hutchbox\n"
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_domainname(runtime, new_bundle):
    if runtime.name == "runc":
        pytest.skip("runc 1.1.5 ignores the spec's domainname (added in runc 1.2)")
    bundle = new_bundle("cat", "/proc/sys/kernel/domainname")
    bundle.spec["domainname"] = "example.test"
    res = runtime.run(bundle)
    assert res.ok, res
    assert res.stdout == "example.test\n"


def test_joins_an_existing_network_namespace_by_path(observe, netns):
    path = f"/var/run/netns/{netns}"
    subprocess.run(
        ["ip", "-n", netns, "link", "set", "lo", "up"],
        check=True, capture_output=True,
    )
    inode = os.stat(path).st_ino

    def prepare(b):
        b.set_namespace("network", path)

    # lo is down in a fresh network namespace; we set it up in the joined one
    obs = observe("sh", "-c", "readlink /proc/self/ns/net; ip -o link show lo", prepare=prepare)
    assert obs.ref.stdout.splitlines()[0] == f"net:[{inode}]", obs.ref
    assert "LOOPBACK,UP" in obs.ref.stdout
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout.splitlines()[0] == f"net:[{inode}]"
    assert "LOOPBACK,UP" in obs.mine.stdout


def test_joins_the_namespaces_of_another_container(runtime, new_bundle):
    first = new_bundle("sleep", "100")
    cid = runtime.new_id()
    assert runtime.create(first, cid).ok
    pid = runtime.state(cid)["pid"]
    uts = os.readlink(f"/proc/{pid}/ns/uts")
    ipc = os.readlink(f"/proc/{pid}/ns/ipc")

    second = new_bundle("sh", "-c", "readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc")
    second.set_namespace("uts", f"/proc/{pid}/ns/uts")
    second.set_namespace("ipc", f"/proc/{pid}/ns/ipc")
    second.spec.pop("hostname", None)  # a joined uts namespace keeps its hostname
    res = runtime.run(second)
    assert res.ok, res
    assert res.stdout.split() == [uts, ipc]


USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _userns(b):
    b.set_namespace("user")
    b.spec["linux"]["uidMappings"] = USERNS_MAP
    b.spec["linux"]["gidMappings"] = USERNS_MAP
    # cgroup v1 hierarchies cannot be mounted from a user namespace; runc binds them.
    # sysfs can only be mounted in a user namespace that owns the netns: it does.
    # Root-owned rootfs files stay readable and executable (mode o+rx) for the mapped root.


def test_user_namespace_with_uid_and_gid_mappings(observe):
    obs = observe(
        "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id; readlink /proc/self/ns/user",
        prepare=_userns,
    )
    assert obs.ref.ok, obs.ref
    lines = obs.ref.stdout.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2].startswith("uid=0(root) gid=0(root)")
    assert lines[3] != os.readlink("/proc/self/ns/user")
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout.splitlines()[:3] == lines[:3]
    assert obs.mine.stdout.splitlines()[3] != os.readlink("/proc/self/ns/user")


def test_user_namespace_process_runs_as_the_mapped_host_uid(runtime, new_bundle):
    bundle = new_bundle("sleep", "100")
    _userns(bundle)
    cid = runtime.new_id()
    assert runtime.create(bundle, cid).ok, "create in a user namespace failed"
    pid = runtime.state(cid)["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["100000"] * 4


def test_cgroup_namespace(observe):
    obs = observe(
        "sh", "-c", "readlink /proc/self/ns/cgroup; grep -c ':/$' /proc/self/cgroup",
        prepare=lambda b: b.set_namespace("cgroup"),
    )
    host = os.readlink("/proc/self/ns/cgroup")
    assert obs.ref.stdout.splitlines()[0] != host
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout.splitlines()[0] != host
    # inside its own cgroup namespace the container sees its cgroups as roots
    assert obs.mine.stdout.splitlines()[1] == obs.ref.stdout.splitlines()[1]
