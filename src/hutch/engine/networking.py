"""A container's network, from `--network`/`-p` to veth, addresses, NAT rules and
/etc/hosts, and back.

Lifecycle. At each start of a container on a bridge network (the default one, "bridge",
or a user-defined one), the engine pins a new network namespace at
{HUTCH_RUN}/netns/<id>, takes an address from each network's IPAM (a lease in
networks.db), plugs a veth pair into each bridge, adds the published ports' DNAT rules,
and the runtime's spec joins that namespace by path. The namespace outlives restarts
by a restart policy (same addresses). When the container ends for good, the monitor
tears it all down; if the monitor died, whatever notices it (ps, stop, rm, prune: the
engine's reconcile) does. Teardown is keyed on the pinned namespace file: it is made
first and removed last, so "the file exists" means "something may be left to undo".

Name resolution between containers on a user-defined network: /etc/hosts kept current,
not an embedded DNS server. hutch has no daemon, and a resolver would need a process per
network (podman runs aardvark-dns, docker runs one inside dockerd) to babysit, restart
and clean up. A hosts file needs no process: every start, stop and connect rewrites the
hosts files of the containers on the networks it touched (in place: they are
bind-mounted), under one lock. docker did exactly this before 1.10. What it costs: a
program that caches lookups does not see a peer's new address, and names only resolve
inside hutch's own containers.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress

from hutch.engine.paths import ContainerPaths, netns_dir
from hutch.errors import FailedPrecondition, HutchError, InvalidArgument
from hutch.util.record import field, record

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "hutch0"
DEFAULT_SUBNET = "10.77.0.0/16"
BRIDGE_MODES_BUILTIN = ("none", "host")


def netns_path(settings, container_id: str) -> str:
    return ContainerPaths(settings, container_id).netns


def default_subnet() -> str:
    return os.environ.get("HUTCH_BRIDGE_SUBNET") or DEFAULT_SUBNET


def uses_bridge(mode: str) -> bool:
    return bool(mode) and mode not in BRIDGE_MODES_BUILTIN and not mode.startswith("container:")


@record
class NetOptions:
    """What `docker run` says about networking, as the container's record keeps it."""

    mode: str = DEFAULT_NETWORK
    aliases: list[str] = field(default_factory=list)
    ip: str = ""
    publish: list[list] = field(default_factory=list)  # [proto, host_ip, host_port, cport]
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)


def parse_net_options(*, network: str, aliases=(), ip: str = "", publish=(),
                      publish_all: bool = False, dns=(), dns_search=(), dns_options=(),
                      add_hosts=()) -> NetOptions:
    """Check the flags without touching any state (the CLI calls this before create)."""
    mode = network or DEFAULT_NETWORK
    if mode == "default":
        mode = DEFAULT_NETWORK
    if not (aliases or ip or publish or dns or add_hosts):  # the common case: no imports
        return NetOptions(mode=mode, publish_all=publish_all, dns_search=list(dns_search),
                          dns_options=list(dns_options))
    import ipaddress

    from hutch.network.etcfiles import parse_add_host

    user_network = uses_bridge(mode) and mode != DEFAULT_NETWORK
    if aliases and not user_network:
        raise InvalidArgument("network-scoped alias is supported only for containers in "
                              "user defined networks")
    if ip:
        if not user_network:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
    ports: list[list] = []
    if publish:
        from hutch.network.store import parse_publish

        for spec in publish:
            ports += [list(p) for p in parse_publish(spec)]
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{server} is not an ip address") from None
    for h in add_hosts:
        parse_add_host(h, gateway="0.0.0.0")
    return NetOptions(mode=mode, aliases=list(aliases), ip=ip, publish=ports,
                      publish_all=publish_all, dns=list(dns), dns_search=list(dns_search),
                      dns_options=list(dns_options), extra_hosts=list(add_hosts))


class Networking:
    """The engine's side of networking. Store, firewall and netlink client are opened
    on first use and can be injected."""

    def __init__(self, settings, *, store=None, firewall=None, rtnl=None) -> None:
        self.settings = settings
        self._store = store
        self._firewall = firewall
        self._rtnl = rtnl

    @property
    def store(self):
        if self._store is None:
            from hutch.network.store import NetworkStore

            os.makedirs(self.settings.root, mode=0o711, exist_ok=True)
            self._store = NetworkStore(os.path.join(self.settings.root, "networks.db"))
        return self._store

    @property
    def firewall(self):
        if self._firewall is None:
            from hutch.network.firewall import Firewall

            self._firewall = Firewall()
        return self._firewall

    @property
    def rtnl(self):
        if self._rtnl is None:
            from hutch.network.rtnl import Rtnl

            self._rtnl = Rtnl()
        return self._rtnl

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None

    # -- networks -----------------------------------------------------------------------
    def default_network(self):
        return self.store.ensure_default(default_subnet(), bridge=DEFAULT_BRIDGE,
                                         name=DEFAULT_NETWORK)

    def get(self, ref: str):
        if ref in (DEFAULT_NETWORK, "default"):
            return self.default_network()
        return self.store.get(ref)

    def check_mode(self, mode: str) -> None:
        """--network NAME at create: the network must exist (docker checks it then)."""
        if uses_bridge(mode) and mode != DEFAULT_NETWORK:
            self.store.get(mode)

    def create_network(self, name: str, **kw):
        """`network create`: the record, the bridge and its firewall rules."""
        from hutch.network import endpoint
        from hutch.network.firewall import NetRules

        net = self.store.create(name, avoid=tuple(self.host_routes()), **kw)
        try:
            endpoint.ensure_bridge(self.rtnl, net.bridge, net.gateway, net.subnet, net.mtu)
            self.firewall.add_network(NetRules(net.bridge, net.subnet, net.internal))
        except BaseException:
            with suppress(HutchError, OSError):
                self._drop_network(net)
                self.store.remove(net.id)
            raise
        return net

    def host_routes(self) -> list[str]:
        try:
            return self.rtnl.routes()
        except OSError:
            return []

    def remove_network(self, ref: str):
        """`network rm`: refused for the predefined network and for networks with
        endpoints (the store says so), after releasing what dead containers held."""
        self.gc()
        return self._remove(self.store.get(ref))

    def _remove(self, net):
        self.store.remove(net.id)
        self._drop_network(net)
        return net

    def _drop_network(self, net) -> None:
        """The bridge and its firewall rules."""
        from hutch.network import endpoint

        with suppress(HutchError, OSError):
            self.firewall.remove_network(net.bridge)
        with suppress(OSError):
            endpoint.remove_bridge(self.rtnl, net.bridge)

    def prune(self) -> list:
        """Remove user-defined networks no container uses."""
        self.gc()
        used = {lease.network_id for lease in self.store.leases()}
        gone = []
        for net in self.store.list():
            if not net.predefined and net.id not in used:
                with suppress(HutchError):
                    gone.append(self._remove(net))
        return gone

    # -- a container's network ----------------------------------------------------------
    def setup(self, rec, net: NetOptions, exposed: list[str]) -> dict:
        """Make the container's namespace and plug it in. Returns what the record keeps
        (docker's NetworkSettings, trimmed): {"netns", "networks": {name: {...}},
        "ports": [...]}."""
        from hutch.network import netns
        from hutch.network.firewall import NetRules, PortRule

        path = netns_path(self.settings, rec.id)
        if os.path.lexists(path):
            self.teardown(rec.id)
        os.makedirs(netns_dir(self.settings), mode=0o711, exist_ok=True)
        netns.create(path)
        try:
            nets = {net.mode: {"aliases": net.aliases, "ip": net.ip}}
            nets.update(rec.config.get("extra_networks") or {})
            out: dict = {"netns": path, "networks": {}, "ports": []}
            first = None
            for name, ep in nets.items():
                network = self.get(name)
                lease = self.store.allocate(network.id, rec.id, rec.name,
                                            ip=ep.get("ip") or None,
                                            aliases=tuple(ep.get("aliases") or ()))
                link = self._plug(path, rec.id, network, lease,
                                  default_route=first is None and not network.internal)
                if link.bridge_created:
                    self.firewall.add_network(NetRules(network.bridge, network.subnet,
                                                       network.internal))
                out["networks"][network.name] = _endpoint_info(network, lease)
                if first is None:
                    first = (network, lease)
            requests = [tuple(p) for p in net.publish]
            if net.publish_all:
                published = {(p[0], int(p[3])) for p in net.publish}
                for key in exposed:
                    port, _, proto = key.partition("/")
                    proto = proto or "tcp"
                    if (proto, int(port)) not in published:
                        requests.append((proto, "", 0, int(port)))
            if requests and first is not None:
                network, lease = first
                bindings = self.store.allocate_ports(rec.id, network.id, lease.ip, requests)
                self.firewall.add_ports(rec.id, [
                    PortRule(b.proto, b.host_ip, b.host_port, b.container_ip,
                             b.container_port) for b in bindings])
                out["ports"] = [{"proto": b.proto, "host_ip": b.host_ip,
                                 "host_port": b.host_port, "container_port": b.container_port}
                                for b in bindings]
            self.refresh_hosts(rec.id)
            return out
        except BaseException:
            with suppress(HutchError, OSError):
                self.teardown(rec.id)
            raise

    def _plug(self, path: str, container_id: str, network, lease, *, default_route: bool):
        from hutch.network import endpoint

        return endpoint.connect(
            self.rtnl, path, container_id, bridge=network.bridge, gateway=network.gateway,
            subnet=network.subnet, mtu=network.mtu, ip=lease.ip, prefixlen=lease.prefixlen,
            mac=lease.mac, ifname=lease.ifname, default_route=default_route)

    def teardown(self, container_id: str, *, check_leases: bool = False) -> None:
        """Undo setup(); idempotent, quiet about what is gone, safe after a crash at any
        point of setup() or of an earlier teardown. Without its namespace file there is
        nothing to undo, except after a reboot (HUTCH_RUN is a tmpfs, networks.db is
        not): `check_leases` releases what the database still holds for it."""
        path = netns_path(self.settings, container_id)
        pinned = os.path.lexists(path)
        if not pinned and not (check_leases and os.path.exists(
                os.path.join(self.settings.root, "networks.db"))):
            return  # the common case of --network none/host: no import, no database
        leases = self.store.leases(container_id=container_id)
        if self.store.ports(container_id):
            self.firewall.remove_ports(container_id)
        if pinned and not _namespace_is_freed_by_unmount(path):
            from hutch.network import endpoint

            for lease in leases:
                with suppress(OSError):
                    endpoint.disconnect(self.rtnl, container_id, lease.ifname)
        self.store.release(container_id)
        if pinned:
            from hutch.network import netns

            # Unpinning the namespace deletes it, and the kernel deletes its veth pairs
            # with it, asynchronously: an explicit RTM_DELLINK waits for RCU grace
            # periods, ~22 ms per veth here, on the path of every `run --rm`.
            netns.remove(path)
        if leases:
            self.refresh_hosts(None, networks={lease.network_id for lease in leases})

    def gc(self, live: set[str] | None = None) -> list[str]:
        """Tear down the networks of containers that no longer run (a crash, a killed
        monitor) and release what belongs to containers that are gone. `live`: ids of
        containers whose network must stay; None: read them from the container store."""
        if live is None:
            live = self._live_containers()
        done = []
        with suppress(FileNotFoundError):
            for cid in os.listdir(netns_dir(self.settings)):
                if cid not in live and not cid.startswith("."):
                    with suppress(HutchError, OSError):
                        self.teardown(cid)
                        done.append(cid)
        done += self.store.gc(live)
        with suppress(HutchError, OSError):  # port rules whose records are gone already
            for owner in self.firewall.owners() - live:
                self.firewall.remove_ports(owner)
        return done

    def _live_containers(self) -> set[str]:
        from hutch.engine.containers import Engine
        from hutch.engine.store import ACTIVE_STATES

        with Engine(self.settings) as eng:
            return {r.id for r in eng.list(all=True) if r.state in ACTIVE_STATES}

    # -- connect / disconnect a running container ------------------------------------------
    def connect(self, rec, network, *, aliases=(), ip: str = "") -> dict:
        path = netns_path(self.settings, rec.id)
        if not os.path.lexists(path):
            raise FailedPrecondition(f"container {rec.name} has no network namespace of "
                                     "its own (--network none, host or container:)")
        for lease in self.store.leases(container_id=rec.id):
            if lease.network_id == network.id:
                raise FailedPrecondition(f"endpoint with name {rec.name} already exists in "
                                         f"network {network.name}")
        lease = self.store.allocate(network.id, rec.id, rec.name, ip=ip or None,
                                    aliases=tuple(aliases))
        try:
            self._plug(path, rec.id, network, lease, default_route=False)
        except BaseException:
            self.store.release(rec.id, network.id)
            raise
        self.refresh_hosts(rec.id, include_self=True)
        return _endpoint_info(network, lease)

    def disconnect(self, rec, network) -> None:
        from hutch.network import endpoint

        leases = [lease for lease in self.store.leases(container_id=rec.id)
                  if lease.network_id == network.id]
        if not leases:
            raise FailedPrecondition(f"container {rec.name} is not connected to network "
                                     f"{network.name}")
        for lease in leases:
            with suppress(OSError):
                endpoint.disconnect(self.rtnl, rec.id, lease.ifname)
        self.store.release(rec.id, network.id)
        self.refresh_hosts(rec.id, networks={network.id}, include_self=True)

    # -- /etc/hosts -----------------------------------------------------------------------
    def hosts_entries(self, container_id: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """(own addresses, peers) for a container's /etc/hosts."""
        mine = self.store.leases(container_id=container_id)
        own = [lease.ip for lease in mine]
        peers: list[tuple[str, list[str]]] = []
        default = self.default_network().id if mine else None
        for lease in mine:
            if lease.network_id == default:
                continue  # docker's default bridge has no name resolution
            for other in self.store.leases(network_id=lease.network_id):
                if other.container_id == container_id:
                    continue
                names = [n for n in (other.container_name, *other.aliases,
                                     other.container_id[:12]) if n]
                peers.append((other.ip, names))
        return own, peers

    def refresh_hosts(self, container_id: str | None, *, networks=None,
                      include_self: bool = False) -> None:
        """Rewrite the hosts files of the containers sharing a user-defined network with
        `container_id` (or on `networks`); its own too with `include_self` (at start,
        prepare_bundle writes it)."""
        ids: set[str] = set()
        net_ids = set(networks or ())
        if container_id:
            net_ids |= {lease.network_id for lease in
                        self.store.leases(container_id=container_id)}
        if not net_ids:
            return
        default = self.default_network().id
        for nid in net_ids - {default}:
            ids |= {lease.container_id for lease in self.store.leases(network_id=nid)}
        if container_id:
            if include_self:
                ids.add(container_id)
            else:
                ids.discard(container_id)
        if not ids:
            return
        with self._hosts_lock():
            for cid in ids:
                with suppress(OSError, HutchError):
                    self.write_hosts(cid)

    def write_hosts(self, container_id: str) -> None:
        """Regenerate a running container's /etc/hosts in place (it is bind-mounted: a
        rename would not be seen). Only files hutch generated (hosts.json beside)."""
        from hutch.network.etcfiles import hosts
        from hutch.util import fastjson

        root = ContainerPaths(self.settings, container_id).root_dir
        try:
            with open(os.path.join(root, "hosts.json"), "rb") as f:
                meta = fastjson.loads(f.read())
        except FileNotFoundError:
            return
        own, peers = self.hosts_entries(container_id)
        text = hosts(meta["hostname"], own=own, extra=[tuple(x) for x in meta["extra"]],
                     peers=peers)
        with open(os.path.join(root, "hosts"), "r+") as f:
            f.write(text)
            f.truncate()

    @contextmanager
    def _hosts_lock(self):
        import fcntl

        os.makedirs(netns_dir(self.settings), mode=0o711, exist_ok=True)
        fd = os.open(os.path.join(netns_dir(self.settings), ".hosts.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _namespace_is_freed_by_unmount(path: str) -> bool:
    """True when no process is in the namespace pinned at `path` (its container is gone),
    so unpinning it frees it. A process still in it would keep the veths alive."""
    try:
        ino = os.stat(path).st_ino
    except OSError:
        return True
    # A live container's init has the namespace; its processes are in its cgroup, which
    # the runtime killed before any teardown. Checking every /proc/*/ns/net is the
    # thorough way and costs ~1 ms per 100 processes.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino == ino:
                    return False
            except OSError:
                continue
    return True


def _endpoint_info(network, lease) -> dict:
    return {"NetworkID": network.id, "IPAddress": lease.ip, "IPPrefixLen": lease.prefixlen,
            "Gateway": lease.gateway, "MacAddress": lease.mac, "Aliases": list(lease.aliases),
            "InterfaceName": lease.ifname}


def network_info(net, leases) -> dict:
    """A network as `docker network inspect` shows it."""
    import time as _time

    created = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(net.created)) + \
        f".{int((net.created % 1) * 1e9):09d}Z"
    return {
        "Name": net.name, "Id": net.id, "Created": created, "Scope": "local",
        "Driver": net.driver, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {},
                 "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
        "Internal": net.internal, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {
            lease.container_id: {
                "Name": lease.container_name, "MacAddress": lease.mac,
                "IPv4Address": f"{lease.ip}/{lease.prefixlen}", "IPv6Address": "",
                "Aliases": list(lease.aliases)}
            for lease in leases if lease.network_id == net.id},
        "Options": {"com.docker.network.bridge.name": net.bridge,
                    "com.docker.network.driver.mtu": str(net.mtu), **net.options},
        "Labels": dict(net.labels),
    }


def connect_container(engine, container: str, network_ref: str, *, aliases=(),
                      ip: str = "") -> None:
    """`network connect`: a running container gets a new interface now; a stopped one
    at its next start (kept in its record)."""
    from hutch.engine.store import ACTIVE_STATES

    rec = engine.get(container)
    mode = (rec.config.get("net") or {}).get("mode") or \
        (rec.config.get("run") or {}).get("network", "")
    if not uses_bridge(mode):
        raise FailedPrecondition(f"container {rec.name} is in network mode {mode!r}: it "
                                 "cannot be connected to a network",
                                 hint="only containers on bridge networks can")
    nw = engine.networking.get(network_ref)
    if nw.name != DEFAULT_NETWORK and ip:
        import ipaddress

        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
    extra = dict(rec.config.get("extra_networks") or {})
    if nw.name == mode or nw.name in extra or \
            (nw.name == DEFAULT_NETWORK and mode == "default"):
        raise FailedPrecondition(f"endpoint with name {rec.name} already exists in network "
                                 f"{nw.name}")
    if rec.state in ACTIVE_STATES:
        info = engine.networking.connect(rec, nw, aliases=aliases, ip=ip)
        state = dict(rec.network or {})
        state["networks"] = {**(state.get("networks") or {}), nw.name: info}
        engine.store.update(rec.id, network=state)
        rec = engine.get(rec.id)
    extra[nw.name] = {"aliases": list(aliases), "ip": ip}
    engine.store.update(rec.id, config={**rec.config, "extra_networks": extra})


def disconnect_container(engine, container: str, network_ref: str, *,
                         force: bool = False) -> None:
    from hutch.engine.store import ACTIVE_STATES

    rec = engine.get(container)
    nw = engine.networking.get(network_ref)
    extra = dict(rec.config.get("extra_networks") or {})
    mode = (rec.config.get("net") or {}).get("mode", "")
    live = rec.state in ACTIVE_STATES and nw.name in ((rec.network or {}).get("networks")
                                                      or {})
    if nw.name not in extra and nw.name != mode and not live:
        raise FailedPrecondition(f"container {rec.name} is not connected to network "
                                 f"{nw.name}")
    if live:
        engine.networking.disconnect(rec, nw)
        state = dict(rec.network or {})
        state["networks"] = {k: v for k, v in (state.get("networks") or {}).items()
                             if k != nw.name}
        engine.store.update(rec.id, network=state)
        rec = engine.get(rec.id)
    config = dict(rec.config)
    extra.pop(nw.name, None)
    config["extra_networks"] = extra
    if nw.name == mode:
        # docker leaves such a container with no network; so do we, from the next start.
        config["net"] = {**(config.get("net") or {}), "mode": "none", "publish": []}
        config["run"] = {**(config.get("run") or {}), "network": "none"}
    engine.store.update(rec.id, config=config)
