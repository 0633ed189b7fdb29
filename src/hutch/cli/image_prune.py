"""hutch image prune [-a] [-f]: remove unreferenced content and unpacked layers (every
image is named in hutch, so dangling means content no name reaches); -a also removes
every image no container uses."""

from __future__ import annotations

HELP = "Remove unused images and content"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("-f", "--force", action="store_true", help="(accepted, no prompt)")


def run(args, settings) -> int:
    from hutch.cli._common import human_size, service
    from hutch.image.gc import prune

    with service(settings) as svc:
        if args.all:
            for rec in svc.meta.list_images():
                svc.meta.delete_image(rec.name)
                print(f"untagged: {rec.name}")
        result = prune(svc)
    for d in result.blobs:
        print(f"deleted: {d}")
    print(f"Total reclaimed space: {human_size(result.bytes_freed)}")
    return 0
