"""hutch volume create [--label k=v]... [NAME]: prints the volume's name (docker's)."""

from __future__ import annotations

HELP = "Create a volume"


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="volume name (default: a random one)")
    parser.add_argument("--name", dest="name_opt", metavar="NAME", help="volume name")
    parser.add_argument("-d", "--driver", default="local", help="only 'local'")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-o", "--opt", action="append", default=[],
                        help="driver options (not supported)")


def run(args, settings) -> int:
    from hutch.engine.volumes import open_store
    from hutch.errors import InvalidArgument, NotSupported

    if args.name and args.name_opt and args.name != args.name_opt:
        raise InvalidArgument("conflicting options: either specify --name or provide "
                              "positional arg, not both")
    if args.driver != "local":
        raise NotSupported(f"volume driver {args.driver!r} is not supported: "
                           "hutch has only the local driver")
    if args.opt:
        raise NotSupported("volume driver options (-o) are not supported by hutch")
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")  # docker: "key" alone means an empty value
        if not key:
            raise InvalidArgument(f"invalid label: {item!r}")
        labels[key] = value
    vol = open_store(settings).create(args.name or args.name_opt, labels=labels)
    print(vol.name)
    return 0
