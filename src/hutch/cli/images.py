"""hutch images [-q] [--digests] [--format table|json] [REPOSITORY[:TAG]]"""

from __future__ import annotations

HELP = "List images"


def add_arguments(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("-a", "--all", action="store_true", help="(accepted, like docker)")
    parser.add_argument("reference", nargs="?")


def rows(svc, reference: str | None) -> list[dict]:
    from hutch.oci.reference import Reference

    out = []
    for img in svc.list():
        ref = Reference.parse(img.name)
        if reference and not _matches(reference, ref):
            continue
        size = sum(layer.size or 0 for layer in img.manifest.layers)
        out.append({
            "Repository": ref.familiar_name() if ref.tag or ref.digest else ref.familiar(),
            "Tag": ref.tag or "<none>",
            "Digest": img.record.target,
            "ID": img.id,
            "Created": img.config.raw.get("created"),
            "CreatedAt": img.record.created,
            "Size": size,
            "Name": img.name,
        })
    return out


def _matches(pattern: str, ref) -> bool:
    name, _, tag = pattern.partition(":")
    if name not in (ref.familiar_name(), ref.name):
        return False
    return not tag or tag == ref.tag


def run(args, settings) -> int:
    from hutch.cli._common import ago, human_size, service, short_id

    with service(settings) as svc:
        items = rows(svc, args.reference)
    if args.format == "json":
        import json

        print(json.dumps(items, indent=2))
        return 0
    if args.quiet:
        seen = []
        for r in items:
            if short_id(r["ID"]) not in seen:
                seen.append(short_id(r["ID"]))
        print("\n".join(seen)) if seen else None
        return 0
    cols = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + [
        "IMAGE ID", "CREATED", "SIZE"]
    table = [cols]
    for r in items:
        row = [r["Repository"], r["Tag"]]
        if args.digests:
            row.append(r["Digest"])
        row += [short_id(r["ID"]), ago(r["CreatedAt"]), human_size(r["Size"])]
        table.append(row)
    widths = [max(len(str(row[i])) for row in table) for i in range(len(cols))]
    for row in table:
        print("   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
