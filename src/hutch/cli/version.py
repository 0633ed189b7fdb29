"""hutch version."""

from __future__ import annotations

HELP = "Show the hutch version"


def add_arguments(parser) -> None:
    parser.add_argument("--format", "-f", choices=("text", "json"), default="text")


def run(args, settings) -> int:
    import platform
    import sys

    from hutch.runtime.cli import SPEC_VERSION, VERSION

    info = {"version": VERSION, "ociRuntimeSpec": SPEC_VERSION,
            "python": platform.python_version(), "os": sys.platform,
            "arch": platform.machine(), "root": settings.root, "run": settings.run}
    if args.format == "json":
        import json

        print(json.dumps(info))
    else:
        print(f"hutch version {VERSION}")
        for k in ("ociRuntimeSpec", "python", "os", "arch"):
            print(f" {k}: {info[k]}")
    return 0
