"""hutch push NAME[:TAG]"""

from __future__ import annotations

import sys

HELP = "Push an image to a registry"


def add_arguments(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("name")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.image.push import push

    say = None if args.quiet else (lambda line: sys.stderr.write(line + "\n"))
    with service(settings) as svc:
        digest, size = push(svc, args.name, progress=say)
        tag = svc.lookup(args.name).name.rsplit(":", 1)[-1]
    print(f"{tag}: digest: {digest} size: {size}")
    return 0
