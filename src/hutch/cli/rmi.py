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
        if not force:
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
        if not force:
            _refuse_if_in_use(svc, n)
        svc.meta.delete_image(n)
        lines.append(f"Untagged: {n}")
    return lines


def _refuse_if_in_use(svc, name: str) -> None:
    """docker: the last name of an image a container uses is not removed without -f (and
    with -f only the name goes: the container's lease keeps the content)."""
    import os

    from hutch.engine.store import ContainerStore
    from hutch.errors import FailedPrecondition

    db = os.path.join(svc.root, "containers.db")
    if not os.path.exists(db):
        return
    image_id = svc.meta.resolve_manifest(name).config
    others = [rec.name for rec in svc.meta.list_images() if rec.name != name
              and svc.meta.resolve_manifest(rec.name).config == image_id]
    if others:
        return
    store = ContainerStore(db)
    try:
        users = [r for r in store.list(all=True) if r.image_id == image_id]
    finally:
        store.close()
    if users:
        raise FailedPrecondition(
            f"conflict: unable to remove repository reference {name!r} (must force) - "
            f"container {users[0].short_id} is using its referenced image "
            f"{image_id.removeprefix('sha256:')[:12]}")
