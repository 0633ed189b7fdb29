"""hutch create [OPTIONS] IMAGE [COMMAND] [ARG...]"""

from __future__ import annotations

HELP = "Create a new container"


def add_arguments(parser) -> None:
    from hutch.cli._run_options import add_create_arguments

    parser.add_argument("--rm", action="store_true",
                        help="remove the container when it exits")
    add_create_arguments(parser)


def run(args, settings) -> int:
    from hutch.cli._container import engine_errors
    from hutch.cli._run_options import create_options, pull_progress
    from hutch.engine.containers import Engine

    with engine_errors():
        opts = create_options(args)
        with Engine(settings) as eng:
            progress = pull_progress()
            try:
                rec = eng.create(opts, progress=progress)
            finally:
                progress.close()
            print(rec.id)
    return 0
