"""hutch network prune [-f]: remove the user-defined networks no container uses, and
whatever crashed containers left (namespaces, veths, leases, port rules)."""

from __future__ import annotations

HELP = "Remove all unused networks"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt")
    parser.add_argument("--filter", action="append", default=[], help="(not supported)")


def run(args, settings) -> int:
    import sys

    from hutch.engine.networking import Networking

    if not args.force:
        if not sys.stdin.isatty():
            sys.stderr.write("Error: refusing to prune without --force on a non-terminal\n")
            return 1
        sys.stdout.write("WARNING! This will remove all custom networks not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0

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
