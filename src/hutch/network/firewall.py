"""hutch's NAT, port-forward and isolation rules, in an nftables table of its own.

Everything lives in one table (`ip hutch` by default, IPv4 only), so hutch never touches
another program's rules and `remove_all()` takes everything away at once:

    chain prerouting   nat, hook prerouting, priority dstnat:  fib daddr type local jump ports
    chain output       nat, hook output, priority -100:        fib daddr type local jump ports
    chain ports        regular: one DNAT rule per published port   (comment "ctr:<owner>")
    chain postrouting  nat, hook postrouting, priority srcnat:  masquerade (comment "net:<bridge>")
    chain forward      filter, hook forward, priority filter, policy accept: isolation drops
    set bridges        type ifname: every bridge hutch has a network on

The output chain is what makes published ports work from the host itself, 127.0.0.1
included. A packet to 127.0.0.1 DNATed to a container leaves through the bridge with a
loopback source, which the kernel drops as a martian unless the bridge has
net.ipv4.conf.<bridge>.route_localnet=1 (the caller sets it), and which the container could
not answer: the `oifname <bridge> ip saddr 127.0.0.0/8 masquerade` rule rewrites it.

Rules are found again by their comment: `net:<bridge>` for a network's rules, `ctr:<owner>`
for a container's port rules. nft 1.0.6 deletes rules only by handle and has no
delete-if-exists (`destroy` came with 1.0.8), so removing means: list the table as JSON, pick
the handles by comment, delete them in one batch; when the batch fails with ENOENT (someone
removed a rule in between) we list again and retry. Every method is one atomic transaction,
idempotent, and quiet when what it removes is gone already.

The batches that add rules carry the base table and chains with them (`add` of an existing
table, chain or set is a no-op; the two fixed jump rules are flushed and re-added), so a
concurrent `remove_all()` between two calls cannot leave a half-made table behind. Handles
are per table: callers serialise `remove_all()` with the rest (the engine's network lock),
or a handle listed before the table was re-created could name another rule.

Nothing from the user reaches nft as syntax: names are checked against strict patterns and
addresses are parsed with `ipaddress` before they are written into a command. The command
text comes from pure functions (tested without root); `Firewall` only runs them.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Protocol

from hutch.errors import InvalidArgument
from hutch.util.record import record

FAMILY = "ip"
DEFAULT_TABLE = "hutch"
BRIDGES_SET = "bridges"
NET_TAG = "net:"
CTR_TAG = "ctr:"
_RETRIES = 5

_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
# IFNAMSIZ is 16 with the NUL; "." and ".." are refused by the kernel (dev_valid_name).
_BRIDGE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# Container ids (64 hex digits) or names; the comment must stay under nft's 128 bytes.
_OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
PROTOCOLS = ("tcp", "udp")


@record(frozen=True)
class NetRules:
    """A hutch network on a Linux bridge: `subnet` is its IPv4 CIDR. An internal network
    is neither masqueraded nor forwarded anywhere but within its bridge."""

    bridge: str
    subnet: str
    internal: bool = False


@record(frozen=True)
class PortRule:
    """A published port: connections to host_ip:host_port (host_ip "" or "0.0.0.0": any
    local address) go to container_ip:container_port."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


class NftRunner(Protocol):
    def run(self, cmds: str) -> str: ...

    def run_json(self, cmds: str) -> object: ...


# --- validation ------------------------------------------------------------------------


def check_table(table: str) -> str:
    if not isinstance(table, str) or not _TABLE_RE.fullmatch(table):
        raise InvalidArgument(f"invalid nftables table name {table!r}")
    return table


def check_bridge(bridge: str) -> str:
    if not isinstance(bridge, str) or not _BRIDGE_RE.fullmatch(bridge) \
            or bridge in (".", ".."):
        raise InvalidArgument(f"invalid bridge name {bridge!r}: up to 15 of A-Z a-z 0-9 _ . -")
    return bridge


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not _OWNER_RE.fullmatch(owner):
        raise InvalidArgument(f"invalid port rule owner {owner!r}: a container id or name")
    return owner


def check_subnet(subnet: str) -> str:
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"invalid IPv4 subnet {subnet!r}: {e}") from None
    return str(net)


def _check_port(port: int, what: str) -> int:
    if type(port) is not int or not 1 <= port <= 65535:
        raise InvalidArgument(f"invalid {what} {port!r}: a port is 1-65535")
    return port


def _check_ip(addr: str, what: str) -> str:
    try:
        ip = ipaddress.IPv4Address(addr)
    except (ValueError, TypeError):
        raise InvalidArgument(f"invalid {what} {addr!r}: an IPv4 address") from None
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidArgument(f"invalid {what} {addr!r}: not a unicast address")
    return str(ip)


def check_port_rule(rule: PortRule) -> PortRule:
    """The rule with its addresses in canonical form ("" for any host address)."""
    if rule.proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {rule.proto!r}: tcp or udp")
    host_ip = rule.host_ip
    if host_ip in ("", "0.0.0.0"):
        host_ip = ""
    else:
        host_ip = _check_ip(host_ip, "host address")
    return PortRule(rule.proto, host_ip, _check_port(rule.host_port, "host port"),
                    _check_ip(rule.container_ip, "container address"),
                    _check_port(rule.container_port, "container port"))


# --- command text (pure) ---------------------------------------------------------------


def base_commands(table: str = DEFAULT_TABLE) -> str:
    """The table, its chains and set; every line is a no-op when the object exists, and
    the two jump rules are flushed and re-added so they never pile up."""
    t = f"{FAMILY} {check_table(table)}"
    return "\n".join((
        f"add table {t}",
        f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {t} output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {t} ports",
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}",
        f"add set {t} {BRIDGES_SET} {{ type ifname; }}",
        f"flush chain {t} prerouting",
        f"flush chain {t} output",
        f"add rule {t} prerouting fib daddr type local jump ports",
        f"add rule {t} output fib daddr type local jump ports",
    )) + "\n"


def network_rules(table: str, net: NetRules) -> str:
    """The `add` lines for one network's rules and its set element."""
    t = f"{FAMILY} {check_table(table)}"
    br = check_bridge(net.bridge)
    subnet = check_subnet(net.subnet)
    c = f'comment "{NET_TAG}{br}"'
    lines = []
    if not net.internal:
        lines.append(f'add rule {t} postrouting ip saddr {subnet} oifname != "{br}" masquerade {c}')
    lines += [
        # The host's own 127.0.0.1 -> a published port: DNATed in `output`, it leaves
        # through the bridge with a loopback source the container cannot answer.
        f'add rule {t} postrouting oifname "{br}" ip saddr 127.0.0.0/8 masquerade {c}',
        # Hairpin: a container -> host:published port -> a container on the same bridge
        # would get the answer straight from its peer, not from the address it called.
        # Matched by source subnet, not `iifname`: with br_netfilter loaded (Docker hosts,
        # this one) a DNATed packet that goes back out its own bridge is bridged, and the
        # postrouting hook then sees no input interface at all.
        f'add rule {t} postrouting ip saddr {subnet} oifname "{br}" ct status dnat masquerade {c}',
    ]
    if net.internal:
        lines += [
            f'add rule {t} forward iifname "{br}" oifname != "{br}" drop {c}',
            f'add rule {t} forward oifname "{br}" iifname != "{br}" drop {c}',
        ]
    else:
        lines += [
            f'add rule {t} forward iifname "{br}" oifname != "{br}" oifname @{BRIDGES_SET} drop {c}',
            f'add rule {t} forward oifname "{br}" iifname != "{br}" iifname @{BRIDGES_SET} drop {c}',
        ]
    lines.append(f'add element {t} {BRIDGES_SET} {{ "{br}" }}')
    return "\n".join(lines) + "\n"


def port_rules(table: str, owner: str, rules: Iterable[PortRule]) -> str:
    """The `add rule` lines for one owner's published ports."""
    t = f"{FAMILY} {check_table(table)}"
    c = f'comment "{CTR_TAG}{check_owner(owner)}"'
    lines = []
    for rule in rules:
        r = check_port_rule(rule)
        match = f"ip daddr {r.host_ip} " if r.host_ip else ""
        lines.append(f"add rule {t} ports {match}{r.proto} dport {r.host_port} "
                     f"dnat to {r.container_ip}:{r.container_port} {c}")
    return "".join(line + "\n" for line in lines)


def delete_rules(table: str, handles: Iterable[tuple[str, int]]) -> str:
    """`delete rule` lines for (chain, handle) pairs."""
    t = f"{FAMILY} {check_table(table)}"
    lines = []
    for chain, handle in handles:
        if not _TABLE_RE.fullmatch(chain) or type(handle) is not int or handle <= 0:
            raise InvalidArgument(f"invalid rule reference {chain!r} handle {handle!r}")
        lines.append(f"delete rule {t} {chain} handle {handle}")
    return "".join(line + "\n" for line in lines)


def delete_element(table: str, bridge: str) -> str:
    """Remove `bridge` from the set whether or not it is in it (`add` first: 1.0.6 has no
    delete-if-exists)."""
    t = f"{FAMILY} {check_table(table)}"
    br = check_bridge(bridge)
    return (f'add element {t} {BRIDGES_SET} {{ "{br}" }}\n'
            f'delete element {t} {BRIDGES_SET} {{ "{br}" }}\n')


def delete_table(table: str = DEFAULT_TABLE) -> str:
    """Delete the table whether or not it exists."""
    t = f"{FAMILY} {check_table(table)}"
    return f"add table {t}\ndelete table {t}\n"


def list_table(table: str = DEFAULT_TABLE) -> str:
    return f"list table {FAMILY} {check_table(table)}\n"


# --- reading a JSON listing (pure) -----------------------------------------------------


def _objects(listing: object) -> list[dict]:
    if not isinstance(listing, dict):
        return []
    items = listing.get("nftables")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def tagged_rules(listing: object) -> dict[str, list[tuple[str, int]]]:
    """comment -> [(chain, handle)] for every commented rule in an `nft -j list` output."""
    found: dict[str, list[tuple[str, int]]] = {}
    for item in _objects(listing):
        rule = item.get("rule")
        if not isinstance(rule, dict):
            continue
        comment, chain, handle = rule.get("comment"), rule.get("chain"), rule.get("handle")
        if isinstance(comment, str) and isinstance(chain, str) and type(handle) is int:
            found.setdefault(comment, []).append((chain, handle))
    return found


def set_elements(listing: object, name: str = BRIDGES_SET) -> set[str]:
    """The string elements of set `name` in an `nft -j list` output."""
    out: set[str] = set()
    for item in _objects(listing):
        s = item.get("set")
        if not isinstance(s, dict) or s.get("name") != name:
            continue
        elems = s.get("elem", [])
        for e in elems if isinstance(elems, list) else [elems]:
            if isinstance(e, dict):  # an element with a comment: {"elem": {"val": "br0"}}
                inner = e.get("elem")
                e = inner.get("val") if isinstance(inner, dict) else None
            if isinstance(e, str):
                out.add(e)
    return out


def _tagged(tags: Iterable[str], prefix: str) -> set[str]:
    return {tag[len(prefix):] for tag in tags if tag.startswith(prefix)}


# --- the firewall ----------------------------------------------------------------------


class Firewall:
    """hutch's rules in one network namespace: that of the `nft` context, which is made
    on first use when none is given (so: the namespace current at the first call)."""

    def __init__(self, nft: NftRunner | None = None, table: str = DEFAULT_TABLE) -> None:
        self.table = check_table(table)
        self._nft = nft

    @property
    def nft(self) -> NftRunner:
        if self._nft is None:
            from hutch.linux.nftables import Nft

            self._nft = Nft()
        return self._nft

    def ensure_base(self) -> None:
        self.nft.run(base_commands(self.table))

    def add_network(self, net: NetRules) -> None:
        """Masquerade and isolation for one network; replaces its earlier rules."""
        check_bridge(net.bridge)
        add = network_rules(self.table, net)  # validates before anything runs
        self._replace(NET_TAG + net.bridge, add)

    def remove_network(self, bridge: str) -> None:
        tag = NET_TAG + check_bridge(bridge)

        def batch(listing: object) -> str:
            text = delete_rules(self.table, tagged_rules(listing).get(tag, ()))
            if bridge in set_elements(listing):
                text += delete_element(self.table, bridge)
            return text

        self._apply(batch)

    def add_ports(self, owner: str, rules: list[PortRule]) -> None:
        """Publish `rules` for `owner`, replacing what it had (an empty list clears)."""
        add = port_rules(self.table, owner, rules)
        self._replace(CTR_TAG + owner, add)

    def remove_ports(self, owner: str) -> None:
        tag = CTR_TAG + check_owner(owner)
        self._apply(lambda listing: delete_rules(self.table, tagged_rules(listing).get(tag, ())))

    def owners(self) -> set[str]:
        """Owners that have port rules (to collect those of containers that are gone)."""
        return _tagged(tagged_rules(self._listing()), CTR_TAG)

    def networks(self) -> set[str]:
        """Bridges that have rules or a set element."""
        listing = self._listing()
        return _tagged(tagged_rules(listing), NET_TAG) | set_elements(listing)

    def remove_all(self) -> None:
        self.nft.run(delete_table(self.table))

    # --- plumbing ----------------------------------------------------------------------

    def _listing(self) -> object:
        try:
            return self.nft.run_json(list_table(self.table))
        except OSError as e:
            if e.errno == errno.ENOENT:  # no table: nothing of ours exists
                return {}
            raise

    def _replace(self, tag: str, add: str) -> None:
        base = base_commands(self.table)
        self._apply(lambda listing: base + delete_rules(
            self.table, tagged_rules(listing).get(tag, ())) + add)

    def _apply(self, batch: Callable[[object], str]) -> None:
        """Run batch(listing) for a fresh listing; on ENOENT (a listed rule vanished before
        the batch ran) list again and retry. An empty batch is not run."""
        for attempt in range(_RETRIES):
            text = batch(self._listing())
            if not text:
                return
            try:
                self.nft.run(text)
                return
            except OSError as e:
                if e.errno != errno.ENOENT or attempt == _RETRIES - 1:
                    raise
