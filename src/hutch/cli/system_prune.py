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
    from hutch.cli._common import confirm_prune
    from hutch.cli.image_prune import images_in_use, prune_images
    from hutch.engine.containers import Engine

    if not confirm_prune(args.force, "all stopped containers, all networks not used by at "
                         "least one container and all dangling images"):
        return 0 if sys.stdin.isatty() else 1
    with Engine(settings) as eng:
        gone = eng.prune()
        networks = eng.networking.prune()
        removed_volumes: list[str] = []
        if args.volumes:
            from hutch.engine.volumes import containers_in_use

            removed_volumes, _ = eng.volumes().prune(containers_in_use(settings))
    for title, names in (("Deleted Containers:", [r.id for r in gone]),
                         ("Deleted Networks:", [n.name for n in networks]),
                         ("Deleted Volumes:", list(removed_volumes))):
        if names:
            print(title)
            print("\n".join(names))
            print()
    prune_images(settings, all=args.all, keep=images_in_use(settings))
    return 0
