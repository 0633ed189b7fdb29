"""hutch image inspect NAME|ID..."""

from __future__ import annotations

HELP = "Display detailed information on one or more images"


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+")


def run(args, settings) -> int:
    import json

    from hutch.cli._common import service
    from hutch.errors import NotFound

    out, code = [], 0
    with service(settings) as svc:
        for name in args.images:
            try:
                img = svc.lookup(name)
            except NotFound as e:
                import sys

                sys.stderr.write(f"Error: {e}\n")
                code = 1
                continue
            out.append(image_info(svc, img))
    print(json.dumps(out, indent=4))
    return code


def image_info(svc, img) -> dict:
    """`docker image inspect` of one image (an ImageRef, or a name to look up)."""
    if isinstance(img, str):
        img = svc.lookup(img)
    raw = img.config.raw
    return {
        "Id": img.id,
        "RepoTags": list(_names(svc, img)),
        "RepoDigests": [f"{img.name.rsplit(':', 1)[0]}@{img.record.target}"],
        "Created": raw.get("created"),
        "Architecture": raw.get("architecture"),
        "Os": raw.get("os"),
        "Variant": raw.get("variant"),
        "Config": raw.get("config") or {},
        "RootFS": {"Type": "layers", "Layers": list(img.manifest.diff_ids)},
        "Size": sum(layer.size or 0 for layer in img.manifest.layers),
        "Manifest": {"Digest": img.manifest.digest,
                     "MediaType": img.manifest.media_type,
                     "Layers": [layer.digest for layer in img.manifest.layers]},
    }


def _names(svc, img):
    for rec in svc.meta.list_images():
        try:
            if svc.meta.resolve_manifest(rec.name).config == img.id:
                yield rec.name
        except Exception:  # noqa: BLE001 - a broken record is not this image's name
            continue
