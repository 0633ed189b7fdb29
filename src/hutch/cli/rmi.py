"""hutch rmi [-f] IMAGE..."""

from __future__ import annotations

import sys

HELP = "Remove one or more images"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true",
                        help="remove every name of an image given by id")
    parser.add_argument("--no-prune", action="store_true",
                        help="keep unreferenced content and layers")
    parser.add_argument("images", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.errors import HutchError
    from hutch.image.gc import prune

    code = 0
    with service(settings) as svc:
        for name in args.images:
            try:
                for line in _remove(svc, name, args.force):
                    print(line)
            except HutchError as e:
                sys.stderr.write(f"Error: {e}\n")
                code = 1
        if not args.no_prune:
            result = prune(svc)
            for chain_id in result.snapshots:
                print(f"Deleted: {chain_id}")
    return code


def _remove(svc, name: str, force: bool) -> list[str]:
    from hutch.errors import FailedPrecondition, InvalidArgument, NotFound

    try:
        exact = svc.meta.get_image(svc.normalize(name))
    except (NotFound, InvalidArgument):
        exact = None
    if exact is not None:
        _refuse_if_in_use(svc, exact.name)
        svc.meta.delete_image(exact.name)
        return [f"Untagged: {exact.name}"]
    image = svc.lookup(name)  # by id (prefix): NotFound if none
    names = [rec.name for rec in svc.meta.list_images()
             if svc.meta.resolve_manifest(rec.name).config == image.id]
    if len(names) > 1 and not force:
        raise FailedPrecondition(
            f"conflict: unable to delete {name} (must be forced) - image is referenced in "
            f"multiple repositories")
    lines = []
    for n in names:
        _refuse_if_in_use(svc, n)
        svc.meta.delete_image(n)
        lines.append(f"Untagged: {n}")
    return lines


def _refuse_if_in_use(svc, name: str) -> None:
    """Containers arrive with the engine; until then nothing can use an image."""
    users = getattr(svc, "containers_using", None)
    if users and users(name):
        from hutch.errors import FailedPrecondition

        raise FailedPrecondition(f"conflict: unable to remove {name}: image is being used "
                                 f"by a container")
