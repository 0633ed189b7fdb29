"""IPv4 addresses as ints (strict parsing, CIDRs, overlap, docker's MAC for an address).
Not `ipaddress`: it is slow to import and `hutch run` pays for every import."""

from __future__ import annotations

from hutch.errors import InvalidArgument


def parse_ipv4(text: object) -> int | None:
    """Dotted quad -> int, None if it is not one. Strict like Go's net.ParseIP since 1.17:
    no leading zeros (0127.0.0.1 means octal to inet_aton, decimal to others)."""
    if not isinstance(text, str):
        return None
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (
                part[0] == "0" and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def format_ipv4(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def parse_cidr(text: object, *, strict: bool = True) -> tuple[int, int]:
    """"10.1.0.0/16" -> (network address, prefix length). strict: host bits must be zero
    (moby: "invalid subnet 10.1.0.1/16: it should be 10.1.0.0/16"); otherwise they are
    masked off (a route or an interface address). A bare address is a /32."""
    addr_text, slash, length = str(text).partition("/")
    addr = parse_ipv4(addr_text)
    if not slash:
        length = "32"
    if addr is None or not (length.isascii() and length.isdigit()) or int(length) > 32:
        raise InvalidArgument(f"invalid subnet {text}: want an IPv4 CIDR like 10.1.0.0/16")
    prefixlen = int(length)
    network = addr & mask(prefixlen)
    if strict and network != addr:
        raise InvalidArgument(
            f"invalid subnet {text}: it should be {format_ipv4(network)}/{prefixlen}")
    return network, prefixlen


def mask(prefixlen: int) -> int:
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    shorter = min(a[1], b[1])
    return a[0] & mask(shorter) == b[0] & mask(shorter)


def mac_for(addr: int) -> str:
    """docker's MAC for an address: 02:42 (locally administered) + the four IPv4 bytes."""
    return "02:42:" + ":".join(f"{addr >> s & 255:02x}" for s in (24, 16, 8, 0))
