"""A container's /etc/hosts and /etc/resolv.conf, as docker writes them (pure functions).

resolv.conf (moby libnetwork/resolvconf): the host's file; `--dns` replaces its
nameservers, `--dns-search` its search domains, `--dns-option` its options; outside the
host's network namespace, loopback nameservers are dropped (a 127.0.0.53 stub resolver
on the host is unreachable from a container). docker then falls back to Google's public
servers when none is left; hutch does not invent resolvers: the file keeps no nameserver
and the user passes --dns.

hosts: localhost lines, the container's own addresses with its hostname, `--add-host`
entries, and on user-defined networks one line per other container on a shared network
(its address, name, aliases and short id): that is how containers find each other by
name in hutch (see hutch.engine.networking for why a file and not a DNS server).
"""

from __future__ import annotations

from hutch.errors import InvalidArgument

LOCALHOST = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
             "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
             "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1 (string checks: ipaddress costs ~1 ms to import, on every run)."""
    address = address.split("%")[0]
    if address.startswith("127."):
        return True
    if ":" in address:
        import ipaddress

        try:
            return ipaddress.ip_address(address).is_loopback
        except ValueError:
            return False
    return False


def resolv_conf(host_text: str, *, dns: list[str] = (), dns_search: list[str] = (),
                dns_options: list[str] = (), host_network: bool = False) -> str:
    nameservers, search, options, other = [], [], [], []
    for line in host_text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
        else:
            other.append(line)
    if dns:
        import ipaddress

        for server in dns:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise InvalidArgument(f"{server} is not an ip address") from None
        nameservers = list(dns)
    elif not host_network:
        nameservers = [n for n in nameservers if not _is_loopback(n)]
    if dns_search:
        search = [] if list(dns_search) == ["."] else list(dns_search)
    if dns_options:
        options = list(dns_options)
    out = [f"nameserver {n}" for n in nameservers]
    if search:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out + other) + "\n" if out or other else ""


def parse_add_host(value: str, *, gateway: str = "") -> tuple[str, str]:
    """docker's --add-host host:ip (or host=ip); "host-gateway" is the network's gateway
    (docker uses the default bridge's address)."""
    if "=" in value:
        host, _, ip = value.partition("=")
    else:
        host, _, ip = value.partition(":")
    host, ip = host.strip(), ip.strip()
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip == "host-gateway":
        if not gateway:
            raise InvalidArgument(f"invalid argument {value!r} for --add-host: host-gateway "
                                  "needs a bridge network")
        ip = gateway
    if not host or not ip:
        raise InvalidArgument(f"bad format for add-host: {value!r}")
    import ipaddress

    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
    return host, ip


def hosts(hostname: str, *, own: list[str] = (), extra: list[tuple[str, str]] = (),
          peers: list[tuple[str, list[str]]] = (), host_network: bool = False) -> str:
    """`own`: the container's addresses; `peers`: (address, names) of containers it can
    reach by name."""
    text = LOCALHOST
    short = hostname.split(".")[0]
    names = hostname if short == hostname else f"{hostname}\t{short}"
    if own:
        text += "".join(f"{ip}\t{names}\n" for ip in own)
    elif not host_network:
        text += f"127.0.1.1\t{names}\n"
    text += "".join(f"{ip}\t{host}\n" for host, ip in extra)
    text += "".join(f"{ip}\t{' '.join(n)}\n" for ip, n in peers)
    return text
