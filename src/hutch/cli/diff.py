"""hutch diff CONTAINER"""

from __future__ import annotations

HELP = "Inspect changes to files or directories on a container's filesystem"


def add_arguments(parser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def run(args, settings) -> int:
    import sys

    from hutch.engine.changes import changes, mountpoints
    from hutch.engine.containers import Engine

    with Engine(settings) as eng:
        rec = eng.get(args.container)
        found = changes(eng.images.snapshotter, rec.snapshot_key,
                        mounts=eng.snapshot_mounts(rec), hide=mountpoints(rec.config))
    sys.stdout.write("".join(f"{kind} {path}\n" for kind, path in found))
    return 0
