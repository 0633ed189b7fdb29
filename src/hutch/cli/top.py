"""hutch top CONTAINER [ps OPTIONS]: the host's ps, rows of the container's processes."""

from __future__ import annotations

import argparse

HELP = "Display the running processes of a container"


def add_arguments(parser) -> None:
    parser.add_argument("container")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER)


def run(args, settings) -> int:
    import subprocess

    from hutch.engine.containers import Engine
    from hutch.errors import FailedPrecondition

    with Engine(settings) as eng:
        pids = set(eng.top(eng.get(args.container)))
    ps_args = args.ps_args or ["-ef"]
    p = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
    if p.returncode != 0:
        raise FailedPrecondition(f"ps {' '.join(ps_args)}: {p.stderr.strip()}")
    lines = p.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise FailedPrecondition("couldn't find PID field in ps output")
    col = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        try:
            if int(fields[col]) in pids:
                print(line)
        except (ValueError, IndexError):
            continue
    return 0
