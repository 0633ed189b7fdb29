"""hutch.network.firewall against the real kernel: the rules nft lists, their removal and
idempotency, and real TCP/UDP traffic through published ports and across (isolated)
bridges.

Every test runs in a fresh network namespace of its own (this process unshares one and
returns to the original afterwards), so no rule and no packet reaches the host's. Inside
it, a test builds bridges with `ip` and puts a veth end of each "container" into a child
namespace (`ip netns add`, unique name, deleted in the finaliser). Servers and clients are
sockets of this process, created while it is setns()ed into the right namespace: a socket
stays in the namespace it was created in, so no server process is needed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hutch.linux import libc, nftables
from hutch.network.firewall import Firewall, NetRules, PortRule

pytestmark = pytest.mark.integration

TABLE = "hutch"
TIMEOUT = 2.0  # for what must work
BLOCKED = 0.3  # how long we wait to call a connection dropped


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _sysctl(path: str, value: str) -> None:
    # /proc/sys/net is the network namespace of the opening thread: ours.
    with open(f"/proc/sys/net/{path}", "w") as f:
        f.write(value)


@dataclass
class Child:
    """A "container": a named network namespace with one veth end on a bridge."""

    name: str
    fd: int
    addr: str


class Lab:
    """Bridges and child namespaces inside the test's own network namespace."""

    def __init__(self, home_fd: int) -> None:
        self.home = home_fd
        self.children: list[Child] = []
        self._veths = 0

    def bridge(self, name: str, gateway_cidr: str) -> None:
        _ip("link", "add", name, "type", "bridge")
        _ip("addr", "add", gateway_cidr, "dev", name)
        _ip("link", "set", name, "up")
        _sysctl(f"ipv4/conf/{name}/route_localnet", "1")

    def child(self, bridge: str, cidr: str, gateway: str, hairpin: bool = False) -> Child:
        name = f"hutch-fw-{secrets.token_hex(4)}"
        _ip("netns", "add", name)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        c = Child(name, fd, cidr.split("/")[0])
        self.children.append(c)
        self._veths += 1
        host, peer = f"hv{self._veths}", f"hc{self._veths}"
        _ip("link", "add", host, "type", "veth", "peer", "name", peer)
        _ip("link", "set", host, "master", bridge, "up")
        if hairpin:
            _ip("link", "set", host, "type", "bridge_slave", "hairpin", "on")
        _ip("link", "set", peer, "netns", name)
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", cidr, "dev", peer)
        _ip("-n", name, "link", "set", peer, "up")
        _ip("-n", name, "route", "add", "default", "via", gateway)
        return c

    @contextlib.contextmanager
    def inside(self, child: Child) -> Iterator[None]:
        libc.setns(child.fd, libc.CLONE_NEWNET)
        try:
            yield
        finally:
            libc.setns(self.home, libc.CLONE_NEWNET)

    def socket(self, child: Child | None, kind: int) -> socket.socket:
        """A socket in `child`'s namespace (None: the test's own)."""
        if child is None:
            return socket.socket(socket.AF_INET, kind)
        with self.inside(child):
            return socket.socket(socket.AF_INET, kind)

    def close(self) -> None:
        for c in self.children:
            os.close(c.fd)
            subprocess.run(["ip", "netns", "del", c.name], capture_output=True, timeout=10)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh network namespace for this test, with forwarding on."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("needs iproute2 and nftables")
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    libc.unshare(libc.CLONE_NEWNET)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    lab = Lab(home)
    try:
        _ip("link", "set", "lo", "up")
        _sysctl("ipv4/ip_forward", "1")
        yield lab
    finally:
        try:
            lab.close()
        finally:
            libc.setns(saved, libc.CLONE_NEWNET)
            os.close(saved)
            os.close(home)


def listed() -> dict:
    """`nft -j list table ip hutch` as {comment: [rule, ...]} plus the set's elements."""
    out = subprocess.run(["nft", "-j", "list", "table", "ip", TABLE],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return {"absent": True}
    found: dict = {"rules": {}, "bridges": set(), "chains": set()}
    for item in json.loads(out.stdout)["nftables"]:
        if "rule" in item:
            r = item["rule"]
            found["rules"].setdefault(r.get("comment"), []).append(r)
        elif "set" in item and item["set"]["name"] == "bridges":
            found["bridges"] = set(item["set"].get("elem", []))
        elif "chain" in item:
            found["chains"].add(item["chain"]["name"])
    return found


def tcp_exchange(lab: Lab, server: Child, port: int, client: Child | None, dest: str,
                 dport: int) -> tuple[str, str]:
    """Connect from `client` to dest:dport, expecting `server`'s listener on `port` to
    answer; return (what the client read, the peer address the server saw)."""
    srv = lab.socket(server, socket.SOCK_STREAM)
    cli = lab.socket(client, socket.SOCK_STREAM)
    with srv, cli:
        srv.bind(("0.0.0.0", port))
        srv.listen(1)
        srv.settimeout(TIMEOUT)
        cli.settimeout(TIMEOUT)
        cli.connect((dest, dport))
        conn, peer = srv.accept()
        with conn:
            cli.sendall(b"ping")
            conn.sendall(b"pong:" + conn.recv(16))
            return cli.recv(64).decode(), peer[0]


def tcp_blocked(lab: Lab, server: Child, client: Child, port: int = 7000) -> bool:
    """True when a connection from `client` to `server`'s address gets no answer."""
    srv = lab.socket(server, socket.SOCK_STREAM)
    cli = lab.socket(client, socket.SOCK_STREAM)
    with srv, cli:
        srv.bind(("0.0.0.0", port))
        srv.listen(1)
        cli.settimeout(BLOCKED)
        try:
            cli.connect((server.addr, port))
        except (TimeoutError, OSError) as e:
            if isinstance(e, TimeoutError) or e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return True
            raise
        return False


# --- the library itself ------------------------------------------------------------------


def test_nft_context_speaks_to_the_namespace_it_was_made_in(lab: Lab) -> None:
    nft = nftables.Nft()
    nft.run("add table ip probe")
    other = f"hutch-fw-{secrets.token_hex(4)}"
    _ip("netns", "add", other)
    try:
        fd = os.open(f"/run/netns/{other}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(fd, libc.CLONE_NEWNET)
            try:
                nft.run("add table ip stillhome")
                there = nftables.Nft()
                assert there.run("list tables").strip() == ""
                there.close()
            finally:
                libc.setns(lab.home, libc.CLONE_NEWNET)
        finally:
            os.close(fd)
    finally:
        subprocess.run(["ip", "netns", "del", other], capture_output=True, timeout=10)
    assert set(nft.run("list tables").split()) >= {"probe", "stillhome"}
    nft.close()


def test_nft_errors_carry_errno_and_the_first_error_line(lab: Lab) -> None:
    with nftables.Nft() as nft:
        with pytest.raises(OSError) as e:
            nft.run("delete table ip nothere")
        assert e.value.errno == errno.ENOENT
        assert str(e.value).endswith("nft: Error: Could not process rule: No such file or directory")
        with pytest.raises(OSError) as e:
            nft.run("add table ip t\nadd chain ip t c\nbogus words")
        assert e.value.errno == errno.EINVAL and "syntax error" in str(e.value)
        assert nft.run("list tables") == ""  # the failed batch added nothing
        # the buffers were rewound: a good command after a bad one prints only its own
        nft.run("add table ip t")
        assert nft.run("list tables").strip() == "table ip t"
        assert nft.run_json("list tables")["nftables"][1]["table"]["name"] == "t"
        echoed = nft.run_json("add chain ip t c", echo=True)
        assert echoed["nftables"][0]["add"]["chain"]["name"] == "c"


# --- rules as nft lists them -------------------------------------------------------------


NET0 = NetRules("hbr0", "10.231.0.0/24")
PORTS = [PortRule("tcp", "", 8080, "10.231.0.2", 80),
         PortRule("udp", "127.0.0.1", 5353, "10.231.0.2", 53)]


def test_rules_are_listed_once_however_often_they_are_added(lab: Lab) -> None:
    fw = Firewall()
    for _ in range(2):
        fw.ensure_base()
        fw.add_network(NET0)
        fw.add_ports("c0ffee", PORTS)
    got = listed()
    assert got["chains"] == {"prerouting", "output", "ports", "postrouting", "forward"}
    assert len(got["rules"][None]) == 2  # the two jumps to `ports`, not four
    assert len(got["rules"]["net:hbr0"]) == 5
    assert [r["chain"] for r in got["rules"]["ctr:c0ffee"]] == ["ports", "ports"]
    assert got["bridges"] == {"hbr0"}
    assert fw.owners() == {"c0ffee"} and fw.networks() == {"hbr0"}


def test_readding_ports_replaces_them(lab: Lab) -> None:
    fw = Firewall()
    fw.add_ports("c0ffee", PORTS)
    fw.add_ports("beef", PORTS[:1])
    fw.add_ports("c0ffee", [PortRule("tcp", "", 9090, "10.231.0.9", 90)])
    rules = listed()["rules"]
    assert len(rules["ctr:c0ffee"]) == 1
    assert rules["ctr:c0ffee"][0]["expr"][-1] == {"dnat": {"addr": "10.231.0.9", "port": 90}}
    assert len(rules["ctr:beef"]) == 1


def test_removal_leaves_nothing_of_that_owner_or_network(lab: Lab) -> None:
    fw = Firewall()
    fw.add_network(NET0)
    fw.add_network(NetRules("hbr1", "10.231.1.0/24", internal=True))
    fw.add_ports("c0ffee", PORTS)
    fw.add_ports("beef", PORTS[:1])
    for _ in range(2):  # the second time, there is nothing left to remove
        fw.remove_ports("c0ffee")
        fw.remove_network("hbr0")
    got = listed()
    assert "ctr:c0ffee" not in got["rules"] and "net:hbr0" not in got["rules"]
    assert len(got["rules"]["ctr:beef"]) == 1 and len(got["rules"]["net:hbr1"]) == 4
    assert got["bridges"] == {"hbr1"}
    fw.remove_all()
    fw.remove_all()
    assert listed() == {"absent": True}
    fw.remove_ports("beef")  # no table at all: still quiet
    fw.remove_network("hbr1")
    assert fw.owners() == set() and fw.networks() == set()


# --- real traffic ------------------------------------------------------------------------


def test_published_tcp_port_reaches_the_container_from_the_hosts_loopback(lab: Lab) -> None:
    lab.bridge("hbr0", "10.231.0.1/24")
    ctr = lab.child("hbr0", "10.231.0.2/24", "10.231.0.1")
    fw = Firewall()
    fw.add_network(NET0)
    fw.add_ports("c0ffee", [PortRule("tcp", "", 18080, ctr.addr, 8080)])
    reply, peer = tcp_exchange(lab, ctr, 8080, None, "127.0.0.1", 18080)
    assert reply == "pong:ping"
    assert peer == "10.231.0.1"  # masqueraded from 127.0.0.1 to the bridge's address
    # re-published elsewhere; reached through the bridge's own address this time
    fw.add_ports("c0ffee", [PortRule("tcp", "", 18080, ctr.addr, 8081)])
    assert tcp_exchange(lab, ctr, 8081, None, "10.231.0.1", 18080)[0] == "pong:ping"


def test_published_udp_port_reaches_the_container(lab: Lab) -> None:
    lab.bridge("hbr0", "10.231.0.1/24")
    ctr = lab.child("hbr0", "10.231.0.2/24", "10.231.0.1")
    fw = Firewall()
    fw.add_network(NET0)
    fw.add_ports("c0ffee", [PortRule("udp", "127.0.0.1", 15353, ctr.addr, 5353)])
    srv = lab.socket(ctr, socket.SOCK_DGRAM)
    cli = lab.socket(None, socket.SOCK_DGRAM)
    with srv, cli:
        srv.bind(("0.0.0.0", 5353))
        srv.settimeout(TIMEOUT)
        cli.settimeout(TIMEOUT)
        cli.sendto(b"query", ("127.0.0.1", 15353))
        data, peer = srv.recvfrom(64)
        assert data == b"query" and peer[0] == "10.231.0.1"
        srv.sendto(b"answer", peer)
        data, source = cli.recvfrom(64)
        assert data == b"answer" and source == ("127.0.0.1", 15353)


def test_removed_port_no_longer_forwards(lab: Lab) -> None:
    lab.bridge("hbr0", "10.231.0.1/24")
    ctr = lab.child("hbr0", "10.231.0.2/24", "10.231.0.1")
    fw = Firewall()
    fw.add_network(NET0)
    fw.add_ports("c0ffee", [PortRule("tcp", "", 18080, ctr.addr, 8080)])
    fw.remove_ports("c0ffee")
    cli = lab.socket(None, socket.SOCK_STREAM)
    with cli, pytest.raises(ConnectionRefusedError):
        cli.settimeout(TIMEOUT)
        cli.connect(("127.0.0.1", 18080))  # nothing listens on the host itself


def test_hairpin_a_container_reaches_a_neighbours_published_port_via_the_host(lab: Lab) -> None:
    lab.bridge("hbr0", "10.231.0.1/24")
    ctr = lab.child("hbr0", "10.231.0.2/24", "10.231.0.1")
    other = lab.child("hbr0", "10.231.0.3/24", "10.231.0.1")
    fw = Firewall()
    fw.add_network(NET0)
    fw.add_ports("c0ffee", [PortRule("tcp", "", 18080, ctr.addr, 8080)])
    reply, peer = tcp_exchange(lab, ctr, 8080, other, "10.231.0.1", 18080)
    assert reply == "pong:ping" and peer == "10.231.0.1"


def test_hairpin_a_container_reaches_its_own_published_port_via_the_host(lab: Lab) -> None:
    # The bridge sends a frame back out the port it came in only with hairpin mode on
    # that port (br_netfilter bridges a DNATed packet whose new destination is on the
    # same bridge); Docker sets it too when it runs without its userland proxy.
    lab.bridge("hbr0", "10.231.0.1/24")
    ctr = lab.child("hbr0", "10.231.0.2/24", "10.231.0.1", hairpin=True)
    fw = Firewall()
    fw.add_network(NET0)
    fw.add_ports("c0ffee", [PortRule("tcp", "", 18080, ctr.addr, 8080)])
    reply, peer = tcp_exchange(lab, ctr, 8080, ctr, "10.231.0.1", 18080)
    assert reply == "pong:ping" and peer == "10.231.0.1"


def test_hutch_networks_are_isolated_from_each_other(lab: Lab) -> None:
    lab.bridge("hbr1", "10.231.1.1/24")
    lab.bridge("hbr2", "10.231.2.1/24")
    a = lab.child("hbr1", "10.231.1.2/24", "10.231.1.1")
    b = lab.child("hbr2", "10.231.2.2/24", "10.231.2.1")
    assert not tcp_blocked(lab, b, a)  # routed between bridges before any rule
    fw = Firewall()
    fw.add_network(NetRules("hbr1", "10.231.1.0/24"))
    fw.add_network(NetRules("hbr2", "10.231.2.0/24"))
    assert tcp_blocked(lab, b, a, 7001)
    assert tcp_blocked(lab, a, b, 7002)
    fw.remove_network("hbr2")  # hbr2 no longer hutch's: no longer isolated
    assert not tcp_blocked(lab, b, a, 7003)


def test_internal_network_forwards_nothing_out_or_in(lab: Lab) -> None:
    lab.bridge("hbr1", "10.231.1.1/24")
    lab.bridge("hbr2", "10.231.2.1/24")
    a = lab.child("hbr1", "10.231.1.2/24", "10.231.1.1")
    b = lab.child("hbr2", "10.231.2.2/24", "10.231.2.1")
    fw = Firewall()
    fw.add_network(NetRules("hbr1", "10.231.1.0/24", internal=True))  # hbr2 not hutch's
    assert tcp_blocked(lab, b, a, 7001)
    assert tcp_blocked(lab, a, b, 7002)
    # within the bridge, containers still talk
    c = lab.child("hbr1", "10.231.1.3/24", "10.231.1.1")
    assert not tcp_blocked(lab, a, c, 7003)
