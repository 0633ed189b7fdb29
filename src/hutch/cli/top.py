"""hutch top CONTAINER [ps OPTIONS]: the host's ps, rows of the container's processes."""

from __future__ import annotations

import argparse

HELP = "Display the running processes of a container"


def add_arguments(parser) -> None:
    parser.add_argument("container")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER)


def run(args, settings) -> int:
    from hutch.engine.containers import Engine
    from hutch.runtime.ps import host_ps_lines

    with Engine(settings) as eng:
        pids = set(eng.top(eng.get(args.container)))
    for line in host_ps_lines(pids, args.ps_args):
        print(line)
    return 0
