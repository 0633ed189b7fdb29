"""hutch exec [-d] [-i] [-t] [-e K=V]... [-u USER] [-w DIR] [--privileged] CONTAINER CMD..."""

from __future__ import annotations

import argparse

HELP = "Execute a command in a running container"


def add_arguments(parser) -> None:
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-e", "--env", action="append", default=[], help="set variables")
    parser.add_argument("--env-file", action="append", default=[])
    parser.add_argument("-u", "--user", default="", help="username or UID[:GID]")
    parser.add_argument("-w", "--workdir", default="", help="working directory")
    parser.add_argument("--privileged", action="store_true",
                        help="give extended privileges to the command")
    parser.add_argument("--detach-keys", default=None, help="(accepted)")
    parser.add_argument("container")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def run(args, settings) -> int:
    from hutch.cli._run_options import _env, _read_env_file
    from hutch.engine.containers import Engine

    env = []
    for path in args.env_file:
        env += _read_env_file(path)
    env += _env(args.env)
    # docker exec: errors about the container are 1; the command's own 126/127 come
    # with the error (ExecError.exit_code).
    with Engine(settings) as eng:
        rec = eng.get(args.container)
        return eng.exec(rec, list(args.command), tty=args.tty, interactive=args.interactive,
                        detach=args.detach, env=env, user=args.user, workdir=args.workdir,
                        privileged=args.privileged)
