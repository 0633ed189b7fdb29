"""hutch network inspect [-f TEMPLATE] NETWORK..."""

from __future__ import annotations

HELP = "Display detailed information on one or more networks"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--format", default="", help="a Go-like template")
    parser.add_argument("networks", nargs="+")


def run(args, settings) -> int:
    from hutch.engine.networking import Networking, network_info

    net = Networking(settings)
    out = []
    try:
        for ref in args.networks:
            nw = net.get(ref)
            out.append(network_info(nw, net.store.leases(network_id=nw.id)))
    finally:
        net.close()
    if args.format:
        from hutch.cli.inspect import render

        for item in out:
            print(render(args.format, item))
        return 0
    import json

    print(json.dumps(out, indent=4))
    return 0
