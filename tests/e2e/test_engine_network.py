"""Container networking end to end: the installed `hutch` as a user runs it, the traffic
seen from both sides.

Every test runs in the e2e session's own network namespace (conftest's `e2e_netns`): the
bridges, veths and nftables rules hutch makes, and the servers and clients the tests
start, live there, so nothing here touches the host's network. What docker shows with the
same flags is the reference: containers on one user-defined network reach each other by
name and alias, networks are isolated from each other, published ports answer on the
host's addresses (and hairpin back into containers), traffic leaving a network is
masqueraded, and nothing is left of a container's network after it is gone, whatever
killed it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from e2e_helpers import run_d, wait_for

pytestmark = pytest.mark.e2e

# The busybox httpd a container serves `text` with, at / on `port`.
HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www"
UDP_ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 5353))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    data, peer = s.recvfrom(2048)\n"
    "    s.sendto(b'echo ' + data + b' from ' + peer[0].encode(), peer)\n"
)
# A TCP server that answers each connection, HTTP-style, with the address it came from.
PEER_ECHO = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], 0))\n"
    "s.listen(8)\n"
    "print(s.getsockname()[1], flush=True)\n"
    "while True:\n"
    "    c, peer = s.accept()\n"
    "    c.settimeout(2)\n"
    "    try:\n"
    "        c.recv(4096)\n"
    "    except OSError:\n"
    "        pass\n"
    "    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\npeer=' + "
    "peer[0].encode() + b'\\n')\n"
    "    c.close()\n"
)
# Containers that look up names their /etc/hosts lacks get a resolver that refuses at once:
# the host's (copied into resolv.conf) is unreachable from this namespace and times out.
FAST_NXDOMAIN = ("--dns", "127.0.0.1")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- helpers ---------------------------------------------------------------------------------

def one_line_error(p: subprocess.CompletedProcess) -> str:
    """The error line, after checking stderr has no other (a `hint:` line may follow)."""
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith("hint:")]
    assert len(lines) == 1, p.stderr
    return lines[0]




def httpd(hutch, text: str, *args: str, port: int = 80) -> str:
    """A detached container (run with `args`) serving `text` over HTTP on `port`."""
    return run_d(hutch, *args, hutch.image, "sh", "-c", HTTPD.format(text=text, port=port))


def sh(hutch, cid: str, script: str, **kw) -> subprocess.CompletedProcess:
    return hutch("exec", cid, "sh", "-c", script, **kw)


def sh_parallel(hutch, jobs: list[tuple[str, str]],
                timeout: float = 30) -> list[subprocess.CompletedProcess]:
    """`exec CID sh -c SCRIPT` for each (CID, SCRIPT) at the same time (probes that wait
    for timeouts wait once)."""
    procs = [(hutch.popen("exec", cid, "sh", "-c", script, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), cid)
             for cid, script in jobs]
    out = []
    for proc, _ in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out




def can_connect(host: str, port: int, timeout: float = 1) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_tcp(host: str, port: int, timeout: float = 10) -> None:
    wait_for(lambda: can_connect(host, port, 0.5), timeout, f"{host}:{port} to listen")


def http_get(host: str, port: int) -> str:
    with _NO_PROXY.open(f"http://{host}:{port}/", timeout=5) as r:
        return r.read().decode()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing in this namespace uses now (published ports are DNAT rules, not
    sockets: the kernel would hand out one of those again, so each test asks anew)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ip_of(hutch, ref: str, network: str | None = None) -> str:
    ns = hutch.inspect(ref)["NetworkSettings"]
    return ns["Networks"][network]["IPAddress"] if network else ns["IPAddress"]


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                          check=True).stdout


def link_names(text: str) -> set[str]:
    """Interface names of `ip -o link` output (without the @peer suffix)."""
    return {line.split(":")[1].strip().split("@")[0] for line in text.splitlines()
            if line.strip()}


def nft_table() -> str:
    return subprocess.run(["nft", "-j", "list", "table", "ip", "hutch"], capture_output=True,
                          text=True, check=True).stdout


def leases_of(hutch, cid: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{hutch.root / 'networks.db'}?mode=ro", uri=True, timeout=10)
    try:
        return (db.execute("SELECT network_id, addr FROM leases WHERE container_id = ?",
                           (cid,)).fetchall()
                + db.execute("SELECT proto, host_port FROM ports WHERE container_id = ?",
                             (cid,)).fetchall())
    finally:
        db.close()


def wait_no_veth(*cids: str, timeout: float = 5) -> None:
    """The host ends of the containers' veths are gone. Unpinning a namespace deletes its
    veth pairs, but the kernel does it asynchronously (hutch does not wait for it): poll."""
    def none_left() -> bool:
        here = links()
        return not [c for c in cids if f"veth{c[:9]}" in here]
    wait_for(none_left, timeout, "the veths to go")


def assert_no_network_left(hutch, cid: str) -> None:
    """Nothing of the container's network: veth, pinned namespace, DNAT rule, lease."""
    assert not (hutch.run_dir / "netns" / cid).exists()
    wait_no_veth(cid)
    assert f"ctr:{cid}" not in nft_table()
    assert leases_of(hutch, cid) == []


def hosts_lines(hutch, cid: str) -> list[list[str]]:
    return [line.split() for line in hutch.out("exec", cid, "cat", "/etc/hosts").splitlines()]


def wait_gone(pid: int, timeout: float = 10) -> None:
    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    wait_for(gone, timeout, f"process {pid} to die")


@pytest.fixture
def network(hutch) -> Iterator:
    """network(*create_args) -> name: a user-defined network with a unique name, removed
    after the test with the containers the test left (a network in use cannot go)."""
    before = set(hutch.ids())
    made: list[str] = []

    def create(*args: str) -> str:
        name = f"e2enet-{uuid.uuid4().hex[:8]}"
        hutch.out("network", "create", *args, name)
        made.append(name)
        return name

    yield create
    ids = [i for i in hutch.ids() if i not in before]
    if ids:
        hutch("rm", "-f", "-v", *ids, timeout=120)
    if made:
        hutch("network", "rm", *made)
        left = hutch.out("network", "ls", "--format", "{{.Name}}").split()
        assert not set(made) & set(left), f"networks left: {set(made) & set(left)}"


# -- 1. one user network: names, aliases, /etc/hosts -------------------------------------------

def test_containers_on_a_user_network_reach_each_other_by_name_and_alias(hutch, network):
    net = network()
    subnet = ipaddress.ip_network(
        json.loads(hutch.out("network", "inspect", net))[0]["IPAM"]["Config"][0]["Subnet"])
    a = httpd(hutch, "from-a", "--name", f"a-{net}", "--network", net, *FAST_NXDOMAIN)
    a_ip = ip_of(hutch, a)
    assert ipaddress.ip_address(a_ip) in subnet

    b = httpd(hutch, "from-b", "--name", f"b-{net}", "--network", net,
              "--network-alias", f"web-{net}")
    b_ip = ip_of(hutch, b)
    assert a_ip != b_ip and ipaddress.ip_address(b_ip) in subnet
    assert hutch.inspect(b)["NetworkSettings"]["Networks"][net]["Aliases"] == [f"web-{net}"]
    # a's /etc/hosts (bind-mounted) was rewritten in place when b started:
    # "IP name aliases shortid"
    assert [b_ip, f"b-{net}", f"web-{net}", b[:12]] in hosts_lines(hutch, a)
    assert [a_ip, f"a-{net}", a[:12]] in hosts_lines(hutch, b)

    wait_tcp(b_ip, 80)
    wait_tcp(a_ip, 80)
    p = sh(hutch, a, f"ping -c1 -W2 b-{net} && ping -c1 -W2 web-{net} && "
                     f"ping -c1 -W2 {b[:12]} && wget -qO- http://web-{net}/ && "
                     f"wget -qO- http://b-{net}/")
    assert p.returncode == 0, p.stdout + p.stderr
    for name in (f"b-{net}", f"web-{net}", b[:12]):
        assert f"PING {name} ({b_ip})" in p.stdout, p.stdout
    assert p.stdout.split("\n")[-3:] == ["from-b", "from-b", ""], p.stdout
    assert hutch.out("exec", b, "wget", "-qO-", f"http://a-{net}/").strip() == "from-a"

    hutch.out("rm", "-f", b)
    lines = hosts_lines(hutch, a)
    assert not [x for x in lines if b_ip in x or f"b-{net}" in x or f"web-{net}" in x], lines
    assert [a_ip, a[:12]] in lines  # its own line stays
    p = sh(hutch, a, f"ping -c1 -W1 b-{net}")
    assert p.returncode != 0 and "bad address" in p.stderr, p.stderr


# -- 2. isolation between networks -------------------------------------------------------------

def test_a_renamed_container_is_known_to_its_peers_by_its_new_name(hutch, network):
    net = network()
    old, new = f"old-{net}", f"new-{net}"
    cid = run_d(hutch, "--network", net, "--name", old, hutch.image, "sleep", "60")
    peer = run_d(hutch, "--network", net, hutch.image, "sleep", "60")
    ip = ip_of(hutch, cid)
    assert [ip, old, cid[:12]] in hosts_lines(hutch, peer)
    hutch.out("rename", old, new)
    lines = hosts_lines(hutch, peer)
    assert [ip, new, cid[:12]] in lines and not [x for x in lines if old in x], lines


def test_containers_on_different_networks_cannot_reach_each_other(hutch, network):
    net1, net2 = network(), network()
    c1 = httpd(hutch, "one", "--network", net1, *FAST_NXDOMAIN)
    c2 = httpd(hutch, "two", "--network", net2, *FAST_NXDOMAIN)
    s1, s2 = (hutch.inspect(c)["NetworkSettings"] for c in (c1, c2))
    assert ipaddress.ip_network(f"{s1['IPAddress']}/{s1['IPPrefixLen']}", strict=False) != \
        ipaddress.ip_network(f"{s2['IPAddress']}/{s2['IPPrefixLen']}", strict=False)
    wait_tcp(s1["IPAddress"], 80)  # both serve: the host reaches them through their bridges
    wait_tcp(s2["IPAddress"], 80)

    # the probes that must time out run side by side
    probe = ("(ping -c1 -W2 {gw} >/dev/null; echo gateway=$?) & "
             "(ping -c1 -W1 {other} >/dev/null; echo ping=$?) & "
             "(echo GET / | nc -w 1 {other} 80; echo nc=$?) & "
             "(ping -c1 -W1 {other_name} >/dev/null 2>&1; echo name=$?) & wait")
    results = sh_parallel(hutch, [
        (me, probe.format(gw=mine["Gateway"], other=other["IPAddress"], other_name=oid[:12]))
        for me, mine, oid, other in ((c1, s1, c2, s2), (c2, s2, c1, s1))])
    for p in results:
        assert p.returncode == 0, p.stderr
        got = dict(x.split("=", 1) for x in p.stdout.splitlines() if "=" in x)
        assert got["gateway"] == "0", p.stdout  # its own gateway answers
        assert got["ping"] != "0" and got["nc"] != "0", p.stdout  # the other does not
        assert got["name"] != "0", p.stdout  # nor resolves
        assert "HTTP" not in p.stdout and "one" not in p.stdout and "two" not in p.stdout


# -- 3. published tcp ports --------------------------------------------------------------------

def test_published_port_answers_on_loopback_and_on_the_gateway_and_from_containers(hutch):
    port = free_port()
    srv = httpd(hutch, "published", "-p", f"{port}:80")
    info = hutch.inspect(srv)
    gateway = info["NetworkSettings"]["Gateway"]
    if "HUTCH_BRIDGE_SUBNET" not in os.environ:
        assert gateway == "10.77.0.1"
    assert info["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0",
                                                           "HostPort": str(port)}]
    assert hutch.out("port", srv).strip() == f"80/tcp -> 0.0.0.0:{port}"
    assert hutch.out("port", srv, "80").strip() == f"0.0.0.0:{port}"  # docker's short form
    assert f"0.0.0.0:{port}->80/tcp" in hutch.out("ps", "--filter", f"id={srv}")

    wait_for(lambda: can_connect("127.0.0.1", port), 10, "the published port")
    assert http_get("127.0.0.1", port).strip() == "published"
    assert http_get(gateway, port).strip() == "published"

    # hairpin: another container, through the gateway, to the published port; and the
    # container to its own published port (back out of the bridge port it came in by)
    client = run_d(hutch, hutch.image, "sleep", "60")
    for cid in (client, srv):
        p = hutch("exec", cid, "wget", "-qO-", f"http://{gateway}:{port}/", timeout=20)
        assert (p.returncode, p.stdout.strip()) == (0, "published"), p.stderr


def test_publish_on_127_0_0_1_answers_there_only(hutch):
    port = free_port()
    srv = httpd(hutch, "loopback-only", "-p", f"127.0.0.1:{port}:80")
    gateway = hutch.inspect(srv)["NetworkSettings"]["Gateway"]
    assert hutch.out("port", srv).strip() == f"80/tcp -> 127.0.0.1:{port}"
    wait_for(lambda: can_connect("127.0.0.1", port), 10, "the published port")
    assert http_get("127.0.0.1", port).strip() == "loopback-only"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((gateway, port), timeout=2).close()


def test_publish_all_maps_the_exposed_port_to_a_random_one(hutch):
    srv = httpd(hutch, "exposed", "--expose", "8081", "-P", port=8081)
    out = hutch.out("port", srv).strip()
    m = re.fullmatch(r"8081/tcp -> 0\.0\.0\.0:(\d+)", out)
    assert m, out
    port = int(m.group(1))
    assert 1024 <= port <= 65535
    assert hutch.inspect(srv)["NetworkSettings"]["Ports"]["8081/tcp"][0]["HostPort"] == str(port)
    wait_for(lambda: can_connect("127.0.0.1", port), 10, "the random port")
    assert http_get("127.0.0.1", port).strip() == "exposed"


# -- 4. udp ------------------------------------------------------------------------------------

@pytest.fixture
def host_python(tmp_path) -> tuple[str, ...]:
    """`run` arguments that give a container the host's python (the image has none) at
    /opt/py/python3, read-only. A copy of the binary: the runtime refuses to execute its
    own interpreter's file inside a container (CVE-2019-5736), and hutch runs on it."""
    bindir = tmp_path / "py"
    bindir.mkdir()
    shutil.copy2(os.path.realpath("/usr/bin/python3"), bindir / "python3")
    return ("-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro",
            "-v", f"{bindir}:/opt/py:ro")


def test_published_udp_port_echoes_datagrams(hutch, host_python):
    port = free_port(socket.SOCK_DGRAM)
    srv = run_d(hutch, *host_python, "-p", f"{port}:5353/udp", hutch.image,
                "/opt/py/python3", "-I", "-c", UDP_ECHO)
    wait_for(lambda: "ready" in hutch("logs", srv).stdout, 10, "the echo server")
    assert hutch.out("port", srv).strip() == f"5353/udp -> 0.0.0.0:{port}"
    gateway = hutch.inspect(srv)["NetworkSettings"]["Gateway"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)

        def echo() -> bytes:
            s.sendto(b"hello", ("127.0.0.1", port))
            try:
                return s.recv(2048)
            except TimeoutError:
                return b""

        reply = wait_for(echo, 10, "an echo")
        # from 127.0.0.1, masqueraded to the bridge's address on the way in
        assert reply == f"echo hello from {gateway}".encode(), reply
        s.sendto(b"again", (gateway, port))
        assert s.recv(2048) == f"echo again from {gateway}".encode()


# -- 5. masquerade -----------------------------------------------------------------------------

@pytest.fixture
def outside(hutch) -> Iterator[tuple[str, int]]:
    """A namespace standing in for the outside world, joined to ours by a veth pair
    (192.0.2.1 here, 192.0.2.2 there), with a TCP server there that answers with the
    address it saw: (server address, port)."""
    name = f"hutch-e2e-out-{uuid.uuid4().hex[:8]}"
    here, there = f"vo{name[-8:]}", f"vi{name[-8:]}"
    server = None
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (f"link add {here} type veth peer name {there} netns {name}",
                    f"addr add 192.0.2.1/24 dev {here}", f"link set {here} up",
                    f"-n {name} addr add 192.0.2.2/24 dev {there}",
                    f"-n {name} link set {there} up", f"-n {name} link set lo up"):
            subprocess.run(["ip", *cmd.split()], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-I", "-c",
                                   PEER_ECHO, "192.0.2.2"], stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline())
        yield "192.0.2.2", port
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_traffic_leaving_the_bridge_is_masqueraded(hutch, outside):
    addr, port = outside
    c = run_d(hutch, hutch.image, "sleep", "60")
    c_ip = ip_of(hutch, c)
    p = hutch("exec", c, "wget", "-qO-", f"http://{addr}:{port}/", timeout=20)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "peer=192.0.2.1", (c_ip, p.stdout)


# -- 6. many containers at once ----------------------------------------------------------------

def test_twenty_parallel_runs_get_distinct_addresses_and_leave_no_lease(hutch):
    procs = [hutch.popen("run", "-d", hutch.image, "sleep", "120", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(20)]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids.append(out.strip())
    infos = json.loads(hutch.out("inspect", "--type", "container", *ids))
    addresses = {i["NetworkSettings"]["IPAddress"] for i in infos}
    assert len(addresses) == 20 and "" not in addresses, addresses
    macs = {i["NetworkSettings"]["MacAddress"] for i in infos}
    assert len(macs) == 20
    assert all(i["State"]["Status"] == "running" for i in infos)

    hutch.out("rm", "-f", *ids, timeout=120)
    for cid in ids:
        assert not (hutch.run_dir / "netns" / cid).exists()
        assert leases_of(hutch, cid) == []
    wait_no_veth(*ids)


# -- 7. what a crash leaves is cleaned up ------------------------------------------------------

def kill_monitor_and_container(hutch, cid: str) -> None:
    state = hutch.inspect(cid)["State"]
    monitor, pid = state["MonitorPid"], state["Pid"]
    assert monitor > 0 and pid > 0, state
    os.kill(monitor, signal.SIGKILL)
    wait_gone(monitor)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)


@pytest.mark.parametrize("cleanup", [("ps", "-a"), ("stop", "{id}"),
                                     ("network", "prune", "-f"), ("system", "prune", "-f")],
                         ids=["ps", "stop", "network-prune", "system-prune"])
def test_a_killed_monitor_and_container_leave_no_network_behind(hutch, cleanup):
    port = free_port()
    cid = httpd(hutch, "crash", "-p", f"{port}:80")
    wait_for(lambda: can_connect("127.0.0.1", port), 10, "the published port")
    assert f"veth{cid[:9]}0" in links() and f"ctr:{cid}" in nft_table()
    assert (hutch.run_dir / "netns" / cid).exists() and leases_of(hutch, cid)

    kill_monitor_and_container(hutch, cid)
    p = hutch(*[a.format(id=cid) for a in cleanup], timeout=60)
    assert p.returncode == 0, p.stderr
    assert_no_network_left(hutch, cid)
    assert not can_connect("127.0.0.1", port, 0.5)


# -- 8. network modes, resolv.conf, hosts, addresses, errors -----------------------------------

def test_network_none_has_only_loopback(hutch):
    out = hutch.out("run", "--rm", "--network", "none", hutch.image, "ip", "-o", "link")
    assert link_names(out) == {"lo"}, out


def test_network_host_sees_the_namespaces_links(hutch):
    mark = f"hd{uuid.uuid4().hex[:8]}"  # a link only this namespace has
    subprocess.run(["ip", "link", "add", mark, "type", "bridge"], check=True)
    try:
        out = hutch.out("run", "--rm", "--network", "host", hutch.image, "ip", "-o", "link")
        here = links()
    finally:
        subprocess.run(["ip", "link", "del", mark], check=True)
    assert mark in link_names(out), out

    def steady(names: set[str]) -> set[str]:  # veths of earlier tests may still be going
        return {n for n in names if not n.startswith("veth")}
    assert steady(link_names(out)) == steady(link_names(here)), out


def test_network_container_shares_the_others_interface(hutch):
    a = run_d(hutch, "--name", f"netowner-{uuid.uuid4().hex[:8]}", hutch.image, "sleep", "60")
    ns = hutch.inspect(a)["NetworkSettings"]
    name = hutch.inspect(a)["Name"].lstrip("/")
    out = hutch.out("run", "--rm", "--network", f"container:{name}", hutch.image,
                    "ip", "-o", "addr", "show", "eth0")
    assert f"inet {ns['IPAddress']}/{ns['IPPrefixLen']}" in out, out
    out = hutch.out("run", "--rm", "--network", f"container:{name}", hutch.image,
                    "ip", "link", "show", "eth0")
    assert ns["MacAddress"] in out, out


def test_dns_flags_replace_resolv_conf(hutch):
    out = hutch.out("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "example.test",
                    "--dns-option", "ndots:2", hutch.image, "cat", "/etc/resolv.conf")
    lines = out.splitlines()
    assert "nameserver 192.0.2.53" in lines and "search example.test" in lines
    assert "options ndots:2" in lines
    assert [x for x in lines if x.startswith("nameserver")] == ["nameserver 192.0.2.53"]


def test_add_host_and_host_gateway_land_in_etc_hosts(hutch):
    out = hutch.out("run", "--rm", "--add-host", "foo:192.0.2.9",
                    "--add-host", "gw.test:host-gateway", hutch.image,
                    "sh", "-c", "cat /etc/hosts; echo; ip route")
    lines = [x.split() for x in out.splitlines()]
    assert ["192.0.2.9", "foo"] in lines, out
    gateway = re.search(r"default via (\S+)", out).group(1)
    assert [gateway, "gw.test"] in lines, out  # host-gateway: the network's gateway


def test_ip_on_a_user_network_is_honoured(hutch, network):
    net = network("--subnet", "172.29.31.0/24")
    cid = run_d(hutch, "--network", net, "--ip", "172.29.31.77", hutch.image, "sleep", "60")
    assert ip_of(hutch, cid, net) == "172.29.31.77"
    out = hutch.out("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "inet 172.29.31.77/24" in out, out
    # the address is taken: a second container asking for it is refused (docker's words)
    p = hutch("run", "-d", "--network", net, "--ip", "172.29.31.77", hutch.image, "true")
    assert p.returncode == 125 and "Address already in use" in one_line_error(p)


@pytest.mark.parametrize("args, message", [
    (("--ip", "10.77.0.99"), "user specified IP address is supported on user defined "
                             "networks only"),
    (("-p", "99999:80"), "99999"),
    (("-p", "80:99999"), "99999"),
    (("--network", "nope"), "network nope not found"),
], ids=["ip-on-default-bridge", "host-port-out-of-range", "container-port-out-of-range",
        "unknown-network"])
def test_bad_network_flags_are_one_line_125_errors(hutch, args, message):
    before = set(hutch.ids())
    p = hutch("run", "--rm", *args, hutch.image, "true")
    assert p.returncode == 125, p.stderr
    assert message in one_line_error(p)
    assert set(hutch.ids()) == before  # refused before anything was created


def test_a_port_already_allocated_is_refused(hutch):
    before = set(hutch.ids())
    port = free_port()
    first = run_d(hutch, "-p", f"{port}:80", hutch.image, "sleep", "60")
    p = hutch("run", "-d", "-p", f"{port}:80", hutch.image, "sleep", "60")
    assert p.returncode == 125, p.stderr
    assert "port is already allocated" in one_line_error(p)
    assert str(port) in p.stderr
    assert hutch.out("port", first).strip() == f"80/tcp -> 0.0.0.0:{port}"
    # the loser left nothing of a network
    for cid in set(hutch.ids()) - before - {first}:
        assert_no_network_left(hutch, cid)


# -- 9. network verbs --------------------------------------------------------------------------

def test_network_create_with_subnet_and_gateway_ls_and_inspect(hutch, network):
    net = network("--subnet", "172.29.40.0/24", "--gateway", "172.29.40.254",
                  "--label", "e2e=yes")
    info = json.loads(hutch.out("network", "inspect", net))[0]
    assert info["Name"] == net and info["Driver"] == "bridge"
    assert info["IPAM"]["Config"] == [{"Subnet": "172.29.40.0/24",
                                       "Gateway": "172.29.40.254"}]
    assert info["Labels"] == {"e2e": "yes"} and info["Containers"] == {}
    bridge = info["Options"]["com.docker.network.bridge.name"]
    assert bridge in link_names(links())
    assert "inet 172.29.40.254/24" in subprocess.run(
        ["ip", "-o", "-4", "addr", "show", bridge], capture_output=True, text=True).stdout

    # ls: -q, --format json, filter name=
    assert info["Id"][:12] in hutch.out("network", "ls", "-q").split()
    rows = [json.loads(x) for x in hutch.out("network", "ls", "--format", "json").splitlines()]
    assert {"bridge", net} <= {r["Name"] for r in rows}
    assert [r["Name"] for r in rows if r["Name"] == net] == [net]
    only = hutch.out("network", "ls", "-f", f"name={net}", "--format", "{{.Name}}").split()
    assert only == [net]
    assert hutch.out("network", "inspect", "-f", "{{.Name}}", net).strip() == net

    cid = run_d(hutch, "--network", net, "--name", f"member-{net}", hutch.image,
                "sleep", "60")
    ns = hutch.inspect(cid)["NetworkSettings"]["Networks"][net]
    assert ipaddress.ip_address(ns["IPAddress"]) in ipaddress.ip_network("172.29.40.0/24")
    assert ns["Gateway"] == "172.29.40.254"
    assert "default via 172.29.40.254" in hutch.out("exec", cid, "ip", "route")
    members = json.loads(hutch.out("network", "inspect", net))[0]["Containers"]
    assert list(members) == [cid]
    assert members[cid]["Name"] == f"member-{net}"
    assert members[cid]["IPv4Address"] == f"{ns['IPAddress']}/24"


def test_network_rm_refuses_a_network_in_use_and_works_once_empty(hutch, network):
    net = network()
    bridge = json.loads(hutch.out("network", "inspect", net))[0]["Options"][
        "com.docker.network.bridge.name"]
    cid = run_d(hutch, "--network", net, hutch.image, "sleep", "60")
    p = hutch("network", "rm", net)
    assert p.returncode != 0
    assert re.search(r"(in use|active endpoints)", one_line_error(p)), p.stderr
    assert net in hutch.out("network", "ls", "--format", "{{.Name}}").split()
    assert bridge in link_names(links())

    hutch.out("rm", "-f", cid)
    assert hutch.out("network", "rm", net).strip() == net
    assert net not in hutch.out("network", "ls", "--format", "{{.Name}}").split()
    assert bridge not in link_names(links())
    assert f"net:{bridge}" not in nft_table()
    p = hutch("network", "inspect", net)
    assert p.returncode != 0 and "not found" in one_line_error(p)


def test_network_connect_adds_eth1_reachable_by_name_and_disconnect_removes_it(hutch, network):
    net1, net2 = network(), network()
    c = run_d(hutch, "--network", net1, "--name", f"roamer-{net1}", *FAST_NXDOMAIN,
              hutch.image, "sleep", "60")
    peer = httpd(hutch, "peer", "--network", net2, "--name", f"peer-{net2}",
                 *FAST_NXDOMAIN)
    peer_ip = ip_of(hutch, peer)
    assert "eth1" not in hutch.out("exec", c, "ip", "-o", "link")

    hutch.out("network", "connect", "--alias", f"roamy-{net2}", net2, c)
    info = hutch.inspect(c)["NetworkSettings"]["Networks"]
    c_ip2 = info[net2]["IPAddress"]
    assert info[net2]["Aliases"] == [f"roamy-{net2}"] and net1 in info
    out = hutch.out("exec", c, "ip", "-o", "-4", "addr", "show", "eth1")
    assert f"inet {c_ip2}/" in out, out
    assert f"veth{c[:9]}1" in links()
    members = json.loads(hutch.out("network", "inspect", net2))[0]["Containers"]
    assert set(members) == {c, peer}
    # the peer reaches it by name and alias on the new network, it reaches the peer there
    assert [c_ip2, f"roamer-{net1}", f"roamy-{net2}", c[:12]] in hosts_lines(hutch, peer)
    p = sh(hutch, peer, f"ping -c1 -W2 roamer-{net1} && ping -c1 -W2 roamy-{net2}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"({c_ip2})" in p.stdout
    wait_tcp(peer_ip, 80)
    assert hutch.out("exec", c, "wget", "-qO-", f"http://{peer_ip}/").strip() == "peer"

    hutch.out("network", "disconnect", net2, c)
    assert "eth1" not in hutch.out("exec", c, "ip", "-o", "link")
    assert f"veth{c[:9]}1" not in links()
    assert list(hutch.inspect(c)["NetworkSettings"]["Networks"]) == [net1]
    assert list(json.loads(hutch.out("network", "inspect", net2))[0]["Containers"]) == [peer]
    assert not [x for x in hosts_lines(hutch, peer) if c_ip2 in x or f"roamer-{net1}" in x]
    assert sh(hutch, peer, f"ping -c1 -W1 roamer-{net1}").returncode != 0
    # still on the first network
    assert ip_of(hutch, c, net1) in hutch.out("exec", c, "ip", "-o", "addr", "show", "eth0")


def test_network_connect_and_disconnect_rewrite_the_containers_own_hosts(hutch, network):
    net1, net2 = network(), network()
    c = run_d(hutch, "--network", net1, *FAST_NXDOMAIN, hutch.image, "sleep", "60")
    peer = run_d(hutch, "--network", net2, "--name", f"peer-{net2}", hutch.image,
                 "sleep", "60")
    peer_ip = ip_of(hutch, peer)

    hutch.out("network", "connect", net2, c)
    c_ip2 = ip_of(hutch, c, net2)
    lines = hosts_lines(hutch, c)
    assert [peer_ip, f"peer-{net2}", peer[:12]] in lines, lines
    assert [c_ip2, c[:12]] in lines, lines
    p = sh(hutch, c, f"ping -c1 -W2 peer-{net2}")
    assert p.returncode == 0 and f"({peer_ip})" in p.stdout, p.stdout + p.stderr

    hutch.out("network", "disconnect", net2, c)
    lines = hosts_lines(hutch, c)
    assert not [x for x in lines if peer_ip in x or c_ip2 in x], lines


def test_network_prune_removes_unused_user_networks_only(hutch, network):
    used, unused = network(), network()
    cid = run_d(hutch, "--network", used, hutch.image, "sleep", "60")
    p = hutch("network", "prune", "-f")
    assert p.returncode == 0, p.stderr
    assert unused in p.stdout.split() and used not in p.stdout.split()
    names = hutch.out("network", "ls", "--format", "{{.Name}}").split()
    assert used in names and "bridge" in names and unused not in names
    assert ip_of(hutch, cid, used)
    assert hutch("network", "inspect", unused).returncode != 0
