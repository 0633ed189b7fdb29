"""hutch volume prune [-a] [-f] [--filter label=...]: removes the anonymous volumes no
container uses (-a: every unused volume), as docker 23+. Without -f it asks, reading the
answer from stdin like docker; no answer (end of input) means no."""

from __future__ import annotations

import sys

HELP = "Remove unused local volumes"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--all", action="store_true",
                        help="remove all unused volumes, not just anonymous ones")
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="label=key[=value] or label!=key[=value]")


def confirm(all_volumes: bool) -> bool:
    what = "all local volumes" if all_volumes else "anonymous local volumes"
    sys.stdout.write(f"WARNING! This will remove {what} not used by at least one container.\n"
                     "Are you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline() if sys.stdin else ""
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        sys.stdout.write("\n")
    return answer.strip().lower() in ("y", "yes")


def run(args, settings) -> int:
    from hutch.cli._common import human_size
    from hutch.engine.store import parse_filters
    from hutch.engine.volumes import containers_in_use, open_store
    from hutch.errors import InvalidArgument

    filters = parse_filters(args.filter)
    bad = set(filters) - {"label", "label!"}
    if bad:
        raise InvalidArgument(f"invalid filter '{sorted(bad)[0]}'")
    if not args.force and not confirm(args.all):
        print("Total reclaimed space: 0B")
        return 0
    store = open_store(settings)
    with store.lock():  # no container may start using a volume between check and delete
        names, freed = store.prune(containers_in_use(settings), all=args.all, filters=filters)
    if names:
        print("Deleted Volumes:")
        for name in names:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0
