"""hutch network disconnect [-f] NETWORK CONTAINER"""

from __future__ import annotations

HELP = "Disconnect a container from a network"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true",
                        help="force the container to disconnect from a network")
    parser.add_argument("network")
    parser.add_argument("container")


def run(args, settings) -> int:
    from hutch.engine.containers import Engine
    from hutch.engine.networking import disconnect_container

    with Engine(settings) as eng:
        disconnect_container(eng, args.container, args.network, force=args.force)
    return 0
