"""hutch load [-i FILE] [-q]"""

from __future__ import annotations

import sys

HELP = "Load images from a tar archive (docker-archive or oci-archive) or STDIN"


def add_arguments(parser) -> None:
    parser.add_argument("-i", "--input", help="read from a tar archive file (or an OCI "
                                              "layout directory) instead of STDIN")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="suppress the load output (like docker: names are printed)")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.errors import InvalidArgument
    from hutch.image.archive_io import load

    if args.input is None and sys.stdin.isatty():
        raise InvalidArgument("requested load from stdin, but stdin is empty",
                              hint="use -i FILE or pipe an archive in")
    source = args.input if args.input is not None else sys.stdin.buffer
    with service(settings) as svc:
        loaded = load(svc, source)
    from hutch.oci.reference import Reference

    for image in loaded:
        if image.tagged:
            print(f"Loaded image: {Reference.parse(image.name).familiar()}")
        else:
            print(f"Loaded image ID: {image.id}")
    return 0
