"""hutch save [-o FILE] [--format docker-archive|oci-archive] IMAGE..."""

from __future__ import annotations

import sys

HELP = "Save one or more images to a tar archive (streamed to STDOUT by default)"


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--output", help="write to a file instead of STDOUT")
    parser.add_argument("--format", choices=("docker-archive", "oci-archive"),
                        default="docker-archive",
                        help="docker-archive (docker save's layout, the default) or "
                             "oci-archive (a tar of an OCI image layout)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.errors import InvalidArgument
    from hutch.image.save import save

    if args.output is None and sys.stdout.isatty():
        # docker's words: a tar on a terminal helps nobody.
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag "
                              "or redirect")
    with service(settings) as svc:
        if args.output is not None:
            save(svc, args.images, args.output, format=args.format)
        else:
            sys.stdout.flush()
            save(svc, args.images, sys.stdout.buffer, format=args.format)
    return 0
