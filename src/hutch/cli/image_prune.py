"""hutch image prune [-a] [-f]: remove unreferenced content and unpacked layers (every
image is named in hutch, so dangling means content no name reaches); -a also removes
every image no container uses."""

from __future__ import annotations

HELP = "Remove unused images and content"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("-f", "--force", action="store_true", help="(accepted, no prompt)")


def run(args, settings) -> int:
    prune_images(settings, all=args.all, keep=images_in_use(settings) if args.all else set())
    return 0


def images_in_use(settings) -> set[str]:
    """The names containers were created from (a -a prune keeps them, as docker does)."""
    from hutch.engine.containers import Engine

    used: set[str] = set()
    with Engine(settings) as eng:
        for r in eng.store.list(all=True):
            used |= {r.image, r.config.get("image_name") or ""}
    return used


def prune_images(settings, *, all: bool, keep: set[str]) -> None:
    """Untag every image but `keep` (with `all`), then drop what no name reaches."""
    from hutch.cli._common import human_size, service
    from hutch.image.gc import prune

    with service(settings) as svc:
        if all:
            for rec in svc.meta.list_images():
                if rec.name not in keep:
                    svc.meta.delete_image(rec.name)
                    print(f"untagged: {rec.name}")
        result = prune(svc)
    for d in result.blobs:
        print(f"deleted: {d}")
    print(f"Total reclaimed space: {human_size(result.bytes_freed)}")
