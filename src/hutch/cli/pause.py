"""hutch pause CONTAINER..."""

from __future__ import annotations

HELP = "Pause all processes within one or more containers"


def add_arguments(parser) -> None:
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each

    return each(args.containers, lambda eng, rec: eng.pause(rec) and None, settings)
