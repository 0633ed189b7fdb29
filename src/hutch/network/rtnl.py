"""A small synchronous rtnetlink client: links, addresses and routes through pyroute2's
message codecs (ifinfmsg, ifaddrmsg, rtmsg) on a plain NETLINK_ROUTE socket.

Why not pyroute2's `IPRoute`: importing it costs ~70 ms here (the package's __init__
imports every module it has, and IPRoute 0.9 is built on asyncio), and it would sit on
the path of every `hutch run`. The message classes alone cost ~20 ms. We import them
without running the package's __init__ (`_pyroute2_module`), and do the request/ack
bookkeeping ourselves: it is a few lines.

A socket belongs to the network namespace that was current when it was created, so
`Rtnl.inside(netns_path)` opens one in a container's namespace and the rest of the
process stays where it is.

Every request asks for an ACK; an NLMSG_ERROR with a non-zero code raises OSError with
that errno and names the operation and the object ("RTM_NEWLINK veth123: File exists").
"""

from __future__ import annotations

import os
import socket
import struct
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
AF_BRIDGE = 7
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
_NAMES = {16: "RTM_NEWLINK", 17: "RTM_DELLINK", 18: "RTM_GETLINK", 19: "RTM_SETLINK",
          20: "RTM_NEWADDR",
          21: "RTM_DELADDR", 22: "RTM_GETADDR", 24: "RTM_NEWROUTE", 25: "RTM_DELROUTE",
          26: "RTM_GETROUTE"}

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_HDR = struct.Struct("=IHHII")


def _pyroute2_module(name: str):
    """Import pyroute2.<name> without executing pyroute2/__init__.py (which imports the
    whole library). The package object put in sys.modules is an empty shell with the
    right __path__; a later plain `import pyroute2` in this process gets that shell."""
    full = "pyroute2." + name
    mod = sys.modules.get(full)
    if mod is not None:
        return mod
    if "pyroute2" not in sys.modules:
        import importlib.util

        spec = importlib.util.find_spec("pyroute2")
        if spec is None:
            from hutch.errors import FailedPrecondition

            raise FailedPrecondition("pyroute2 is not installed", hint="make install")
        sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)
    import importlib

    return importlib.import_module(full)


def _codecs():
    ifinf = _pyroute2_module("netlink.rtnl.ifinfmsg")
    ifaddr = _pyroute2_module("netlink.rtnl.ifaddrmsg")
    rt = _pyroute2_module("netlink.rtnl.rtmsg")
    return ifinf.ifinfmsg, ifaddr.ifaddrmsg, rt.rtmsg


class Rtnl:
    """One NETLINK_ROUTE socket and the requests hutch needs."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 NETLINK_ROUTE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
        self.sock = sock
        self._seq = 0
        self.ifinfmsg, self.ifaddrmsg, self.rtmsg = _codecs()

    @classmethod
    def inside(cls, netns_path: str) -> Rtnl:
        """A client whose socket lives in the network namespace at `netns_path`."""
        from hutch.linux import libc

        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(target, libc.CLONE_NEWNET, path=netns_path)
            try:
                return cls()
            finally:
                libc.setns(here, libc.CLONE_NEWNET, path="/proc/thread-self/ns/net")
        finally:
            os.close(target)
            os.close(here)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the protocol -------------------------------------------------------------------
    def request(self, msg, msg_type: int, flags: int = 0, *, what: str = "",
                dump: bool = False) -> list:
        self._seq += 1
        seq = self._seq
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK) | flags
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg.encode()
        self.sock.send(msg.data)
        out = []
        codec = type(msg)
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    raise OSError(0, f"{_NAMES.get(msg_type, msg_type)}: bad netlink reply")
                chunk = data[offset:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", chunk, _HDR.size)[0]
                    if code:
                        name = _NAMES.get(msg_type, str(msg_type))
                        raise OSError(code, f"{name}{' ' + what if what else ''}: "
                                            f"{os.strerror(code)}")
                    return out
                if mtype == NLMSG_DONE:
                    return out
                reply = codec(chunk)
                reply.decode()
                out.append(reply)
                if not dump:
                    continue

    # -- links --------------------------------------------------------------------------
    def link_index(self, name: str) -> int | None:
        msg = self.ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            replies = self.request(msg, RTM_GETLINK, what=name)
        except OSError as e:
            if e.errno in (19, 2):  # ENODEV, ENOENT
                return None
            raise
        return replies[0]["index"] if replies else None

    def links(self) -> list[dict[str, Any]]:
        """Every link: {"index", "name", "kind", "master", "flags"}."""
        msg = self.ifinfmsg()
        out = []
        for m in self.request(msg, RTM_GETLINK, dump=True):
            info = m.get_attr("IFLA_LINKINFO")
            out.append({"index": m["index"], "name": m.get_attr("IFLA_IFNAME"),
                        "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                        "master": m.get_attr("IFLA_MASTER") or 0, "flags": m["flags"],
                        "mtu": m.get_attr("IFLA_MTU"),
                        "address": m.get_attr("IFLA_ADDRESS")})
        return out

    def add_bridge(self, name: str, mtu: int = 1500) -> bool:
        """Create bridge `name`; False if it exists already."""
        msg = self.ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu),
                        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
        try:
            self.request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, what=name)
        except FileExistsError:
            return False
        return True

    def add_veth(self, name: str, peer: str, *, peer_netns_fd: int, master: int = 0,
                 mtu: int = 1500, peer_mac: str | None = None) -> None:
        """A veth pair whose `peer` end is created directly in another namespace (no
        moment where the container's interface exists on the host)."""
        peer_attrs: list = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd),
                            ("IFLA_MTU", mtu)]
        if peer_mac:
            peer_attrs.append(("IFLA_ADDRESS", peer_mac))
        msg = self.ifinfmsg()
        attrs: list = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu)]
        if master:
            attrs.append(("IFLA_MASTER", master))
        attrs.append(("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]}))
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, what=name)

    def set_up(self, index: int, up: bool = True) -> None:
        msg = self.ifinfmsg()
        msg["index"] = index
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
        self.request(msg, RTM_NEWLINK, what=f"#{index}")

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """Hairpin mode on a bridge port: a frame may leave through the port it came in
        by, which is the path of a container talking to its own published port."""
        msg = self.ifinfmsg()
        msg["family"] = AF_BRIDGE
        msg["index"] = index
        # NLA_F_NESTED: without it the kernel reads IFLA_PROTINFO as the old u8 state.
        msg["attrs"] = [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", int(on))]}, 0x8000)]
        self.request(msg, RTM_SETLINK, what=f"#{index} hairpin")

    def delete_link(self, name: str) -> bool:
        """Delete link `name`; False if there is none."""
        msg = self.ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            self.request(msg, RTM_DELLINK, what=name)
        except OSError as e:
            if e.errno in (19, 2):
                return False
            raise
        return True

    # -- addresses and routes -----------------------------------------------------------
    def add_address(self, index: int, address: str, prefixlen: int,
                    broadcast: str | None = None) -> bool:
        """False if the address is there already."""
        msg = self.ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        attrs = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        if broadcast:
            attrs.append(("IFA_BROADCAST", broadcast))
        msg["attrs"] = attrs
        try:
            self.request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                         what=f"{address}/{prefixlen}")
        except FileExistsError:
            return False
        return True

    def add_default_route(self, gateway: str, oif: int) -> None:
        msg = self.rtmsg()
        msg["family"] = socket.AF_INET
        msg["dst_len"] = 0
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", oif)]
        self.request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, what=f"default via {gateway}")

    def routes(self) -> list[str]:
        """IPv4 destinations of the main table as CIDRs (for picking free subnets)."""
        msg = self.rtmsg()
        msg["family"] = socket.AF_INET
        out = []
        for m in self.request(msg, RTM_GETROUTE, dump=True):
            if m["table"] != RT_TABLE_MAIN or not m["dst_len"]:
                continue
            dst = m.get_attr("RTA_DST")
            if dst:
                out.append(f"{dst}/{m['dst_len']}")
        return out
