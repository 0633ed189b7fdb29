"""hutch network ls [-q] [--no-trunc] [-f key=value] [--format table|json|TEMPLATE]

Filters: name=, id=, label=key[=value], driver=, type=custom|builtin."""

from __future__ import annotations

HELP = "List networks"
DEFAULT_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
           "CreatedAt": "CREATED AT", "Subnet": "SUBNET"}


def add_arguments(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only network IDs")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--format", default="", help="table, json or a {{.Field}} template")


def row(net, trunc: bool) -> dict:
    return {"ID": net.id[:12] if trunc else net.id, "Name": net.name, "Driver": net.driver,
            "Scope": "local", "IPv6": "false", "Internal": str(net.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(net.labels.items())),
            "CreatedAt": net.created, "Subnet": net.subnet}


def run(args, settings) -> int:
    from hutch.cli._common import print_rows
    from hutch.engine.networking import Networking
    from hutch.engine.store import parse_filters

    net = Networking(settings)
    try:
        net.default_network()
        nets = net.store.list(parse_filters(args.filter))
    finally:
        net.close()
    nets.sort(key=lambda n: n.name)
    if args.quiet:
        for n in nets:
            print(n.id if args.no_trunc else n.id[:12])
        return 0
    print_rows(args.format, [row(n, not args.no_trunc) for n in nets], DEFAULT_TABLE, HEADERS)
    return 0
