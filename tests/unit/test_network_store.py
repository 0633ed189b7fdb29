"""NetworkStore: network records (docker's names, subnets, lookups, filters, removal),
IPAM (leases, the wrapping cursor, requested addresses), published host ports, and races
between processes on one database. parse_publish: docker's -p syntax. No root needed."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path

import pytest

from hutch.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from hutch.network.store import (
    SCHEMA_VERSION,
    Lease,
    NetworkStore,
    PortBinding,
    default_port_probe,
    mac_for,
    parse_cidr,
    parse_ipv4,
    parse_publish,
    read_port_range,
)

pytestmark = pytest.mark.unit

CTX = multiprocessing.get_context("fork")
C1, C2, C3 = ("c1" * 32, "c2" * 32, "c3" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class Probe:
    """A fake host: ports in `busy` cannot be bound; every question is recorded."""

    def __init__(self, busy: set[tuple[str, int]] | None = None) -> None:
        self.busy = busy or set()
        self.asked: list[tuple[str, str, int]] = []

    def __call__(self, proto: str, host_ip: str, port: int) -> bool:
        self.asked.append((proto, host_ip, port))
        return (proto, port) not in self.busy


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def store(tmp_path: Path, probe: Probe):
    with NetworkStore(str(tmp_path / "networks.db"), clock=Clock(), port_probe=probe,
                      port_range=(40000, 40009)) as s:
        yield s


# -- IPv4 helpers -------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [("0.0.0.0", 0), ("10.1.2.3", 0x0A010203),
                                        ("255.255.255.255", 0xFFFFFFFF)])
def test_parse_ipv4_reads_dotted_quads(text: str, value: int) -> None:
    assert parse_ipv4(text) == value


@pytest.mark.parametrize("text", ["", "10.1.2", "10.1.2.3.4", "10.01.2.3", "256.1.1.1",
                                  "1.2.3.-4", "a.b.c.d", "1.2.3.٣", "::1", None, 10])
def test_parse_ipv4_refuses_anything_else(text: object) -> None:
    assert parse_ipv4(text) is None


def test_parse_cidr_wants_host_bits_clear_unless_told_otherwise() -> None:
    assert parse_cidr("10.1.0.0/16") == (0x0A010000, 16)
    with pytest.raises(InvalidArgument, match="it should be 10.1.0.0/16"):
        parse_cidr("10.1.0.1/16")
    assert parse_cidr("192.168.1.7/24", strict=False) == (0xC0A80100, 24)
    assert parse_cidr("192.168.1.7", strict=False) == (0xC0A80107, 32)
    for bad in ("10.1.0.0/33", "10.1.0.0/x", "fd00::/8", "/8"):
        with pytest.raises(InvalidArgument):
            parse_cidr(bad)


def test_mac_is_docker_prefix_and_the_address_bytes() -> None:
    assert mac_for(parse_ipv4("172.17.0.2")) == "02:42:ac:11:00:02"


# -- networks -----------------------------------------------------------------------------


def test_new_database_has_the_current_schema_and_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "networks.db")
    with NetworkStore(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        created = s.create("web", labels={"a": "1"}, options={"x": "y"})
    with NetworkStore(path) as s:
        assert s.get("web") == created


def test_ensure_default_creates_the_predefined_network_once(store: NetworkStore) -> None:
    default = store.ensure_default("10.77.0.0/16")
    assert (default.name, default.subnet, default.gateway, default.bridge) == (
        "bridge", "10.77.0.0/16", "10.77.0.1", "hutch0")
    assert default.predefined and default.driver == "bridge" and len(default.id) == 64
    assert default.created == 1_000_002.0  # the injected clock (migration took the first)
    # Later calls return the record as it is, even asked for another subnet.
    assert store.ensure_default("10.99.0.0/16") == default
    assert [n.name for n in store.list()] == ["bridge"]


def test_ensure_default_refuses_a_subnet_a_user_network_has(store: NetworkStore) -> None:
    store.create("mine", subnet="10.77.5.0/24")
    with pytest.raises(FailedPrecondition, match="Pool overlaps"):
        store.ensure_default("10.77.0.0/16")


def test_create_picks_the_first_free_24_and_derives_the_rest(store: NetworkStore) -> None:
    first = store.create("one")
    second = store.create("two", internal=True, labels={"b": "2", "a": "1"})
    assert (first.subnet, first.gateway) == ("10.78.0.0/24", "10.78.0.1")
    assert (second.subnet, second.gateway) == ("10.78.1.0/24", "10.78.1.1")
    assert first.bridge == "hbr-" + first.id[:11] and len(first.bridge) == 15
    assert second.internal and second.labels == {"a": "1", "b": "2"} and second.mtu == 1500
    assert not first.predefined and first.prefixlen == 24


def test_create_keeps_clear_of_host_routes(store: NetworkStore) -> None:
    net = store.create("web", avoid=["10.78.0.0/16", "0.0.0.0/0", "fd00::/8", "10.79.0.9/25"])
    assert net.subnet == "10.79.1.0/24"  # 10.79.0.0/25 is a route (host bits ignored)


def test_create_without_a_free_pool_is_unavailable(store: NetworkStore) -> None:
    with pytest.raises(Unavailable, match="non-overlapping IPv4 address pool"):
        store.create("web", avoid=["10.78.0.0/15"])


def test_create_takes_an_explicit_subnet_and_gateway(store: NetworkStore) -> None:
    net = store.create("web", subnet="192.168.50.0/24", gateway="192.168.50.254")
    assert (net.subnet, net.gateway) == ("192.168.50.0/24", "192.168.50.254")
    # An explicit subnet is the user's choice: host routes do not veto it.
    other = store.create("lan", subnet="10.5.0.0/16", avoid=["10.5.0.0/16"])
    assert other.subnet == "10.5.0.0/16"


@pytest.mark.parametrize("subnet", ["10.78.0.0/16", "10.78.0.128/25", "10.0.0.0/8"])
def test_create_refuses_overlapping_subnets(store: NetworkStore, subnet: str) -> None:
    store.create("one")  # 10.78.0.0/24
    with pytest.raises(FailedPrecondition, match="^Pool overlaps with other one on this "
                                                 "address space$"):
        store.create("two", subnet=subnet)


@pytest.mark.parametrize("kwargs,message", [
    ({"subnet": "10.9.0.1/16"}, "it should be 10.9.0.0/16"),
    ({"subnet": "10.9.0.0/31"}, "at least /30"),
    ({"subnet": "nonsense"}, "invalid subnet"),
    ({"subnet": "10.9.0.0/16", "gateway": "10.8.0.1"}, "no matching subnet for gateway"),
    ({"subnet": "10.9.0.0/16", "gateway": "10.9.255.255"}, "broadcast"),
    ({"subnet": "10.9.0.0/16", "gateway": "10.9.0.0"}, "network or broadcast"),
    ({"gateway": "10.9.0.1"}, "must have a corresponding subnet"),
    ({"mtu": 20}, "invalid MTU"),
    ({"options": {"com.docker.network.driver.mtu": "big"}}, "driver.mtu"),
    ({"labels": {"a": 1}}, "labels must map strings"),
    ({"bridge": "a-very-long-bridge"}, "invalid bridge name"),
    ({"bridge": "br/0"}, "invalid bridge name"),
    ({"bridge": "br0", "options": {"com.docker.network.bridge.name": "br1"}},
     "conflicting bridge names"),
])
def test_create_refuses_bad_settings(store: NetworkStore, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        store.create("web", **kwargs)
    assert store.list() == []


def test_create_reads_bridge_name_and_mtu_from_docker_options(store: NetworkStore) -> None:
    net = store.create("web", options={"com.docker.network.bridge.name": "br-web",
                                       "com.docker.network.driver.mtu": "9000"})
    assert (net.bridge, net.mtu) == ("br-web", 9000)


@pytest.mark.parametrize("name", ["", "-web", ".web", "_web", "we b", "web/1", "wéb", "a:b"])
def test_create_refuses_names_docker_refuses(store: NetworkStore, name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed"):
        store.create(name)


@pytest.mark.parametrize("name", ["bridge", "host", "none"])
def test_create_refuses_predefined_names(store: NetworkStore, name: str) -> None:
    with pytest.raises(FailedPrecondition, match=f"predefined {name} network"):
        store.create(name)


def test_names_and_bridges_are_unique(store: NetworkStore) -> None:
    store.create("web", bridge="br-web")
    with pytest.raises(AlreadyExists, match="^network with name web already exists$"):
        store.create("web")
    with pytest.raises(AlreadyExists, match="bridge name br-web is already in use by "
                                            "network web"):
        store.create("other", bridge="br-web")
    assert store.create("Web-2.x_y").name == "Web-2.x_y"


def test_get_finds_by_id_name_and_unique_prefix(store: NetworkStore) -> None:
    net = store.create("web")
    assert store.get(net.id) == store.get("web") == store.get(net.id[:5]) == net
    with pytest.raises(NotFound, match="^network nope not found$"):
        store.get("nope")
    with pytest.raises(InvalidArgument):
        store.get("")


def test_get_prefers_an_exact_name_to_an_id_prefix(store: NetworkStore) -> None:
    net = store.create("web")
    named = store.create(net.id[:6])  # hex is a valid name
    assert store.get(net.id[:6]) == named
    assert store.get(net.id[:7]) == net


def test_get_refuses_an_ambiguous_id_prefix(store: NetworkStore) -> None:
    nets = [store.create(f"n{i}") for i in range(17)]  # 17 ids, 16 first digits
    firsts = [n.id[0] for n in nets]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(InvalidArgument, match=rf"network {shared} is ambiguous \(\d+ matches"):
        store.get(shared)


def test_list_filters_like_docker_network_ls(store: NetworkStore) -> None:
    default = store.ensure_default("10.77.0.0/16")
    web = store.create("web", labels={"tier": "front", "team": "a"})
    db = store.create("db", labels={"tier": "back"})
    store.allocate(db.id, C1, "x")

    def names(**filters) -> list[str]:
        return [n.name for n in store.list(filters)]

    assert names() == ["bridge", "db", "web"]  # by name
    assert names(name=["e"]) == ["bridge", "web"]  # substring
    assert names(name=["^w"]) == ["web"]  # moby matches a regular expression
    assert names(name=["b", "w"]) == ["bridge", "db", "web"]  # one key: OR
    assert names(id=[web.id[:8]]) == ["web"]
    assert names(id=default.id) == ["bridge"]  # a single string is one value
    assert names(label=["tier"]) == ["db", "web"]
    assert names(label=["tier=front"]) == ["web"]
    assert names(label=["tier", "team=a"]) == ["web"]  # labels: AND
    assert names(label=["tier=side"]) == []
    assert names(driver=["bridge"]) == ["bridge", "db", "web"]
    assert names(driver=["macvlan"]) == []
    assert names(type=["builtin"]) == ["bridge"]
    assert names(type=["custom"]) == ["db", "web"]
    assert names(scope=["local"]) == ["bridge", "db", "web"]
    assert names(dangling=["true"]) == ["web"]  # unused, and never the predefined one
    assert names(dangling=["false"]) == ["bridge", "db"]
    assert names(name=["d"], type=["custom"]) == ["db"]  # keys: AND
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        store.list({"colour": ["red"]})
    with pytest.raises(InvalidArgument, match="invalid filter: 'type'='odd'"):
        store.list({"type": ["odd"]})


def test_remove_deletes_an_unused_network(store: NetworkStore) -> None:
    net = store.create("web")
    assert store.remove(net.id[:6]) == net
    with pytest.raises(NotFound):
        store.get("web")
    assert store.create("web", subnet=net.subnet).subnet == net.subnet  # subnet free again


def test_remove_refuses_the_predefined_network(store: NetworkStore) -> None:
    store.ensure_default("10.77.0.0/16")
    with pytest.raises(FailedPrecondition,
                       match="^bridge is a pre-defined network and cannot be removed$"):
        store.remove("bridge")


def test_remove_refuses_a_network_with_endpoints(store: NetworkStore) -> None:
    net = store.create("web")
    store.allocate(net.id, C1, "one")
    with pytest.raises(FailedPrecondition, match=f"^error while removing network: network web "
                                                 f"id {net.id} has active endpoints$"):
        store.remove("web")
    store.release(C1)
    store.remove("web")


# -- leases -------------------------------------------------------------------------------


def test_allocate_gives_addresses_in_order_with_docker_macs(store: NetworkStore) -> None:
    net = store.create("web", subnet="172.30.0.0/16")
    first = store.allocate(net.id, C1, "one", aliases=["db", "db", "sql"])
    assert first == Lease(net.id, C1, "one", "172.30.0.2", 16, "172.30.0.1",
                          "02:42:ac:1e:00:02", "eth0", ("db", "sql"))
    assert store.allocate("web", C2, "two").ip == "172.30.0.3"  # by name too
    assert store.leases(network_id=net.id) == [first, store.leases(container_id=C2)[0]]


def test_allocate_is_idempotent(store: NetworkStore) -> None:
    net = store.create("web")
    lease = store.allocate(net.id, C1, "one")
    assert store.allocate(net.id, C1, "one") == lease
    assert store.allocate(net.id, C1, "one", ip=lease.ip) == lease
    with pytest.raises(FailedPrecondition, match="already has address 10.78.0.2"):
        store.allocate(net.id, C1, "one", ip="10.78.0.9")
    assert len(store.leases()) == 1


def test_interfaces_are_the_lowest_free_eth(store: NetworkStore) -> None:
    a, b, c = store.create("a"), store.create("b"), store.create("c")
    assert store.allocate(a.id, C1, "one").ifname == "eth0"
    assert store.allocate(b.id, C1, "one").ifname == "eth1"
    assert store.allocate(a.id, C2, "two").ifname == "eth0"  # per container
    store.release(C1, a.id)
    assert store.allocate(c.id, C1, "one").ifname == "eth0"
    assert [le.ifname for le in store.leases(container_id=C1)] == ["eth0", "eth1"]


def test_released_addresses_are_not_reused_at_once_and_the_cursor_wraps(
        store: NetworkStore) -> None:
    net = store.create("small", subnet="10.9.0.0/29")  # .1 gateway, .2-.6 containers
    ids = [f"{i:064x}" for i in range(6)]
    assert [store.allocate(net.id, i, "x").ip for i in ids[:3]] == [
        "10.9.0.2", "10.9.0.3", "10.9.0.4"]
    store.release(ids[0])
    assert store.allocate(net.id, ids[3], "x").ip == "10.9.0.5"  # not .2
    assert store.allocate(net.id, ids[4], "x").ip == "10.9.0.6"
    assert store.allocate(net.id, ids[5], "x").ip == "10.9.0.2"  # wrapped past .7 and .1
    with pytest.raises(Unavailable, match="^no available IPv4 addresses on network small$"):
        store.allocate(net.id, ids[0], "x")


def test_a_requested_address_is_checked_and_does_not_move_the_cursor(
        store: NetworkStore) -> None:
    net = store.create("web", subnet="10.9.0.0/24")
    assert store.allocate(net.id, C1, "one", ip="10.9.0.50").ip == "10.9.0.50"
    assert store.allocate(net.id, C2, "two").ip == "10.9.0.2"
    with pytest.raises(AlreadyExists, match="^Address already in use$"):
        store.allocate(net.id, C3, "three", ip="10.9.0.50")
    with pytest.raises(AlreadyExists, match="^Address already in use$"):
        store.allocate(net.id, C3, "three", ip="10.9.0.1")  # the gateway
    with pytest.raises(InvalidArgument, match="does not belong to any of this network"):
        store.allocate(net.id, C3, "three", ip="10.8.0.5")
    for ip in ("10.9.0.0", "10.9.0.255"):
        with pytest.raises(InvalidArgument, match="network or broadcast"):
            store.allocate(net.id, C3, "three", ip=ip)
    with pytest.raises(InvalidArgument, match="invalid IPv4 address"):
        store.allocate(net.id, C3, "three", ip="10.9.0.300")


def test_allocate_refuses_bad_arguments(store: NetworkStore) -> None:
    net = store.create("web")
    with pytest.raises(NotFound):
        store.allocate("nope", C1, "one")
    for bad in ("", " x", None):
        with pytest.raises(InvalidArgument, match="invalid container id"):
            store.allocate(net.id, bad, "one")
    with pytest.raises(InvalidArgument, match="aliases"):
        store.allocate(net.id, C1, "one", aliases="db")
    assert store.leases() == []


def test_release_returns_leases_and_drops_their_ports(store: NetworkStore) -> None:
    a, b = store.create("a"), store.create("b")
    la, lb = store.allocate(a.id, C1, "one"), store.allocate(b.id, C1, "one")
    store.allocate(a.id, C2, "two")
    store.allocate_ports(C1, a.id, la.ip, [("tcp", "", 8080, 80)])
    store.allocate_ports(C1, b.id, lb.ip, [("tcp", "", 8081, 80)])
    assert store.release(C1, "b") == [lb]
    assert [p.host_port for p in store.ports(C1)] == [8080]
    assert store.release(C1) == [la]
    assert store.ports() == [] and store.release(C1) == []
    assert [le.container_id for le in store.leases()] == [C2]


def test_rename_changes_the_name_on_every_lease(store: NetworkStore) -> None:
    a, b = store.create("a"), store.create("b")
    store.allocate(a.id, C1, "old")
    store.allocate(b.id, C1, "old")
    store.rename(C1, "new")
    assert {le.container_name for le in store.leases(container_id=C1)} == {"new"}


def test_gc_releases_containers_that_no_longer_exist(store: NetworkStore) -> None:
    net = store.create("web")
    for cid in (C1, C2, C3):
        store.allocate(net.id, cid, "x")
    store.allocate_ports(C3, net.id, "10.78.0.4", [("tcp", "", 9000, 80)])
    assert store.gc({C1}) == sorted([C2, C3])
    assert [le.container_id for le in store.leases()] == [C1]
    assert store.ports() == [] and store.gc({C1}) == []


# -- published ports ----------------------------------------------------------------------


def test_fixed_ports_are_recorded(store: NetworkStore) -> None:
    net = store.create("web")
    bindings = store.allocate_ports(C1, net.id, "10.78.0.2",
                                    [("tcp", "0.0.0.0", 8080, 80), ("udp", "127.0.0.1", 53, 53)])
    assert bindings == [PortBinding(C1, net.id, "tcp", "", 8080, "10.78.0.2", 80),
                        PortBinding(C1, net.id, "udp", "127.0.0.1", 53, "10.78.0.2", 53)]
    assert store.ports(C1) == store.ports() == bindings


@pytest.mark.parametrize("held,wanted,shown", [
    (("tcp", "", 8080), ("tcp", "", 8080), "0.0.0.0:8080"),
    (("tcp", "", 8080), ("tcp", "127.0.0.1", 8080), "127.0.0.1:8080"),
    (("tcp", "127.0.0.1", 8080), ("tcp", "", 8080), "0.0.0.0:8080"),
    (("tcp", "127.0.0.1", 8080), ("tcp", "127.0.0.1", 8080), "127.0.0.1:8080"),
])
def test_overlapping_bindings_of_another_container_conflict(
        store: NetworkStore, held: tuple, wanted: tuple, shown: str) -> None:
    net = store.create("web")
    store.allocate_ports(C1, net.id, "10.78.0.2", [(*held, 80)])
    with pytest.raises(AlreadyExists, match=f"^Bind for {shown} failed: port is already "
                                            "allocated$"):
        store.allocate_ports(C2, net.id, "10.78.0.3", [(*wanted, 80)])


def test_bindings_that_do_not_overlap_coexist(store: NetworkStore) -> None:
    net = store.create("web")
    store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "127.0.0.1", 8080, 80)])
    store.allocate_ports(C2, net.id, "10.78.0.3", [("tcp", "127.0.0.2", 8080, 80),
                                                   ("udp", "", 8080, 80)])
    assert len(store.ports()) == 3


def test_a_port_busy_on_the_host_is_refused(store: NetworkStore, probe: Probe) -> None:
    net = store.create("web")
    probe.busy.add(("tcp", 8080))
    with pytest.raises(AlreadyExists, match="^Bind for 0.0.0.0:8080 failed: address already "
                                            "in use$"):
        store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "", 8080, 80)])
    store.allocate_ports(C1, net.id, "10.78.0.2", [("udp", "", 8080, 80)])


def test_port_allocation_is_all_or_nothing(store: NetworkStore) -> None:
    net = store.create("web")
    store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "", 9000, 80)])
    with pytest.raises(AlreadyExists):
        store.allocate_ports(C2, net.id, "10.78.0.3",
                             [("tcp", "", 8080, 80), ("tcp", "", 0, 81), ("tcp", "", 9000, 82)])
    assert [b.container_id for b in store.ports()] == [C1]
    with pytest.raises(AlreadyExists):  # twice in one request
        store.allocate_ports(C2, net.id, "10.78.0.3", [("tcp", "", 7000, 80),
                                                       ("tcp", "127.0.0.1", 7000, 81)])


def test_random_ports_come_from_the_range_and_skip_busy_ones(
        store: NetworkStore, probe: Probe) -> None:
    net = store.create("web")
    store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "", 40001, 80)])
    probe.busy.add(("tcp", 40002))
    got = store.allocate_ports(C2, net.id, "10.78.0.3", [("tcp", "", 0, 80), ("tcp", "", 0, 81),
                                                         ("udp", "", 0, 53)])
    assert [b.host_port for b in got] == [40000, 40003, 40000]  # udp has its own cursor
    # The search resumes after the last port handed out, wrapping at the end.
    store.release(C2)
    assert store.allocate_ports(C3, net.id, "10.78.0.4", [("tcp", "", 0, 80)])[0].host_port \
        == 40004


def test_random_ports_run_out(store: NetworkStore) -> None:
    net = store.create("web")
    store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "", 0, p) for p in range(1, 11)])
    with pytest.raises(Unavailable, match="all ports are allocated"):
        store.allocate_ports(C2, net.id, "10.78.0.3", [("tcp", "", 0, 80)])


def test_reallocating_replaces_and_keeps_random_ports(store: NetworkStore,
                                                      probe: Probe) -> None:
    net = store.create("web")
    first = store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "", 8080, 80),
                                                           ("tcp", "", 0, 81)])
    probe.asked.clear()
    again = store.allocate_ports(C1, net.id, "10.78.0.2", [("tcp", "", 8080, 80),
                                                           ("tcp", "", 0, 81)])
    assert again == first
    assert ("tcp", "", 8080) not in probe.asked  # its own port: no need to ask the host
    changed = store.allocate_ports(C1, net.id, "10.78.0.2", [("udp", "", 8080, 80)])
    assert store.ports(C1) == changed


@pytest.mark.parametrize("request_,message", [
    (("sctp", "", 80, 80), "invalid proto: sctp"),
    (("tcp", "", 70000, 80), "invalid hostPort: 70000"),
    (("tcp", "", -1, 80), "invalid hostPort"),
    (("tcp", "", 80, 0), "invalid containerPort: 0"),
    (("tcp", "", True, 80), "invalid hostPort"),
    (("tcp", "::1", 80, 80), "IPv6"),
    (("tcp", "localhost", 80, 80), "invalid IP address: localhost"),
    (("tcp", 80, 80), "want \\(proto, host_ip"),
])
def test_bad_port_requests_are_refused(store: NetworkStore, request_: tuple,
                                       message: str) -> None:
    net = store.create("web")
    with pytest.raises(InvalidArgument, match=message):
        store.allocate_ports(C1, net.id, "10.78.0.2", [request_])
    with pytest.raises(InvalidArgument, match="container IPv4"):
        store.allocate_ports(C1, net.id, "nowhere", [])


def test_default_probe_sees_listening_sockets_on_loopback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not default_port_probe("tcp", "127.0.0.1", port)
        assert not default_port_probe("tcp", "", port)  # 0.0.0.0 overlaps it
    assert default_port_probe("tcp", "127.0.0.1", port)
    with pytest.raises(InvalidArgument, match="cannot assign requested address"):
        default_port_probe("udp", "192.0.2.1", port)  # TEST-NET-1: not ours


def test_port_range_comes_from_the_kernel(tmp_path: Path) -> None:
    path = tmp_path / "range"
    path.write_text("20000\t20100\n")
    assert read_port_range(str(path)) == (20000, 20100)
    path.write_text("junk")
    assert read_port_range(str(path)) == (32768, 60999)
    with NetworkStore(str(tmp_path / "n.db")) as s:
        assert s.port_range == read_port_range()
    with pytest.raises(InvalidArgument):
        NetworkStore(str(tmp_path / "n.db"), port_range=(10, 5))


# -- parse_publish ------------------------------------------------------------------------


@pytest.mark.parametrize("spec,expected", [
    ("80", [("tcp", "", 0, 80)]),
    ("8080:80", [("tcp", "", 8080, 80)]),
    ("127.0.0.1:8080:80", [("tcp", "127.0.0.1", 8080, 80)]),
    ("127.0.0.1::80", [("tcp", "127.0.0.1", 0, 80)]),
    ("0.0.0.0:8080:80", [("tcp", "", 8080, 80)]),
    ("8080:80/udp", [("udp", "", 8080, 80)]),
    ("8080:80/UDP", [("udp", "", 8080, 80)]),
    ("80/", [("tcp", "", 0, 80)]),
    ("8080-8081:80-81", [("tcp", "", 8080, 80), ("tcp", "", 8081, 81)]),
    ("80-81/udp", [("udp", "", 0, 80), ("udp", "", 0, 81)]),
    ("10.0.0.1::80-81", [("tcp", "10.0.0.1", 0, 80), ("tcp", "10.0.0.1", 0, 81)]),
])
def test_parse_publish_reads_dockers_syntax(spec: str, expected: list) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("", "invalid publish opts format"),
    ("8080:", "invalid publish opts format"),
    ("/udp", "invalid publish opts format"),
    ("[::1]:80:80", "IPv6"),
    ("::1:80:80", "IPv6"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("x", "invalid containerPort: x"),
    ("0", "invalid containerPort: 0"),
    ("80000", "invalid containerPort"),
    ("81-80", "invalid containerPort: 81-80"),
    ("x:80", "invalid hostPort: x"),
    ("8080-8082:80-81", "invalid ranges specified for container and host Ports"),
    ("8080-8081:80", "host port range for one container port"),
    ("80/sctp", "invalid proto: sctp"),
])
def test_parse_publish_refuses_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_publish(spec)


# -- processes racing on one database -----------------------------------------------------


def _allocate_ip(path: str, network_id: str, n: int, start, results) -> None:
    try:
        with NetworkStore(path) as s:
            start.wait(10)
            results.put(s.allocate(network_id, f"{n:064x}", f"c{n}").ip)
    except Exception as e:
        results.put(repr(e))


def _allocate_port(path: str, network_id: str, n: int, start, results) -> None:
    try:
        with NetworkStore(path, port_probe=lambda *a: True, port_range=(41000, 41999)) as s:
            start.wait(10)
            results.put(s.allocate_ports(f"{n:064x}", network_id, "10.78.0.2",
                                         [("tcp", "", 0, 80)])[0].host_port)
    except Exception as e:
        results.put(repr(e))


@pytest.mark.parametrize("target,count", [(_allocate_ip, 20), (_allocate_port, 10)])
def test_parallel_processes_never_share_an_address_or_port(
        tmp_path: Path, target, count: int) -> None:
    path = str(tmp_path / "networks.db")
    with NetworkStore(path) as s:
        net = s.create("web", subnet="10.78.0.0/24")
    results, start = CTX.Queue(), CTX.Barrier(count)
    procs = [CTX.Process(target=target, args=(path, net.id, n, start, results))
             for n in range(count)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert all(isinstance(v, (str, int)) and "Error" not in str(v) for v in got), got
    assert len(set(got)) == count, got
    with NetworkStore(path) as s:
        stored = s.leases() if target is _allocate_ip else s.ports()
        assert len(stored) == count
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _ensure_default(path: str, n: int, start, results) -> None:
    try:
        with NetworkStore(path) as s:
            start.wait(10)
            results.put(s.ensure_default("10.77.0.0/16").id)
    except Exception as e:
        results.put(repr(e))


def test_parallel_first_runs_create_one_default_network(tmp_path: Path) -> None:
    path = str(tmp_path / "networks.db")
    NetworkStore(path).close()
    results, start = CTX.Queue(), CTX.Barrier(10)
    procs = [CTX.Process(target=_ensure_default, args=(path, n, start, results))
             for n in range(10)]
    for proc in procs:
        proc.start()
    got = {results.get(timeout=30) for _ in procs}
    for proc in procs:
        proc.join(30)
    with NetworkStore(path) as s:
        assert got == {s.get("bridge").id} and len(s.list()) == 1
