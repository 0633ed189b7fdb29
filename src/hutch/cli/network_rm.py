"""hutch network rm NETWORK..."""

from __future__ import annotations

HELP = "Remove one or more networks"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true",
                        help="do not error if the network does not exist")
    parser.add_argument("networks", nargs="+")


def run(args, settings) -> int:
    import sys

    from hutch.engine.networking import Networking
    from hutch.errors import HutchError, NotFound

    net = Networking(settings)
    failed = 0
    try:
        for ref in args.networks:
            try:
                net.remove_network(ref)
                print(ref)
            except NotFound as e:
                if not args.force:
                    print(f"Error: {e}", file=sys.stderr)
                    failed = 1
            except HutchError as e:
                print(f"Error: {e}", file=sys.stderr)
                failed = 1
    finally:
        net.close()
    return failed
