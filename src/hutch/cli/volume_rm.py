"""hutch volume rm [-f] NAME...: removes volumes no container uses (stopped ones count,
as in docker); -f only ignores names that do not exist. Prints each removed name."""

from __future__ import annotations

HELP = "Remove one or more volumes"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true",
                        help="no error for volumes that do not exist")
    parser.add_argument("volumes", nargs="+")


def run(args, settings) -> int:
    import sys

    from hutch.engine.volumes import containers_in_use, open_store
    from hutch.errors import HutchError

    store = open_store(settings)
    code = 0
    with store.lock():  # no container may start using a volume between check and delete
        users = containers_in_use(settings)
        for name in args.volumes:
            try:
                store.remove(name, in_use=users, force=args.force)
            except HutchError as e:
                sys.stderr.write(f"Error: {e}\n")
                code = 1
                continue
            print(name)
    return code
