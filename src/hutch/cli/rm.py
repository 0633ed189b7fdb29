"""hutch rm [-f] [-v] CONTAINER..."""

from __future__ import annotations

HELP = "Remove one or more containers"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true",
                        help="force the removal of a running container (uses SIGKILL)")
    parser.add_argument("-v", "--volumes", action="store_true",
                        help="remove anonymous volumes associated with the container")
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each

    return each(args.containers,
                lambda eng, rec: eng.remove(rec, force=args.force, volumes=args.volumes)
                and None, settings)
