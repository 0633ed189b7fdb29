"""hutch wait CONTAINER...: block until each stops, print its exit code."""

from __future__ import annotations

HELP = "Block until one or more containers stop, then print their exit codes"


def add_arguments(parser) -> None:
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each

    def wait(eng, rec):
        rec = eng.wait_stopped(rec, None)
        try:
            rec = eng.store.get(rec.id)
        except Exception:  # noqa: BLE001 - removed meanwhile (--rm): last known code
            pass
        return str(rec.exit_code)

    return each(args.containers, wait, settings)
