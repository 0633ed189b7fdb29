"""hutch stats [--no-stream] [-a] [--format json] [CONTAINER...]"""

from __future__ import annotations

import sys
import time

HELP = "Display a live stream of container(s) resource usage statistics"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="(running ones are shown)")
    parser.add_argument("--no-stream", action="store_true",
                        help="disable streaming stats and only pull the first result")
    parser.add_argument("--no-trunc", action="store_true")
    parser.add_argument("--format", default="table", help="table or json")
    parser.add_argument("containers", nargs="*")


def row(rec, before: dict, after: dict, dt_ns: int, ncpu: int) -> dict:
    """docker's CPU % (container cpu delta / wall delta x cpus) and memory figures."""
    from hutch.cli._common import human_size

    def cpu_total(s):
        return ((s.get("cpu") or {}).get("usage") or {}).get("total", 0)

    cpu = 0.0
    if dt_ns > 0:
        cpu = (cpu_total(after) - cpu_total(before)) / dt_ns * 100.0
    mem = (after.get("memory") or {})
    usage = (mem.get("usage") or {}).get("usage", 0)
    cache = (mem.get("raw") or {}).get("total_inactive_file",
                                       (mem.get("raw") or {}).get("inactive_file", 0))
    used = max(0, usage - cache)
    limit = (mem.get("usage") or {}).get("limit", 0)
    if not limit or limit >= 1 << 62:
        try:
            limit = _host_memory()
        except OSError:
            limit = 0
    blk_r = blk_w = 0
    for e in ((after.get("blkio") or {}).get("ioServiceBytesRecursive") or []):
        op = (e.get("op") or "").lower()
        if op == "read":
            blk_r += e.get("value", 0)
        elif op == "write":
            blk_w += e.get("value", 0)
    pids = (after.get("pids") or {}).get("current", 0)
    return {
        "ID": rec.short_id, "Name": rec.name, "CPUPerc": f"{cpu:.2f}%",
        "MemUsage": f"{_bin(used)} / {_bin(limit)}",
        "MemPerc": f"{(used / limit * 100) if limit else 0:.2f}%",
        "NetIO": "0B / 0B", "BlockIO": f"{human_size(blk_r)} / {human_size(blk_w)}",
        "PIDs": str(pids),
    }


def _bin(n: int) -> str:
    """docker's units.BytesSize: binary units."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024
    return f"{size:.4g}TiB"


def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def run(args, settings) -> int:
    import os

    from hutch.engine.containers import Engine
    from hutch.errors import HutchError

    ncpu = os.cpu_count() or 1
    with Engine(settings) as eng:
        while True:
            recs = ([eng.get(r) for r in args.containers] if args.containers
                    else eng.list(all=False))
            first = {}
            t0 = time.monotonic_ns()
            for r in recs:
                try:
                    first[r.id] = eng.stats(r)
                except HutchError:
                    continue
            time.sleep(0.5 if args.no_stream else 1.0)
            dt = time.monotonic_ns() - t0
            rows = []
            for r in recs:
                if r.id not in first:
                    continue
                try:
                    rows.append(row(r, first[r.id], eng.stats(r), dt, ncpu))
                except HutchError:
                    continue
            _print(rows, args.format, clear=not args.no_stream and sys.stdout.isatty())
            if args.no_stream:
                return 0


def _print(rows: list[dict], fmt: str, clear: bool) -> None:
    if fmt == "json":
        import json

        for r in rows:
            print(json.dumps(r))
        sys.stdout.flush()
        return
    cols = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"),
            ("MEM USAGE / LIMIT", "MemUsage"), ("MEM %", "MemPerc"), ("NET I/O", "NetIO"),
            ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]
    table = [[h for h, _ in cols]] + [[r[k] for _, k in cols] for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    if clear:
        sys.stdout.write("\x1b[2J\x1b[H")
    for t in table:
        print("   ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip())
    sys.stdout.flush()
