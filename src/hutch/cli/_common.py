"""Helpers shared by the image verbs: opening the service, formatting sizes and times."""

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
