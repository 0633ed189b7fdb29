"""hutch: the docker-like CLI. Verbs arrive with the engine issue; for now it reports its
version and points at hutch-runtime."""

from __future__ import annotations

import sys

from hutch.runtime.cli import VERSION


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("version", "--version", "-v"):
        print(f"hutch version {VERSION}")
        return 0
    sys.stderr.write("hutch: the engine CLI is not built yet; use hutch-runtime "
                     "(runc's command line)\n")
    return 125 if argv else 0


if __name__ == "__main__":
    sys.exit(main())
