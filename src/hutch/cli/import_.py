"""hutch import [-c CHANGE]... [-m MESSAGE] FILE|DIR|- [REPOSITORY[:TAG]]"""

from __future__ import annotations

HELP = "Import the contents of a rootfs tarball or directory to create an image"


def add_arguments(parser) -> None:
    parser.add_argument("-c", "--change", action="append", default=[],
                        help="apply a Dockerfile instruction to the image config "
                             "(CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, "
                             "VOLUME, WORKDIR)")
    parser.add_argument("-m", "--message", default="",
                        help="the history comment of the imported layer")
    parser.add_argument("source", metavar="FILE|DIR|-")
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")


def run(args, settings) -> int:
    import sys

    from hutch.cli._common import service
    from hutch.errors import InvalidArgument
    from hutch.image.importer import import_

    if args.source == "-" and sys.stdin.isatty():
        raise InvalidArgument("import from STDIN, but STDIN is a terminal",
                              hint="pipe a tarball in, or give a FILE or DIR")
    with service(settings) as svc:
        image = import_(svc, args.source, args.repository, changes=args.change,
                        message=args.message)
    print(image.id)
    return 0
