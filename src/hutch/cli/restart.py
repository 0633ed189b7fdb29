"""hutch restart [-t SECONDS] CONTAINER..."""

from __future__ import annotations

HELP = "Restart one or more containers"


def add_arguments(parser) -> None:
    parser.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None)
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each

    return each(args.containers, lambda eng, rec: eng.restart(rec, args.time) and None,
                settings)
