"""Network records, IP address leases and published host ports: one SQLite file
(`{HUTCH_ROOT}/networks.db`) shared by every hutch process.

docker keeps these in its daemon's memory (libnetwork's IPAM bitmaps and the port
allocator) and serialises requests there. A daemonless engine has no such place, so the
database is it: every allocation is one `BEGIN IMMEDIATE` transaction (concurrent hutch
commands queue on the write lock), and UNIQUE constraints back up the checks made inside
it. Twenty `hutch run` at once get twenty different addresses and ports.

Addresses are handed out the way libnetwork's serial allocator does: the next free one
after the last given out in that network, wrapping, so an address just released (a
container that exited) is not given to the next container while peers may still have its
ARP entry or connections to it. Random host ports come from the kernel's ephemeral range
the same way, and must also be bindable on the host right now (`port_probe`).

IPv4 only. Addresses are kept as ints; `ipaddress` (and `re`, `json`, `socket`) stay out
of the import path, which `hutch run` pays for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from hutch.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from hutch.linux.sqlite import no_checkpoint_on_close
from hutch.network.ipv4 import format_ipv4, mac_for, mask, overlaps, parse_cidr, parse_ipv4
from hutch.network.ports import PROTOCOLS, PortRequest, check_request, parse_publish
from hutch.util import fastjson
from hutch.util.record import field, record
from hutch.util.sqlite import SqliteStore

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NetworkStore", "Network", "Lease", "PortBinding", "parse_publish", "parse_cidr",
           "parse_ipv4", "format_ipv4", "mac_for", "PROTOCOLS", "PortRequest"]

PREDEFINED_NAMES = frozenset({"bridge", "host", "none"})
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
# Where create() finds subnets for networks created without --subnet: /24s, as docker's
# default-address-pools do with size 24.
DEFAULT_POOL = "10.78.0.0/15"
POOL_PREFIXLEN = 24
DEFAULT_PORT_RANGE = (32768, 60999)  # Linux's default ip_local_port_range
FILTERS = frozenset({"name", "id", "label", "driver", "type", "scope", "dangling"})

PortProbe = Callable[[str, str, int], bool]


@record(frozen=True, kw_only=True)
class Network:
    """One network. `predefined` marks the default "bridge" network (ensure_default),
    which cannot be removed and which `type=builtin` lists."""

    id: str
    name: str
    driver: str = "bridge"
    subnet: str
    gateway: str
    bridge: str
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    mtu: int = 1500
    created: float = 0.0
    predefined: bool = False

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.partition("/")[2])


@record(frozen=True)
class Lease:
    """A container's address on one network, and the interface it goes on."""

    network_id: str
    container_id: str
    container_name: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    ifname: str
    aliases: tuple[str, ...] = ()


@record(frozen=True)
class PortBinding:
    """host_ip:host_port/proto forwarded to container_ip:container_port ("" = all)."""

    container_id: str
    network_id: str
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


# Append only: migration i takes the schema from version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE networks (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            driver TEXT NOT NULL,
            subnet TEXT NOT NULL,
            gateway TEXT NOT NULL,
            bridge TEXT NOT NULL UNIQUE,
            internal INTEGER NOT NULL,
            labels TEXT NOT NULL,
            options TEXT NOT NULL,
            mtu INTEGER NOT NULL,
            created REAL NOT NULL,
            predefined INTEGER NOT NULL,
            cursor INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE leases (
            network_id TEXT NOT NULL REFERENCES networks(id),
            container_id TEXT NOT NULL,
            container_name TEXT NOT NULL,
            addr INTEGER NOT NULL,
            prefixlen INTEGER NOT NULL,
            gateway TEXT NOT NULL,
            ifindex INTEGER NOT NULL,
            aliases TEXT NOT NULL,
            PRIMARY KEY (network_id, container_id),
            UNIQUE (network_id, addr),
            UNIQUE (container_id, ifindex)
        )""",
        """CREATE TABLE ports (
            container_id TEXT NOT NULL,
            network_id TEXT NOT NULL REFERENCES networks(id),
            proto TEXT NOT NULL,
            host_ip TEXT NOT NULL,
            host_port INTEGER NOT NULL,
            container_ip TEXT NOT NULL,
            container_port INTEGER NOT NULL,
            UNIQUE (proto, host_ip, host_port)
        )""",
        "CREATE INDEX ports_container ON ports(container_id)",
        # Where the random host port search resumes, per protocol.
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_NET_COLUMNS = ("id", "name", "driver", "subnet", "gateway", "bridge", "internal", "labels",
                "options", "mtu", "created", "predefined")
_LEASE_COLUMNS = ("network_id", "container_id", "container_name", "addr", "prefixlen",
                  "gateway", "ifindex", "aliases")
_PORT_COLUMNS = ("container_id", "network_id", "proto", "host_ip", "host_port",
                 "container_ip", "container_port")


def _new_id() -> str:
    # As moby's stringid: never all digits in the 12-character short form.
    while True:
        value = os.urandom(32).hex()
        if not value[:12].isdigit():
            return value


def _check_name(name: object) -> str:
    ok = (isinstance(name, str) and name.isascii() and name[:1].isalnum()
          and all(c.isalnum() or c in "_.-" for c in name))
    if not ok:
        raise InvalidArgument(
            f"Invalid network name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def _check_ifname(name: object) -> str:
    # The kernel's dev_valid_name: 1-15 bytes, not "." or "..", no "/", ":" or whitespace.
    ok = (isinstance(name, str) and 0 < len(name.encode()) < 16 and name not in (".", "..")
          and not any(c in "/:" or c.isspace() for c in name))
    if not ok:
        raise InvalidArgument(f"invalid bridge name {name!r}: want 1-15 characters, "
                              "no '/', ':' or spaces")
    return name


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"network {what} must map strings to strings")
    return dict(sorted(value.items()))


def _match(term: str, value: str) -> bool:
    # moby's filters.Args.Match: equal, or the term as a regular expression found in the
    # value. Plain words (the usual case) need no `re`.
    if term in value:
        return True
    if not any(c in term for c in ".^$*+?()[]{}|\\"):
        return False
    import re

    try:
        return re.search(term, value) is not None
    except re.error:
        return False


def default_port_probe(proto: str, host_ip: str, port: int) -> bool:
    """True if `port` can be bound on `host_ip` right now (SO_REUSEADDR off, so a port in
    use, even only in TIME_WAIT, counts as busy). A host_ip that is no address of this
    host is the user's mistake, said as the kernel says it."""
    import errno
    import socket

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host_ip or "0.0.0.0", port))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(
                    f"listen {proto}4 {host_ip}:{port}: bind: cannot assign requested address",
                    hint=f"{host_ip} is not an address of this host") from None
            return False
    return True


def read_port_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's ephemeral port range, docker's range for random host ports."""
    try:
        with open(path) as f:
            lo, hi = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE
    return (lo, hi) if 0 < lo <= hi <= 65535 else DEFAULT_PORT_RANGE


# -- the store ----------------------------------------------------------------------------


class NetworkStore(SqliteStore):
    """The network database at `path`, created and migrated on open. One connection per
    object, for one thread; any number of processes may open the same file."""
    configure = staticmethod(no_checkpoint_on_close)

    what = "network database"

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        port_probe: PortProbe | None = None,
        port_range: tuple[int, int] | None = None,
    ) -> None:
        if port_range is not None:
            lo, hi = port_range
            if not 0 < lo <= hi <= 65535:
                raise InvalidArgument(f"invalid port range {lo}-{hi}")
        self._port_probe = port_probe or default_port_probe
        self._port_range = port_range
        super().__init__(path, timeout=timeout, clock=clock, migrations=MIGRATIONS,
                         foreign_keys=True)

    @property
    def port_range(self) -> tuple[int, int]:
        if self._port_range is None:  # read on first use: opening the store stays cheap
            self._port_range = read_port_range()
        return self._port_range

    # -- networks --------------------------------------------------------------------------

    def ensure_default(self, subnet: str, bridge: str = "hutch0",
                       name: str = "bridge") -> Network:
        """The predefined network, created on first use. An existing one is returned as
        it is, whatever `subnet` says now (its containers have addresses in the old one)."""
        with self._read():
            row = self._execute(f"SELECT {_cols(_NET_COLUMNS)} FROM networks WHERE name = ?",
                                (name,)).fetchone()
        if row is not None:
            return _network(row)
        with self.transaction():
            row = self._execute(f"SELECT {_cols(_NET_COLUMNS)} FROM networks WHERE name = ?",
                                (name,)).fetchone()
            if row is not None:  # another process won the race
                return _network(row)
            return self._insert(name, subnet=parse_cidr(subnet), gateway=None,
                                bridge=_check_ifname(bridge), internal=False, labels={},
                                options={}, mtu=1500, predefined=True)

    def create(
        self,
        name: str,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        bridge: str | None = None,
        internal: bool = False,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        mtu: int = 1500,
        avoid: Iterable[str] = (),
    ) -> Network:
        """A user-defined bridge network (`docker network create`). Without a subnet, the
        first /24 of DEFAULT_POOL that overlaps no network and no CIDR in `avoid` (the
        host's routes: a bridge must not shadow the way to a real network)."""
        _check_name(name)
        if name in PREDEFINED_NAMES:
            raise FailedPrecondition(f"operation is not permitted on predefined {name} network")
        labels = _string_map(labels, "labels")
        options = _string_map(options, "options")
        if BRIDGE_NAME_OPTION in options:
            if bridge is not None and bridge != options[BRIDGE_NAME_OPTION]:
                raise InvalidArgument(f"conflicting bridge names {bridge!r} and "
                                      f"{BRIDGE_NAME_OPTION}={options[BRIDGE_NAME_OPTION]!r}")
            bridge = options[BRIDGE_NAME_OPTION]
        if bridge is not None:
            _check_ifname(bridge)
        if MTU_OPTION in options:
            text = options[MTU_OPTION]
            if not (text.isascii() and text.isdigit()):
                raise InvalidArgument(f"invalid {MTU_OPTION} value {text!r}")
            mtu = int(text)
        if gateway is not None and subnet is None:
            raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
        wanted = parse_cidr(subnet) if subnet is not None else None
        avoided = [] if wanted is not None else _routes(avoid)
        with self.transaction():
            if self._execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"network with name {name} already exists", network=name)
            if wanted is None:
                wanted = self._free_subnet(avoided)
            return self._insert(name, subnet=wanted, gateway=gateway, bridge=bridge,
                                internal=internal, labels=labels, options=options, mtu=mtu,
                                predefined=False)

    def _free_subnet(self, avoid: list[tuple[int, int]]) -> tuple[int, int]:
        taken = [parse_cidr(r[0]) for r in self._execute("SELECT subnet FROM networks")]
        pool, pool_len = parse_cidr(DEFAULT_POOL)
        step = 1 << (32 - POOL_PREFIXLEN)
        for candidate in range(pool, pool + (1 << (32 - pool_len)), step):
            subnet = (candidate, POOL_PREFIXLEN)
            if not any(overlaps(subnet, other) for other in (*taken, *avoid)):
                return subnet
        raise Unavailable("could not find an available, non-overlapping IPv4 address pool "
                          "among the defaults to assign to the network",
                          hint="remove unused networks, or give --subnet")

    def _insert(self, name: str, *, subnet: tuple[int, int], gateway: str | None,
                bridge: str | None, internal: bool, labels: dict[str, str],
                options: dict[str, str], mtu: int, predefined: bool) -> Network:
        # Inside the write transaction: the checks and the INSERT see the same state.
        net, prefixlen = subnet
        if prefixlen > 30:
            raise InvalidArgument(f"invalid subnet {format_ipv4(net)}/{prefixlen}: a bridge "
                                  "network needs at least /30 (gateway and one container)")
        broadcast = net | ~mask(prefixlen) & 0xFFFFFFFF
        if gateway is None:
            gw = net + 1
        else:
            gw = parse_ipv4(gateway)
            if gw is None or gw & mask(prefixlen) != net:
                raise InvalidArgument(f"no matching subnet for gateway {gateway}")
            if gw in (net, broadcast):
                raise InvalidArgument(f"invalid gateway {gateway}: it is the network or "
                                      "broadcast address of the subnet")
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid MTU {mtu}: want 68-65535")
        for other_text, other_name in self._execute("SELECT subnet, name FROM networks"):
            if overlaps(subnet, parse_cidr(other_text)):
                raise FailedPrecondition(
                    "Pool overlaps with other one on this address space",
                    hint=f"network {other_name} has {other_text}", network=other_name)
        network_id = _new_id()
        record = Network(
            id=network_id, name=name, subnet=f"{format_ipv4(net)}/{prefixlen}",
            gateway=format_ipv4(gw), bridge=bridge or "hbr-" + network_id[:11],
            internal=bool(internal), labels=labels, options=options, mtu=mtu,
            created=self._clock(), predefined=predefined,
        )
        holder = self._execute("SELECT name FROM networks WHERE bridge = ?",
                               (record.bridge,)).fetchone()
        if holder:
            raise AlreadyExists(f"bridge name {record.bridge} is already in use by network "
                                f"{holder[0]}", bridge=record.bridge)
        self._execute(
            f"INSERT INTO networks ({_cols(_NET_COLUMNS)}) VALUES ({_marks(_NET_COLUMNS)})",
            (record.id, record.name, record.driver, record.subnet, record.gateway,
             record.bridge, int(record.internal), fastjson.dumps(record.labels),
             fastjson.dumps(record.options), record.mtu, record.created,
             int(record.predefined)),
        )
        return record

    def get(self, ref: str) -> Network:
        """docker's FindNetwork: the full id, the exact name, then a unique id prefix."""
        with self._read():
            return self._lookup(ref)

    def _lookup(self, ref: str) -> Network:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("a network name or id is required")
        select = f"SELECT {_cols(_NET_COLUMNS)} FROM networks"
        row = self._execute(f"{select} WHERE id = ?", (ref,)).fetchone()
        if row is None:
            row = self._execute(f"{select} WHERE name = ?", (ref,)).fetchone()
        if row is None and all(c in "0123456789abcdef" for c in ref):
            rows = self._execute(f"{select} WHERE substr(id, 1, ?) = ?",
                                 (len(ref), ref)).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches "
                                      "found based on ID prefix)", network=ref)
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"network {ref} not found", network=ref)
        return _network(row)

    def _network_id(self, ref: str) -> str:
        # For cleaning up: a network that is gone has no leases to find either.
        try:
            return self._lookup(ref).id
        except NotFound:
            return ref

    def list(self, filters: Mapping[str, str | Iterable[str]] | None = None) -> list[Network]:
        """Networks by name, as `docker network ls --filter` (moby's filterNetworks):
        values of one key OR together, keys AND; label values AND."""
        wanted: dict[str, list[str]] = {}
        for key, value in (filters or {}).items():
            if key not in FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'", filter=key)
            values = [value] if isinstance(value, str) else list(value)
            for v in values:
                if key == "type" and v not in ("custom", "builtin"):
                    raise InvalidArgument(f"invalid filter: 'type'='{v}'")
                if key == "dangling" and v not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"invalid filter 'dangling={v}'")
            if values:
                wanted[key] = values
        with self._read():
            rows = self._execute(
                f"SELECT {_cols(_NET_COLUMNS)} FROM networks ORDER BY name").fetchall()
            used = {r[0] for r in self._execute("SELECT DISTINCT network_id FROM leases")}
        return [n for n in map(_network, rows) if _network_matches(n, wanted, n.id in used)]

    def remove(self, ref: str) -> Network:
        """Delete a network nothing uses; the predefined one stays."""
        with self.transaction():
            network = self._lookup(ref)
            if network.predefined:
                raise FailedPrecondition(
                    f"{network.name} is a pre-defined network and cannot be removed",
                    network=network.id)
            busy = self._execute(
                "SELECT 1 FROM leases WHERE network_id = ? UNION ALL "
                "SELECT 1 FROM ports WHERE network_id = ? LIMIT 1",
                (network.id, network.id)).fetchone()
            if busy:
                raise FailedPrecondition(
                    f"error while removing network: network {network.name} id {network.id} "
                    "has active endpoints", network=network.id)
            self._execute("DELETE FROM networks WHERE id = ?", (network.id,))
            return network

    # -- addresses -------------------------------------------------------------------------

    def allocate(self, network_id: str, container_id: str, container_name: str, *,
                 ip: str | None = None, aliases: Iterable[str] = ()) -> Lease:
        """An address for the container on the network (idempotent: its lease there if it
        has one), and the interface name it gets: the lowest ethN it does not use yet."""
        _check_container_id(container_id)
        if not isinstance(container_name, str):
            raise InvalidArgument("container name must be a string")
        if isinstance(aliases, str) or not all(isinstance(a, str) and a for a in aliases):
            raise InvalidArgument("network aliases must be a list of non-empty names")
        aliases = tuple(dict.fromkeys(aliases))
        requested = None
        if ip is not None:
            requested = parse_ipv4(ip)
            if requested is None:
                raise InvalidArgument(f"invalid IPv4 address: {ip}")
        with self.transaction():
            network = self._lookup(network_id)
            row = self._execute(
                f"SELECT {_cols(_LEASE_COLUMNS)} FROM leases "
                "WHERE network_id = ? AND container_id = ?",
                (network.id, container_id)).fetchone()
            if row is not None:
                lease = _lease(row)
                if requested is not None and lease.ip != format_ipv4(requested):
                    raise FailedPrecondition(
                        f"container {container_id[:12]} already has address {lease.ip} on "
                        f"network {network.name}", network=network.id)
                return lease
            net, prefixlen = parse_cidr(network.subnet)
            gateway = parse_ipv4(network.gateway)
            taken = {r[0] for r in self._execute(
                "SELECT addr FROM leases WHERE network_id = ?", (network.id,))}
            if requested is not None:
                addr = self._check_requested(network, requested, gateway, taken)
            else:
                addr = self._next_free(network, net, prefixlen, gateway, taken)
                self._execute("UPDATE networks SET cursor = ? WHERE id = ?", (addr, network.id))
            used = {r[0] for r in self._execute(
                "SELECT ifindex FROM leases WHERE container_id = ?", (container_id,))}
            ifindex = next(i for i in range(len(used) + 1) if i not in used)
            self._execute(
                f"INSERT INTO leases ({_cols(_LEASE_COLUMNS)}) VALUES ({_marks(_LEASE_COLUMNS)})",
                (network.id, container_id, container_name, addr, prefixlen, network.gateway,
                 ifindex, fastjson.dumps(list(aliases))))
            return Lease(network.id, container_id, container_name, format_ipv4(addr),
                         prefixlen, network.gateway, mac_for(addr), f"eth{ifindex}", aliases)

    @staticmethod
    def _check_requested(network: Network, addr: int, gateway: int | None,
                         taken: set[int]) -> int:
        net, prefixlen = parse_cidr(network.subnet)
        text = format_ipv4(addr)
        if addr & mask(prefixlen) != net:
            raise InvalidArgument(f"Invalid address {text}: It does not belong to any of "
                                  f"this network's subnets ({network.subnet})")
        if addr in (net, net | ~mask(prefixlen) & 0xFFFFFFFF):
            raise InvalidArgument(f"Invalid address {text}: it is the network or broadcast "
                                  f"address of {network.subnet}")
        if addr == gateway or addr in taken:
            raise AlreadyExists("Address already in use", address=text, network=network.id)
        return addr

    def _next_free(self, network: Network, net: int, prefixlen: int, gateway: int | None,
                   taken: set[int]) -> int:
        first, last = net + 1, (net | ~mask(prefixlen) & 0xFFFFFFFF) - 1
        usable = last - first + 1 - (gateway is not None and first <= gateway <= last)
        if len(taken) >= usable:
            raise Unavailable(f"no available IPv4 addresses on network {network.name}",
                              network=network.id)
        cursor = self._execute("SELECT cursor FROM networks WHERE id = ?",
                               (network.id,)).fetchone()[0]
        addr = cursor if first <= cursor <= last else last
        # At most len(taken) + 2 steps: a free address exists (checked above).
        while True:
            addr = addr + 1 if addr < last else first
            if addr != gateway and addr not in taken:
                return addr

    def release(self, container_id: str, network_id: str | None = None) -> list[Lease]:
        """Give back the container's leases (all, or on one network) and its published
        ports with them. Returns the leases released; nothing to release is no error."""
        with self.transaction():
            return self._release(container_id, network_id)

    def _release(self, container_id: str, network_id: str | None) -> list[Lease]:
        where, params = "container_id = ?", [container_id]
        if network_id is not None:
            where += " AND network_id = ?"
            params.append(self._network_id(network_id))
        released = [_lease(r) for r in self._execute(
            f"SELECT {_cols(_LEASE_COLUMNS)} FROM leases WHERE {where} ORDER BY ifindex",
            params)]
        self._execute(f"DELETE FROM leases WHERE {where}", params)
        self._execute(f"DELETE FROM ports WHERE {where}", params)
        return released

    def leases(self, *, network_id: str | None = None,
               container_id: str | None = None) -> list[Lease]:
        """Leases by network and address, or one container's in interface order."""
        where, params = [], []
        with self._read():
            if network_id is not None:
                where.append("network_id = ?")
                params.append(self._network_id(network_id))
            if container_id is not None:
                where.append("container_id = ?")
                params.append(container_id)
            sql = f"SELECT {_cols(_LEASE_COLUMNS)} FROM leases"
            if where:
                sql += " WHERE " + " AND ".join(where)
            order = "ifindex" if container_id is not None else "network_id, addr"
            rows = self._execute(f"{sql} ORDER BY {order}", params).fetchall()
        return [_lease(r) for r in rows]

    def rename(self, container_id: str, new_name: str) -> None:
        """The container's new name on all its networks (what DNS and /etc/hosts use)."""
        if not isinstance(new_name, str):
            raise InvalidArgument("container name must be a string")
        with self.transaction():
            self._execute("UPDATE leases SET container_name = ? WHERE container_id = ?",
                          (new_name, container_id))

    # -- published ports -------------------------------------------------------------------

    def allocate_ports(self, container_id: str, network_id: str, container_ip: str,
                       requests: Iterable[PortRequest]) -> list[PortBinding]:
        """Host ports for `-p` requests (parse_publish's tuples), all or none. The
        container's earlier bindings on this network are replaced; a random port it had
        is kept if still free, so re-allocating on restart keeps the same port."""
        _check_container_id(container_id)
        if parse_ipv4(container_ip) is None:
            raise InvalidArgument(f"invalid container IPv4 address: {container_ip}")
        wanted = [check_request(r) for r in requests]
        with self.transaction():
            network = self._lookup(network_id)
            old = [_binding(r) for r in self._execute(
                f"SELECT {_cols(_PORT_COLUMNS)} FROM ports "
                "WHERE container_id = ? AND network_id = ?", (container_id, network.id))]
            self._execute("DELETE FROM ports WHERE container_id = ? AND network_id = ?",
                          (container_id, network.id))
            # (proto, port) -> host ips bound: "" overlaps every address, as 0.0.0.0 does.
            bound: dict[tuple[str, int], list[str]] = {}
            for proto, host_ip, port in self._execute(
                    "SELECT proto, host_ip, host_port FROM ports"):
                bound.setdefault((proto, port), []).append(host_ip)
            mine = {(b.proto, b.host_ip, b.host_port) for b in old}
            result = []
            for proto, host_ip, host_port, container_port in wanted:
                if host_port:
                    shown = f"{host_ip or '0.0.0.0'}:{host_port}"
                    if _conflicts(bound, proto, host_ip, host_port):
                        raise AlreadyExists(
                            f"Bind for {shown} failed: port is already allocated", port=shown)
                    if (proto, host_ip, host_port) not in mine and not self._port_probe(
                            proto, host_ip, host_port):
                        raise AlreadyExists(f"Bind for {shown} failed: address already in use",
                                            port=shown)
                    port = host_port
                else:
                    previous = [b.host_port for b in old if (b.proto, b.host_ip,
                                b.container_port) == (proto, host_ip, container_port)]
                    port = self._random_port(bound, proto, host_ip, previous)
                bound.setdefault((proto, port), []).append(host_ip)
                result.append(PortBinding(container_id, network.id, proto, host_ip, port,
                                          container_ip, container_port))
            for b in result:
                self._execute(
                    f"INSERT INTO ports ({_cols(_PORT_COLUMNS)}) VALUES ({_marks(_PORT_COLUMNS)})",
                    (b.container_id, b.network_id, b.proto, b.host_ip, b.host_port,
                     b.container_ip, b.container_port))
            return result

    def _random_port(self, bound: dict[tuple[str, int], list[str]], proto: str,
                     host_ip: str, previous: list[int]) -> int:
        for port in previous:
            if not _conflicts(bound, proto, host_ip, port) and self._port_probe(
                    proto, host_ip, port):
                return port
        lo, hi = self.port_range
        key = f"port/{proto}"
        row = self._execute("SELECT value FROM cursors WHERE name = ?", (key,)).fetchone()
        port = row[0] if row and lo <= row[0] <= hi else hi
        for _ in range(hi - lo + 1):
            port = port + 1 if port < hi else lo
            if not _conflicts(bound, proto, host_ip, port) and self._port_probe(
                    proto, host_ip, port):
                self._execute("INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)",
                              (key, port))
                return port
        raise Unavailable(f"all ports are allocated ({proto} {lo}-{hi})")

    def ports(self, container_id: str | None = None) -> list[PortBinding]:
        sql = f"SELECT {_cols(_PORT_COLUMNS)} FROM ports"
        params: tuple[str, ...] = ()
        if container_id is not None:
            sql, params = sql + " WHERE container_id = ?", (container_id,)
        with self._read():
            rows = self._execute(sql + " ORDER BY container_id, rowid", params).fetchall()
        return [_binding(r) for r in rows]

    def gc(self, live_container_ids: set[str]) -> list[str]:
        """Release the leases and ports of containers that no longer exist (a crash
        between creating a container's network and recording it, or a lost cleanup).
        Returns their ids, sorted."""
        with self.transaction():
            owners = {r[0] for r in self._execute(
                "SELECT container_id FROM leases UNION SELECT container_id FROM ports")}
            dead = sorted(owners - set(live_container_ids))
            for container_id in dead:
                self._release(container_id, None)
            return dead


# -- rows, filters, requests --------------------------------------------------------------


def _cols(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def _marks(columns: Sequence[str]) -> str:
    return ", ".join("?" * len(columns))


def _network(row: Sequence[Any]) -> Network:
    values = dict(zip(_NET_COLUMNS, row, strict=True))
    values["labels"] = fastjson.loads(values["labels"])
    values["options"] = fastjson.loads(values["options"])
    values["internal"] = bool(values["internal"])
    values["predefined"] = bool(values["predefined"])
    return Network(**values)


def _lease(row: Sequence[Any]) -> Lease:
    network_id, container_id, name, addr, prefixlen, gateway, ifindex, aliases = row
    return Lease(network_id, container_id, name, format_ipv4(addr), prefixlen, gateway,
                 mac_for(addr), f"eth{ifindex}", tuple(fastjson.loads(aliases)))


def _binding(row: Sequence[Any]) -> PortBinding:
    return PortBinding(*row)


def _check_container_id(container_id: object) -> None:
    if not isinstance(container_id, str) or not container_id or container_id.strip() != (
            container_id):
        raise InvalidArgument(f"invalid container id {container_id!r}")


def _routes(avoid: Iterable[str]) -> list[tuple[int, int]]:
    # Host routes and interface addresses to keep clear of. The default route (/0) is no
    # reason to avoid anything (moby skips routes without a destination), nor IPv6.
    if isinstance(avoid, str):
        avoid = [avoid]
    routes = []
    for cidr in avoid:
        if ":" in cidr:
            continue
        route = parse_cidr(cidr, strict=False)
        if route[1] > 0:
            routes.append(route)
    return routes


def _network_matches(network: Network, wanted: Mapping[str, list[str]], used: bool) -> bool:
    for key, values in wanted.items():
        if key == "name":
            ok = any(_match(v, network.name) for v in values)
        elif key == "id":
            ok = any(_match(v, network.id) for v in values)
        elif key == "label":
            ok = all(_label_match(v, network.labels) for v in values)
        elif key == "driver":
            ok = network.driver in values
        elif key == "scope":
            ok = "local" in values
        elif key == "type":
            ok = ("builtin" if network.predefined else "custom") in values
        else:  # dangling: moby counts the predefined networks as never dangling
            dangling = not used and not network.predefined
            ok = any(dangling == (v in ("true", "1")) for v in values)
        if not ok:
            return False
    return True


def _label_match(term: str, labels: Mapping[str, str]) -> bool:
    key, sep, value = term.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _conflicts(bound: Mapping[tuple[str, int], list[str]], proto: str, host_ip: str,
               port: int) -> bool:
    return any(not host_ip or not other or other == host_ip
               for other in bound.get((proto, port), ()))
