"""hutch kill [-s SIGNAL] CONTAINER..."""

from __future__ import annotations

HELP = "Kill one or more running containers"


def add_arguments(parser) -> None:
    parser.add_argument("-s", "--signal", default="KILL", help="signal to send")
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each
    from hutch.engine.containers import parse_signal

    sig = parse_signal(args.signal)
    return each(args.containers, lambda eng, rec: eng.kill(rec, sig), settings)
