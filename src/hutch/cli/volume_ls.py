"""hutch volume ls [-q] [--filter k=v]... [--format table|json|TEMPLATE]

Filters: dangling=true|false, name=, label=key[=value], driver=. `--format json` prints one
object per line (docker 23+); a template may use {{.Field}} and {{json .Field}} as docker's
Go templates do ("table " prefix: a header row), which covers what scripts use.
"""

from __future__ import annotations

import json
import re

HELP = "List volumes"

# field -> table header (docker's cli/command/formatter/volume.go)
HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
           "CreatedAt": "CREATED", "Availability": "AVAILABILITY", "Group": "GROUP",
           "Status": "STATUS"}
DEFAULT_TABLE = "table {{.Driver}}\t{{.Name}}"
_FIELD = re.compile(r"\{\{\s*(json\s+)?\.(\w*)\s*\}\}")


def add_arguments(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only volume names")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--format", default="", help="table, json or a {{.Field}} template")


def row(vol) -> dict:
    """One volume as `docker volume ls --format json` prints it."""
    return {"Availability": "N/A", "CreatedAt": vol.created, "Driver": vol.driver,
            "Group": "N/A",
            "Labels": ",".join(f"{k}={v}" for k, v in vol.to_docker()["Labels"].items()),
            "Links": "N/A", "Mountpoint": vol.mountpoint, "Name": vol.name,
            "Scope": "local", "Size": "N/A", "Status": "N/A"}


def render(template: str, obj: dict) -> str:
    """The {{.Field}} / {{json .Field}} / {{json .}} subset of docker's templates."""
    from hutch.errors import InvalidArgument

    def field(m: re.Match) -> str:
        name = m.group(2)
        if name and name not in obj:
            raise InvalidArgument(f"template: can't evaluate field {name}")
        value = obj[name] if name else obj
        if m.group(1):
            return json.dumps(value, separators=(",", ":"))
        return "" if value is None else str(value)

    text = template.replace("\\t", "\t").replace("\\n", "\n")
    rest = _FIELD.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise InvalidArgument(f"unsupported template: {template!r} "
                              "(hutch knows {{.Field}} and {{json .Field}})")
    return _FIELD.sub(field, text)


def print_table(template: str, rows: list[dict], headers: dict[str, str] = HEADERS) -> None:
    """docker's tabwriter (minwidth 10, padding 3) over a "table ..." template."""
    body = template[len("table"):].strip()
    header = _FIELD.sub(lambda m: headers.get(m.group(2), m.group(2).upper()), body)
    lines = [header.replace("\\t", "\t")] + [render(body, r) for r in rows]
    cells = [line.split("\t") for line in lines]
    ncols = max(len(c) for c in cells)
    widths = [max(10, max((len(c[i]) for c in cells if i < len(c) - 1), default=0) + 3)
              for i in range(ncols)]
    for c in cells:
        print("".join(v.ljust(widths[i]) if i < len(c) - 1 else v
                      for i, v in enumerate(c)).rstrip())


def run(args, settings) -> int:
    from hutch.cli._common import print_rows
    from hutch.engine.store import parse_filters
    from hutch.engine.volumes import containers_in_use, open_store

    filters = parse_filters(args.filter)
    users = containers_in_use(settings) if "dangling" in filters else {}
    vols = open_store(settings).list(filters, in_use=users)
    if args.quiet:
        for v in vols:
            print(v.name)
        return 0
    print_rows(args.format, [row(v) for v in vols], DEFAULT_TABLE, HEADERS)
    return 0
