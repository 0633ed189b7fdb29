"""hutch logout SERVER"""

from __future__ import annotations

HELP = "Log out from a registry"


def add_arguments(parser) -> None:
    parser.add_argument("server")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.registry.credentials import logout

    with service(settings) as svc:
        removed = logout(args.server, store=svc.credentials())
    print(f"Removing login credentials for {args.server}" if removed
          else f"Not logged in to {args.server}")
    return 0
