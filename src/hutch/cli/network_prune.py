"""hutch network prune [-f]: remove the user-defined networks no container uses, and
whatever crashed containers left (namespaces, veths, leases, port rules)."""

from __future__ import annotations

HELP = "Remove all unused networks"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt")
    parser.add_argument("--filter", action="append", default=[], help="(not supported)")


def run(args, settings) -> int:
    import sys

    from hutch.cli._common import confirm_prune
    from hutch.engine.networking import Networking

    if not confirm_prune(args.force, "all custom networks not used by at least one container"):
        return 0 if sys.stdin.isatty() else 1
    net = Networking(settings)
    try:
        gone = net.prune()
    finally:
        net.close()
    if gone:
        print("Deleted Networks:")
        for nw in gone:
            print(nw.name)
    return 0
