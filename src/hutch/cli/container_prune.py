"""hutch container prune [-f]"""

from __future__ import annotations

import sys

HELP = "Remove all stopped containers"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt")


def run(args, settings) -> int:
    from hutch.cli._common import confirm_prune
    from hutch.engine.containers import Engine

    if not confirm_prune(args.force, "all stopped containers"):
        return 0 if sys.stdin.isatty() else 1
    with Engine(settings) as eng:
        gone = eng.prune()
    if gone:
        print("Deleted Containers:")
        for rec in gone:
            print(rec.id)
        print()
    print("Total reclaimed space: 0B")
    return 0
