"""docker's `-p` syntax and the checks on a port request (go-connections' nat package)."""

from __future__ import annotations

from hutch.errors import InvalidArgument
from hutch.network.ipv4 import format_ipv4, parse_ipv4

PROTOCOLS = ("tcp", "udp")
PortRequest = tuple[str, str, int, int]  # (proto, host_ip, host_port, container_port)


def check_request(request: object) -> PortRequest:
    try:
        proto, host_ip, host_port, container_port = request  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid port request {request!r}: want "
                              "(proto, host_ip, host_port, container_port)") from None
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    host_ip = _host_ip(host_ip)
    if not _is_port(host_port, zero=True):
        raise InvalidArgument(f"invalid hostPort: {host_port}")
    if not _is_port(container_port, zero=False):
        raise InvalidArgument(f"invalid containerPort: {container_port}")
    return proto, host_ip, host_port, container_port


def _is_port(value: object, *, zero: bool) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and (0 if zero else 1) <= value <= 65535)


def _host_ip(text: object) -> str:
    """"" for all addresses (0.0.0.0 is the same), else a canonical IPv4 address."""
    if text in ("", None):
        return ""
    addr = parse_ipv4(text)
    if addr is None:
        if isinstance(text, str) and ":" in text:
            raise InvalidArgument(f"invalid IP address: {text}: IPv6 port publishing is "
                                  "not supported")
        raise InvalidArgument(f"invalid IP address: {text}")
    return format_ipv4(addr) if addr else ""


def _port_range(text: str) -> tuple[int, int] | None:
    # go-connections nat.ParsePortRange: "80" or "8000-8010", each a 16-bit number.
    start, dash, end = text.partition("-")
    if not dash:
        end = start
    for part in (start, end):
        if not (part.isascii() and part.isdigit()) or int(part) > 65535:
            return None
    if int(start) > int(end):
        return None
    return int(start), int(end)


def parse_publish(spec: str) -> list[PortRequest]:
    """docker's `-p [ip:][hostPort:]containerPort[/proto]` (go-connections'
    nat.ParsePortSpec) as (proto, host_ip, host_port, container_port) tuples; host_port 0
    means a random port. Ranges expand to one tuple per port: "8080-8081:80-81" is two,
    "127.0.0.1::80-81" two random ones. A host range for one container port ("8080-8090:80",
    pick one of those) is refused, as are IPv6 host addresses."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgument(f"invalid publish opts format: no port specified: {spec!r}")
    if spec.startswith("["):
        raise InvalidArgument(f"invalid publish opts format: {spec}: IPv6 host addresses "
                              "are not supported")
    parts = spec.split(":")
    container_part = parts[-1]
    host_port_text = parts[-2] if len(parts) >= 2 else ""
    ip_text = ":".join(parts[:-2])
    ports_text, slash, proto = container_part.partition("/")
    proto = (proto if slash and proto else "tcp").lower()
    if not ports_text:
        raise InvalidArgument(f"invalid publish opts format: no port specified: {spec}<empty>")
    host_ip = _host_ip(ip_text)
    container_range = _port_range(ports_text)
    if container_range is None or container_range[0] == 0:
        raise InvalidArgument(f"invalid containerPort: {ports_text}")
    host_range = None
    if host_port_text:
        host_range = _port_range(host_port_text)
        if host_range is None:
            raise InvalidArgument(f"invalid hostPort: {host_port_text}")
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    count = container_range[1] - container_range[0]
    if host_range is not None and host_range[1] - host_range[0] != count:
        if count:
            raise InvalidArgument("invalid ranges specified for container and host Ports: "
                                  f"{ports_text} and {host_port_text}")
        raise InvalidArgument(f"invalid publish opts format: {spec}: a host port range for "
                              "one container port is not supported",
                              hint="give one host port, or none for a random one")
    return [
        (proto, host_ip, host_range[0] + i if host_range and host_range[0] else 0,
         container_range[0] + i)
        for i in range(count + 1)
    ]
