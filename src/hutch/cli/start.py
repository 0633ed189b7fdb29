"""hutch start [-a] [-i] CONTAINER..."""

from __future__ import annotations

import sys

HELP = "Start one or more stopped containers"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--attach", action="store_true",
                        help="attach STDOUT/STDERR and forward signals")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="attach the container's STDIN")
    parser.add_argument("--detach-keys", default=None)
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import attach_and_wait, engine_errors, start_or_cleanup
    from hutch.engine.containers import Engine
    from hutch.errors import HutchError

    if args.attach or args.interactive:
        if len(args.containers) > 1:
            sys.stderr.write("Error: you cannot start and attach multiple containers at once\n")
            return 1
        with engine_errors(), Engine(settings) as eng:
            rec = eng.get(args.containers[0])
            return attach_and_wait(eng, rec, args, start=True)
    failed = 0
    with Engine(settings) as eng:
        for ref in args.containers:
            try:
                rec = eng.get(ref)
                start_or_cleanup(eng, rec, bool(rec.config.get("auto_remove")))
            except HutchError as e:
                sys.stderr.write(f"Error: {e}\n")
                failed += 1
                continue
            print(ref)
    return 1 if failed else 0
