"""hutch system df [-v]"""

from __future__ import annotations

HELP = "Show hutch disk usage"


def add_arguments(parser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--format", default=None, help="json")


def _dir_size(path: str) -> int:
    import os

    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def run(args, settings) -> int:
    import os

    from hutch.cli._common import human_size
    from hutch.engine.containers import Engine
    from hutch.errors import HutchError

    rows = []
    with Engine(settings) as eng:
        recs = eng.list(all=True)
        images = eng.images.list()
        used_images = {r.image_id for r in recs}
        img_size = sum(sum(layer.size or 0 for layer in i.manifest.layers) for i in images)
        unused_img = sum(sum(layer.size or 0 for layer in i.manifest.layers) for i in images
                         if i.id not in used_images)
        rows.append(("Images", len(images), sum(i.id in used_images for i in images),
                     img_size, unused_img))
        snap = eng.images.snapshotter
        ctr_size = stopped_size = 0
        for r in recs:
            try:
                size = snap.usage(r.snapshot_key).size if r.snapshot_key else 0
            except (HutchError, OSError):
                size = 0
            ctr_size += size
            if r.state not in ("running", "paused", "restarting"):
                stopped_size += size
        rows.append(("Containers", len(recs),
                     sum(r.state in ("running", "paused", "restarting") for r in recs),
                     ctr_size, stopped_size))
        vol_root = os.path.join(settings.root, "volumes")
        in_use = set()
        for r in recs:
            in_use.update(r.config.get("volumes") or [])
        vols = [v for v in (os.listdir(vol_root) if os.path.isdir(vol_root) else [])]
        vol_sizes = {v: _dir_size(os.path.join(vol_root, v)) for v in vols}
        rows.append(("Local Volumes", len(vols), sum(v in in_use for v in vols),
                     sum(vol_sizes.values()),
                     sum(s for v, s in vol_sizes.items() if v not in in_use)))
    if args.format == "json":
        import json

        for t, total, active, size, rec in rows:
            print(json.dumps({"Type": t, "TotalCount": total, "Active": active,
                              "Size": human_size(size), "Reclaimable": human_size(rec)}))
        return 0
    table = [("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE")]
    for t, total, active, size, rec in rows:
        pct = f" ({rec * 100 // size}%)" if size else ""
        table.append((t, str(total), str(active), human_size(size), human_size(rec) + pct))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
