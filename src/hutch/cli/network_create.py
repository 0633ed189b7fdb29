"""hutch network create [--driver bridge] [--subnet CIDR] [--gateway IP] [--internal]
[--label k=v] [-o com.docker.network.bridge.name=NAME] [-o ...mtu=N] NETWORK"""

from __future__ import annotations

HELP = "Create a network"


def add_arguments(parser) -> None:
    parser.add_argument("-d", "--driver", default="bridge", help="driver (bridge only)")
    parser.add_argument("--subnet", action="append", default=[], help="subnet in CIDR format")
    parser.add_argument("--gateway", action="append", default=[],
                        help="IPv4 gateway for the subnet")
    parser.add_argument("--internal", action="store_true",
                        help="restrict external access to the network")
    parser.add_argument("--label", action="append", default=[], help="set metadata")
    parser.add_argument("-o", "--opt", action="append", default=[],
                        help="driver options (com.docker.network.bridge.name, "
                             "com.docker.network.driver.mtu)")
    parser.add_argument("--ipv6", action="store_true", help="IPv6 (not supported)")
    parser.add_argument("name")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    from hutch.errors import InvalidArgument

    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {v!r}")
        out[key] = value
    return out


def run(args, settings) -> int:
    from hutch.engine.networking import Networking
    from hutch.errors import InvalidArgument, NotSupported

    if args.driver != "bridge":
        raise NotSupported(f"network driver {args.driver!r} is not supported: bridge")
    if args.ipv6:
        raise NotSupported("IPv6 networks are not supported")
    if len(args.subnet) > 1 or len(args.gateway) > 1:
        raise NotSupported("one --subnet and one --gateway per network")
    if args.gateway and not args.subnet:
        raise InvalidArgument("--gateway needs a --subnet")
    opts = _pairs(args.opt, "option")
    mtu = 1500
    if "com.docker.network.driver.mtu" in opts:
        try:
            mtu = int(opts.pop("com.docker.network.driver.mtu"))
        except ValueError:
            raise InvalidArgument("invalid com.docker.network.driver.mtu") from None
        if not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid MTU {mtu}: 68 to 65535")
    bridge = opts.pop("com.docker.network.bridge.name", None)
    if opts:
        raise InvalidArgument(f"unknown network option(s): {', '.join(sorted(opts))}")
    net = Networking(settings)
    try:
        nw = net.create_network(args.name, subnet=args.subnet[0] if args.subnet else None,
                                gateway=args.gateway[0] if args.gateway else None,
                                bridge=bridge, internal=args.internal,
                                labels=_pairs(args.label, "label"), mtu=mtu)
    finally:
        net.close()
    print(nw.id)
    return 0
