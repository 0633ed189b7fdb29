"""hutch tag SOURCE TARGET"""

from __future__ import annotations

HELP = "Create a tag TARGET that refers to SOURCE"


def add_arguments(parser) -> None:
    parser.add_argument("source")
    parser.add_argument("target")


def run(args, settings) -> int:
    from hutch.cli._common import service

    with service(settings) as svc:
        svc.tag(args.source, args.target)
    return 0
