"""hutch stop [-t SECONDS] [-s SIGNAL] CONTAINER..."""

from __future__ import annotations

HELP = "Stop one or more running containers"


def add_arguments(parser) -> None:
    parser.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None,
                        help="seconds to wait before killing the container")
    parser.add_argument("-s", "--signal", default=None, help="signal to send")
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each

    return each(args.containers,
                lambda eng, rec: eng.stop(rec, args.time, args.signal) and None, settings)
