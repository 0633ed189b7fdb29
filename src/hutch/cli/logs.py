"""hutch logs [-f] [--since X] [--until X] [-n N|all] [-t] CONTAINER"""

from __future__ import annotations

HELP = "Fetch the logs of a container"


def _tail(value: str) -> int | None:
    """docker's --tail: a number of lines or "all"; a negative number also means all."""
    import argparse

    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: a number or \"all\"") from None
    return None if n < 0 else n


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    parser.add_argument("--since", help="Show logs since a timestamp (e.g. 2026-11-23T10:00:00Z)"
                        " or relative (e.g. 42m for 42 minutes)")
    parser.add_argument("--until", help="Show logs before a timestamp or relative time")
    parser.add_argument("-n", "--tail", type=_tail, default=None, metavar="N",
                        help='Number of lines to show from the end of the logs (default "all")')
    parser.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    parser.add_argument("--details", action="store_true",
                        help="Show extra details (accepted for docker compatibility; no effect)")
    parser.add_argument("container")


def run(args, settings) -> int:
    import sys
    import time

    from hutch.engine.containers import Engine
    from hutch.engine.logs import format_entry, parse_time, read_logs

    now = time.time_ns()
    since = parse_time(args.since, now) if args.since else None
    until = parse_time(args.until, now) if args.until else None
    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    sys.stdout.flush()
    last = None
    try:
        with Engine(settings) as eng:
            rec = eng.get(args.container)
            entries = read_logs(rec.log_path, since_ns=since, until_ns=until, tail=args.tail,
                                follow=args.follow, stop=lambda: not eng.running(rec))
            try:
                for entry in entries:
                    stream = out.get(entry.stream, out["stdout"])
                    if last is not None and stream is not last:
                        last.flush()  # keep stdout and stderr lines in the order written
                    stream.write(format_entry(entry, args.timestamps))
                    if args.follow:
                        stream.flush()  # someone is watching: show each line as it comes
                    last = stream
            finally:
                entries.close()
            if last is not None:
                last.flush()
    except KeyboardInterrupt:  # Ctrl-C ends `logs -f`: the way out, not an error
        return 0
    except BrokenPipeError:  # `hutch logs c | head`: the reader has what it wanted
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        os.close(devnull)
        return 0
    return 0
