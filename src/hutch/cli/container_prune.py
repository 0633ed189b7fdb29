"""hutch container prune [-f]"""

from __future__ import annotations

import sys

HELP = "Remove all stopped containers"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt")


def run(args, settings) -> int:
    from hutch.engine.containers import Engine

    if not args.force:
        if not sys.stdin.isatty():
            sys.stderr.write("Error: refusing to prune without --force on a non-terminal\n")
            return 1
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    with Engine(settings) as eng:
        gone = eng.prune()
    if gone:
        print("Deleted Containers:")
        for rec in gone:
            print(rec.id)
        print()
    print("Total reclaimed space: 0B")
    return 0
