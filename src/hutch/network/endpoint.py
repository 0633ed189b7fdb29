"""Plugging a container's network namespace into a bridge network, and unplugging it.

The veth pair is created with its container end directly in the container's namespace
(IFLA_NET_NS_FD on the peer), named like docker's (eth0, eth1...), with the MAC the IPAM
derived from the address, so the container's interface never exists on the host. The host
end is named from the container id and the interface number (`veth` + 9 hex + n), which is
what teardown deletes: no state beyond the lease is needed to clean up after a crash.

The bridge is created on first use with the network's gateway address, and gets
route_localnet=1: a connection from the host's 127.0.0.1 to a published port is DNATed
to the container and leaves through the bridge with a loopback source, which the kernel
drops as martian unless the bridge allows it (the firewall masquerades it right after).
"""

from __future__ import annotations

import errno
import ipaddress
import os

from hutch.network.rtnl import Rtnl
from hutch.util.record import record


@record(frozen=True)
class Link:
    """What connect() made: the host end and the container's interface."""

    host_veth: str
    ifname: str
    bridge_created: bool


def host_veth_name(container_id: str, ifname: str) -> str:
    """`veth` + 9 hex digits of the id + the interface number: 14 characters, under
    IFNAMSIZ (16 with the NUL). eth0 -> 0, eth1 -> 1."""
    return f"veth{container_id[:9]}{ifname.removeprefix('eth')}"[:15]


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass


def ensure_bridge(rt: Rtnl, bridge: str, gateway: str, subnet: str, mtu: int) -> tuple[int, bool]:
    """The network's bridge, up, with its gateway address. Returns (ifindex, created)."""
    created = rt.add_bridge(bridge, mtu)
    index = rt.link_index(bridge)
    if index is None:  # removed between the two calls by a concurrent `network rm`
        created = rt.add_bridge(bridge, mtu)
        index = rt.link_index(bridge)
        if index is None:
            raise OSError(errno.ENODEV, f"bridge {bridge} vanished while being set up")
    net = ipaddress.IPv4Network(subnet, strict=False)
    rt.add_address(index, gateway, net.prefixlen, str(net.broadcast_address))
    if created:
        _sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1")
        # The bridge is a router for its containers (docker sets these as well).
        _sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    rt.set_up(index)
    return index, created


def connect(rt: Rtnl, netns_path: str, container_id: str, *, bridge: str, gateway: str,
            subnet: str, mtu: int, ip: str, prefixlen: int, mac: str, ifname: str,
            default_route: bool) -> Link:
    """Plug the namespace at `netns_path` into `bridge` as `ifname` with `ip`."""
    br, created = ensure_bridge(rt, bridge, gateway, subnet, mtu)
    host = host_veth_name(container_id, ifname)
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            rt.add_veth(host, ifname, peer_netns_fd=fd, master=br, mtu=mtu, peer_mac=mac)
        except FileExistsError:
            # A left-over of a crashed start of this container: replace it.
            rt.delete_link(host)
            rt.add_veth(host, ifname, peer_netns_fd=fd, master=br, mtu=mtu, peer_mac=mac)
    finally:
        os.close(fd)
    try:
        index = rt.link_index(host)
        if index is not None:
            # A container reaching its own published port: the DNATed packet goes back
            # out of the port it came in by (br_netfilter bridges it rather than routes).
            rt.set_hairpin(index)
            rt.set_up(index)
        with Rtnl.inside(netns_path) as inner:
            lo = inner.link_index("lo")
            if lo is not None:
                inner.set_up(lo)
            eth = inner.link_index(ifname)
            if eth is None:
                raise OSError(errno.ENODEV, f"{ifname} did not appear in the container")
            net = ipaddress.IPv4Network(f"{ip}/{prefixlen}", strict=False)
            inner.add_address(eth, ip, prefixlen, str(net.broadcast_address))
            inner.set_up(eth)
            if default_route:
                inner.add_default_route(gateway, eth)
    except BaseException:
        rt.delete_link(host)
        raise
    return Link(host_veth=host, ifname=ifname, bridge_created=created)


def disconnect(rt: Rtnl, container_id: str, ifname: str) -> bool:
    """Delete the container's veth pair for `ifname` (both ends go). False if gone."""
    return rt.delete_link(host_veth_name(container_id, ifname))


def remove_bridge(rt: Rtnl, bridge: str) -> bool:
    return rt.delete_link(bridge)
