"""hutch network connect [--alias A] [--ip IP] NETWORK CONTAINER"""

from __future__ import annotations

HELP = "Connect a container to a network"


def add_arguments(parser) -> None:
    parser.add_argument("--alias", action="append", default=[],
                        help="add network-scoped alias for the container")
    parser.add_argument("--ip", default="", help="IPv4 address")
    parser.add_argument("network")
    parser.add_argument("container")


def run(args, settings) -> int:
    from hutch.engine.containers import Engine
    from hutch.engine.networking import connect_container

    with Engine(settings) as eng:
        connect_container(eng, args.container, args.network, aliases=args.alias, ip=args.ip)
    return 0
