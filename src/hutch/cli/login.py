"""hutch login [-u USER] [-p PASSWORD | --password-stdin] SERVER"""

from __future__ import annotations

import sys

HELP = "Log in to a registry"


def add_arguments(parser) -> None:
    parser.add_argument("-u", "--username")
    parser.add_argument("-p", "--password")
    parser.add_argument("--password-stdin", action="store_true")
    parser.add_argument("server")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.errors import InvalidArgument
    from hutch.registry.credentials import login

    password = args.password
    if args.password_stdin:
        if args.password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\n")
    user = args.username
    if user is None or password is None:
        if not sys.stdin.isatty():
            raise InvalidArgument("login needs -u and a password (-p or --password-stdin)")
        import getpass

        user = user or input("Username: ")
        password = password if password is not None else getpass.getpass("Password: ")
    if args.password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    with service(settings) as svc:
        store = svc.credentials()
        login(args.server, user, password, store=store,
              insecure=args.server in _insecure())
    print("Login Succeeded")
    return 0


def _insecure() -> set[str]:
    from hutch.image.service import _insecure_registries

    return _insecure_registries()
