"""Persistent namespaces, veth plugging and the engine's network setup/teardown, on the
real kernel. Every test runs in a network namespace of its own (the host's is never
touched): the test process unshares one and returns to its own afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from hutch.config import Settings
from hutch.engine.networking import NetOptions, Networking, netns_path
from hutch.linux import libc
from hutch.network import endpoint, netns
from hutch.network.rtnl import Rtnl

pytestmark = pytest.mark.integration

CID = "c0ffee" + "0" * 58
CID2 = "beef" + "1" * 60


@pytest.fixture
def private_netns():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    libc.unshare(libc.CLONE_NEWNET)
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield
    finally:
        libc.setns(here, libc.CLONE_NEWNET)
        os.close(here)


@pytest.fixture
def settings(tmp_path, private_netns):
    s = Settings(str(tmp_path / "root"), str(tmp_path / "run"))
    yield s
    d = os.path.join(s.run, "netns")
    for name in os.listdir(d) if os.path.isdir(d) else ():
        netns.remove(os.path.join(d, name))


@dataclass
class Rec:
    id: str
    name: str
    config: dict = field(default_factory=dict)


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def wait_gone(name: str, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while name in links():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def in_ns(path: str, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True,
                          text=True, check=True).stdout


def nft_rules() -> str:
    p = subprocess.run(["nft", "list", "table", "ip", "hutch"], capture_output=True, text=True)
    return p.stdout


def test_a_pinned_namespace_exists_until_removed(tmp_path, private_netns):
    path = str(tmp_path / "ns")
    netns.create(path)
    try:
        assert os.stat(path).st_dev != os.stat(tmp_path).st_dev  # an nsfs mount
        mine = os.stat("/proc/self/ns/net").st_ino
        assert os.stat(path).st_ino != mine  # a new namespace, and we are still in ours
        assert os.stat("/proc/thread-self/ns/net").st_ino == mine
        assert "lo" in in_ns(path, "ip", "-o", "link")
    finally:
        netns.remove(path)
    assert not os.path.exists(path)
    netns.remove(path)  # quiet when gone


def test_connect_plugs_the_namespace_into_the_bridge(tmp_path, private_netns):
    path = str(tmp_path / "ns")
    netns.create(path)
    rt = Rtnl()
    try:
        link = endpoint.connect(rt, path, CID, bridge="hbr-test", gateway="10.99.0.1",
                                subnet="10.99.0.0/24", mtu=1400, ip="10.99.0.5",
                                prefixlen=24, mac="02:42:0a:63:00:05", ifname="eth0",
                                default_route=True)
        assert link.bridge_created and link.host_veth == "vethc0ffee000"[:13] + "0"
        host = {x["name"]: x for x in rt.links()}
        assert host[link.host_veth]["master"] == host["hbr-test"]["index"]
        assert host["hbr-test"]["mtu"] == 1400
        detail = subprocess.run(["ip", "-d", "link", "show", link.host_veth],
                                capture_output=True, text=True).stdout
        assert "hairpin on" in detail
        inside = in_ns(path, "ip", "-o", "addr")
        assert "10.99.0.5/24" in inside
        assert "02:42:0a:63:00:05" in in_ns(path, "ip", "-o", "link")
        assert "default via 10.99.0.1 dev eth0" in in_ns(path, "ip", "route")
        assert " 0% packet loss" in in_ns(path, "busybox", "ping", "-c1", "-W2", "10.99.0.1")
        with open("/proc/sys/net/ipv4/conf/hbr-test/route_localnet") as f:
            assert f.read().strip() == "1"
        assert endpoint.disconnect(rt, CID, "eth0")
        assert link.host_veth not in links()
        assert not endpoint.disconnect(rt, CID, "eth0")
    finally:
        rt.close()
        netns.remove(path)


def test_a_left_over_veth_of_a_crashed_start_is_replaced(tmp_path, private_netns):
    path = str(tmp_path / "ns")
    netns.create(path)
    rt = Rtnl()
    try:
        kw = dict(bridge="hbr-test", gateway="10.99.0.1", subnet="10.99.0.0/24", mtu=1500,
                  prefixlen=24, ifname="eth0", default_route=False)
        subprocess.run(["ip", "link", "add", endpoint.host_veth_name(CID, "eth0"), "type",
                        "veth", "peer", "name", "stale0"], check=True)
        endpoint.connect(rt, path, CID, ip="10.99.0.6", mac="02:42:0a:63:00:06", **kw)
        assert "stale0" not in links()
        assert "10.99.0.6/24" in in_ns(path, "ip", "-o", "addr")
    finally:
        rt.close()
        netns.remove(path)


def test_setup_then_teardown_leaves_nothing(settings):
    net = Networking(settings)
    rec = Rec(CID, "web")
    opts = NetOptions(publish=[["tcp", "", 8080, 80], ["udp", "127.0.0.1", 0, 53]])
    state = net.setup(rec, opts, ["80/tcp"])
    try:
        assert state["netns"] == netns_path(settings, CID)
        ep = state["networks"]["bridge"]
        assert ep["IPAddress"].startswith("10.77.") and ep["Gateway"] == "10.77.0.1"
        assert {p["host_port"] for p in state["ports"]} >= {8080}
        assert f"ctr:{CID}" in nft_rules()
        assert net.store.leases(container_id=CID)
    finally:
        net.teardown(CID)
    assert not os.path.exists(netns_path(settings, CID))
    assert wait_gone(endpoint.host_veth_name(CID, "eth0"))
    assert f"ctr:{CID}" not in nft_rules()
    assert not net.store.leases(container_id=CID) and not net.store.ports(CID)
    assert "hutch0" in links()  # the default bridge stays, as docker0 does
    net.teardown(CID)  # idempotent
    net.close()


def test_teardown_after_a_crash_between_namespace_and_lease(settings):
    net = Networking(settings)
    os.makedirs(os.path.dirname(netns_path(settings, CID)), exist_ok=True)
    netns.create(netns_path(settings, CID))  # setup died right after this
    net.teardown(CID)
    assert not os.path.exists(netns_path(settings, CID))
    net.close()


def test_setup_over_a_left_over_namespace_starts_clean(settings):
    net = Networking(settings)
    first = net.setup(Rec(CID, "web"), NetOptions(), [])
    # the process that owned it died without teardown; the next start finds its remains
    second = net.setup(Rec(CID, "web"), NetOptions(), [])
    try:
        assert len(net.store.leases(container_id=CID)) == 1
        assert first["networks"]["bridge"]["IPAddress"] != "" and second["netns"]
    finally:
        net.teardown(CID)
        net.close()


def test_user_network_members_see_each_other_in_their_hosts_files(settings):
    net = Networking(settings)
    nw = net.create_network("front")
    try:
        for cid in (CID, CID2):
            d = os.path.join(settings.root, "containers", cid)
            os.makedirs(d)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("")
            with open(os.path.join(d, "hosts.json"), "w") as f:
                f.write(json.dumps({"hostname": cid[:12], "extra": []}))
        net.setup(Rec(CID, "web"), NetOptions(mode="front", aliases=["www"]), [])
        net.setup(Rec(CID2, "db"), NetOptions(mode="front"), [])
        with open(os.path.join(settings.root, "containers", CID, "hosts")) as f:
            web_hosts = f.read()
        db_ip = net.store.leases(container_id=CID2)[0].ip
        assert f"{db_ip}\tdb {CID2[:12]}" in web_hosts
        net.teardown(CID2)
        with open(os.path.join(settings.root, "containers", CID, "hosts")) as f:
            assert db_ip not in f.read()
        net.teardown(CID)
        assert net.remove_network("front").id == nw.id
        assert nw.bridge not in links()
        assert f"net:{nw.bridge}" not in nft_rules()
    finally:
        net.teardown(CID)
        net.teardown(CID2)
        net.close()


def test_gc_tears_down_what_dead_containers_left(settings):
    net = Networking(settings)
    net.setup(Rec(CID, "a1"), NetOptions(publish=[["tcp", "", 0, 80]]), [])
    net.setup(Rec(CID2, "b2"), NetOptions(), [])
    try:
        done = net.gc(live={CID2})
        assert CID in done
        assert not os.path.exists(netns_path(settings, CID))
        assert os.path.exists(netns_path(settings, CID2))
        assert f"ctr:{CID}" not in nft_rules()
        assert [lease.container_id for lease in net.store.leases()] == [CID2]
    finally:
        net.teardown(CID)
        net.teardown(CID2)
        net.close()


def test_leases_left_by_a_reboot_are_released(settings):
    net = Networking(settings)
    net.setup(Rec(CID, "web"), NetOptions(publish=[["tcp", "", 0, 80]]), [])
    netns.remove(netns_path(settings, CID))  # HUTCH_RUN is a tmpfs: gone after a reboot
    net.teardown(CID)  # without its namespace file: nothing to do...
    assert net.store.leases(container_id=CID)
    net.teardown(CID, check_leases=True)  # ...unless told the container used a bridge
    assert not net.store.leases(container_id=CID) and not net.store.ports(CID)
    assert f"ctr:{CID}" not in nft_rules()
    net.close()
