"""Helpers shared by the verbs: opening the image service, formatting sizes and times,
the prune prompt, list output in table/json/template form."""

from __future__ import annotations

import time


def service(settings):
    from hutch.image.service import ImageService

    return ImageService(settings)


def human_size(n: int) -> str:
    """docker's units.HumanSize: decimal, 3 significant digits."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}PB"


def ago(ts: float | None) -> str:
    if not ts:
        return "N/A"
    d = max(0, time.time() - ts)
    for span, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                       (86400, "day"), (3600, "hour"), (60, "minute")):
        if d >= span:
            k = int(d // span)
            return f"{k} {unit}{'s' if k > 1 else ''} ago"
    return "Less than a minute ago" if d >= 1 else "Less than a second ago"


def short_id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def confirm_prune(force: bool, warning: str) -> bool:
    """docker's prune prompt: True to go on. Without --force on a non-terminal it
    refuses (a script must say -f) with an error line."""
    import sys

    if force:
        return True
    if not sys.stdin.isatty():
        sys.stderr.write("Error: refusing to prune without --force on a non-terminal\n")
        return False
    sys.stdout.write(f"WARNING! This will remove {warning}.\n"
                     "Are you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def print_rows(fmt: str, rows: list[dict], default: str, headers: dict[str, str]) -> None:
    """`--format`: "" or "table" (the verb's default table), "json" (one object a line),
    "table TEMPLATE" or a bare {{.Field}} template."""
    from hutch.cli.volume_ls import print_table, render

    fmt = fmt or default
    if fmt == "table":
        fmt = default
    if fmt == "json":
        fmt = "{{json .}}"
    if fmt.startswith("table"):
        print_table(fmt, rows, headers)
    else:
        for r in rows:
            print(render(fmt, r))
