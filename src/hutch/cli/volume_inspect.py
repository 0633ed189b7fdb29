"""hutch volume inspect [--format TEMPLATE] NAME...: a JSON array; a missing name is an
error on stderr after the others are printed, exit 1 (docker's)."""

from __future__ import annotations

HELP = "Display detailed information on one or more volumes"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--format", default="", help="a {{.Field}} template")
    parser.add_argument("volumes", nargs="+")


def run(args, settings) -> int:
    import json
    import sys

    from hutch.engine.volumes import open_store
    from hutch.errors import NotFound

    store = open_store(settings)
    found, errors = [], []
    for name in args.volumes:
        try:
            found.append(store.get(name).to_docker())
        except NotFound as e:
            errors.append(str(e))
    if args.format:
        from hutch.cli.volume_ls import render

        for info in found:
            print(render(args.format, info))
    else:
        print(json.dumps(found, indent=4))
    for msg in errors:
        sys.stderr.write(f"Error: {msg}\n")
    return 1 if errors else 0
