"""hutch inspect [-f FORMAT] [--type container|image] NAME...: containers, else images."""

from __future__ import annotations

import sys

HELP = "Return low-level information on containers or images"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--format", default=None,
                        help="a Go-template subset: {{.Path.To.Field}} or {{json .Field}}")
    parser.add_argument("--type", choices=("container", "image"), default=None)
    parser.add_argument("-s", "--size", action="store_true", help="(accepted)")
    parser.add_argument("names", nargs="+")


def render(fmt: str, obj) -> str:
    """The common `docker inspect -f` forms: text with {{.A.B}} and {{json .A}} fields."""
    import json
    import re

    from hutch.errors import InvalidArgument

    def value(path: str):
        cur = obj
        for part in [p for p in path.split(".") if p]:
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                raise InvalidArgument(f"template: no field {part!r} in {path!r}")
        return cur

    def sub(m):
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(value(expr[5:].strip()))
        if not expr.startswith("."):
            raise InvalidArgument(f"unsupported template expression {{{{{expr}}}}}")
        v = value(expr)
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "<no value>"
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        return str(v)

    return re.sub(r"\{\{(.*?)\}\}", sub, fmt)


def run(args, settings) -> int:
    import json

    from hutch.engine.containers import Engine, container_info
    from hutch.errors import HutchError, NotFound

    out, failed = [], 0
    with Engine(settings) as eng:
        for name in args.names:
            info = None
            if args.type in (None, "container"):
                try:
                    info = container_info(eng.get(name))
                except NotFound:
                    info = None
            if info is None and args.type in (None, "image"):
                try:
                    from hutch.cli.image_inspect import image_info

                    info = image_info(eng.images, name)
                except (HutchError, ImportError):
                    info = None
            if info is None:
                sys.stderr.write(f"Error: No such object: {name}\n")
                failed += 1
                continue
            out.append(info)
    if args.format:
        for info in out:
            print(render(args.format, info))
    else:
        print(json.dumps(out, indent=4))
    return 1 if failed else 0
