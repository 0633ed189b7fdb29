"""hutch rename CONTAINER NEW_NAME"""

from __future__ import annotations

HELP = "Rename a container"


def add_arguments(parser) -> None:
    parser.add_argument("container")
    parser.add_argument("new_name")


def run(args, settings) -> int:
    from hutch.engine.containers import Engine

    with Engine(settings) as eng:
        eng.rename(eng.get(args.container), args.new_name)
    return 0
