"""hutch commit [-a AUTHOR] [-c CHANGE]... [-m MESSAGE] [-p|--pause=BOOL] CONTAINER
[REPOSITORY[:TAG]]"""

from __future__ import annotations

HELP = "Create a new image from a container's changes"

_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--author", default="",
                        help='author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    parser.add_argument("-c", "--change", action="append", default=[],
                        help="apply a Dockerfile instruction to the image config "
                             "(CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, "
                             "VOLUME, WORKDIR)")
    parser.add_argument("-m", "--message", default="", help="commit message")
    # Go's bool flag: -p, --pause, --pause=false. A word after a bare -p is not its
    # value but the container (see _operands).
    parser.add_argument("-p", "--pause", nargs="?", const="true", default="true",
                        metavar="BOOL", help="pause the container during commit "
                                             "(default true)")
    parser.add_argument("container", nargs="?", metavar="CONTAINER")
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")


def _operands(args) -> tuple[bool, str, str | None]:
    from hutch.errors import InvalidArgument

    operands = [a for a in (args.container, args.repository) if a is not None]
    if args.pause in _TRUE:
        pause = True
    elif args.pause in _FALSE:
        pause = False
    else:
        pause = True
        operands.insert(0, args.pause)
    if not operands or len(operands) > 2:
        e = InvalidArgument('"hutch commit" requires at least 1 and at most 2 arguments',
                            hint="hutch commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
        e.exit_code = 125
        raise e
    return pause, operands[0], operands[1] if len(operands) > 1 else None


def run(args, settings) -> int:
    import sys

    from hutch.engine.commit import commit
    from hutch.engine.containers import Engine
    from hutch.errors import HutchError

    pause, container, repository = _operands(args)
    with Engine(settings) as eng:
        rec = eng.get(container)
        paused = False
        if pause and rec.state == "running":
            rec = eng.pause(rec)
            paused = True
        ok = False
        try:
            image_id = commit(eng.images, rec, eng.snapshot_mounts(rec),
                              reference=repository, changes=args.change,
                              message=args.message, author=args.author)
            ok = True
        finally:
            if paused:
                try:
                    eng.unpause(rec)
                except HutchError as e:
                    if ok:
                        raise
                    sys.stderr.write(f"Error: unpausing {container}: {e}\n")
    print(image_id)
    return 0
