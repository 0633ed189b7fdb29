"""hutch ps [-a] [-q] [-n N] [-l] [--no-trunc] [--filter K=V]... [--format table|json]"""

from __future__ import annotations

import time

HELP = "List containers"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all containers")
    parser.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    parser.add_argument("-f", "--filter", action="append", default=[],
                        help="filter output (status=, name=, id=, label=, ancestor=, exited=)")
    parser.add_argument("--format", default="table", help="table or json")
    parser.add_argument("-n", "--last", type=int, default=-1, help="show n last created")
    parser.add_argument("-l", "--latest", action="store_true", help="show the latest created")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")


def status_text(rec, now: float | None = None) -> str:
    """docker's State.String()."""
    now = now or time.time()
    if rec.state in ("running", "paused"):
        up = "Up " + _duration(now - (rec.started_at or now))
        return up + " (Paused)" if rec.state == "paused" else up
    if rec.state == "restarting":
        return f"Restarting ({rec.exit_code}) {ago(rec.finished_at, now)}"
    if rec.state == "exited":
        if not rec.started_at and not rec.finished_at:
            return "Created"
        return f"Exited ({rec.exit_code}) {ago(rec.finished_at, now)}"
    if rec.state == "created":
        return "Created"
    if rec.state == "removing":
        return "Removal In Progress"
    return "Dead"


def ago(ts: float | None, now: float | None = None) -> str:
    """docker ps: units.HumanDuration(now - t) + " ago"."""
    if not ts:
        return ""
    return _duration((now or time.time()) - ts) + " ago"


def _duration(d: float) -> str:
    """go-units HumanDuration."""
    s = int(d)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def command_text(rec, trunc: bool) -> str:
    eff = rec.config.get("effective") or {}
    args = list(eff.get("Entrypoint") or []) + list(eff.get("Cmd") or [])
    text = " ".join(args)
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


def ports_text(rec) -> str:
    """docker's PORTS column: 0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp."""
    from hutch.engine.store import ACTIVE_STATES

    if rec.state not in ACTIVE_STATES:
        return ""
    return ", ".join(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->"
                     f"{p['container_port']}/{p['proto']}"
                     for p in (rec.network or {}).get("ports") or [])


def run(args, settings) -> int:
    from hutch.engine.containers import Engine, container_info
    from hutch.engine.store import ACTIVE_STATES, parse_filters

    filters = parse_filters(args.filter)
    with Engine(settings) as eng:
        recs = eng.list(all=args.all or args.last > 0 or args.latest,
                        filters=filters)
    recs.sort(key=lambda r: r.created, reverse=True)
    if args.latest:
        recs = recs[:1]
    elif args.last > 0:
        recs = recs[:args.last]
    if args.quiet:
        for r in recs:
            print(r.id if args.no_trunc else r.short_id)
        return 0
    if args.format == "json":
        from hutch.util import fastjson

        for r in recs:
            info = container_info(r)
            print(fastjson.dumps({
                "Command": command_text(r, False), "CreatedAt": info["Created"],
                "ID": r.id if args.no_trunc else r.short_id, "Image": r.image,
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())),
                "Names": r.name, "State": r.state,
                "Status": status_text(r), "ExitCode": r.exit_code, "Pid": r.pid,
                "Ports": ports_text(r), "Networks": ",".join(
                    (r.network or {}).get("networks") or {}) if r.state in ACTIVE_STATES else ""}))
        return 0
    if args.format != "table" and not args.format.startswith("table"):
        from hutch.errors import InvalidArgument

        raise InvalidArgument(f"unsupported --format {args.format!r}: table or json")
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for r in recs:
        rows.append((r.id if args.no_trunc else r.short_id, r.image,
                     command_text(r, not args.no_trunc), ago(r.created), status_text(r),
                     ports_text(r),
                     r.name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
