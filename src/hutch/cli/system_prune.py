"""hutch system prune [-f] [-a] [--volumes]: stopped containers, unused networks (and
what crashed containers left of theirs), dangling images (-a: every image no container
uses), unused anonymous volumes with --volumes."""

from __future__ import annotations

import sys

HELP = "Remove unused data"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt")
    parser.add_argument("-a", "--all", action="store_true",
                        help="remove all unused images, not just dangling ones")
    parser.add_argument("--volumes", action="store_true", help="prune anonymous volumes")


def run(args, settings) -> int:
    from hutch.cli._common import human_size, service
    from hutch.engine.containers import Engine
    from hutch.image.gc import prune

    if not args.force:
        if not sys.stdin.isatty():
            sys.stderr.write("Error: refusing to prune without --force on a non-terminal\n")
            return 1
        sys.stdout.write("WARNING! This will remove:\n  - all stopped containers\n"
                         "  - all networks not used by at least one container\n"
                         "  - all dangling images\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    with Engine(settings) as eng:
        gone = eng.prune()
        networks = eng.networking.prune()
        if args.volumes:
            from hutch.engine.volumes import in_use

            store = eng.volumes()
            with store.lock():
                users = in_use(eng.store.list(all=True))
                removed_volumes = store.prune(in_use=users)
        else:
            removed_volumes = []
        used = set()
        for r in eng.store.list(all=True):
            used |= {r.image, r.config.get("image_name") or ""}
    if gone:
        print("Deleted Containers:")
        for rec in gone:
            print(rec.id)
        print()
    if networks:
        print("Deleted Networks:")
        for nw in networks:
            print(nw.name)
        print()
    if removed_volumes:
        print("Deleted Volumes:")
        for v in removed_volumes:
            print(getattr(v, "name", v))
        print()
    with service(settings) as svc:
        if args.all:
            for rec in svc.meta.list_images():
                if rec.name not in used:
                    svc.meta.delete_image(rec.name)
                    print(f"untagged: {rec.name}")
        result = prune(svc)
    for d in result.blobs:
        print(f"deleted: {d}")
    print(f"Total reclaimed space: {human_size(result.bytes_freed)}")
    return 0
