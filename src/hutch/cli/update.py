"""hutch update [--memory] [--memory-swap] [--cpus] [--cpu-shares] [--cpuset-cpus]
[--pids-limit] [--restart] CONTAINER..."""

from __future__ import annotations

HELP = "Update configuration (resource limits, restart policy) of one or more containers"


def add_arguments(parser) -> None:
    parser.add_argument("-m", "--memory", default=None)
    parser.add_argument("--memory-swap", default=None)
    parser.add_argument("--cpus", type=float, default=None)
    parser.add_argument("-c", "--cpu-shares", type=int, default=None)
    parser.add_argument("--cpuset-cpus", default=None)
    parser.add_argument("--pids-limit", type=int, default=None)
    parser.add_argument("--restart", default=None)
    parser.add_argument("containers", nargs="+")


def run(args, settings) -> int:
    from hutch.cli._container import each
    from hutch.errors import InvalidArgument

    changes = {k: getattr(args, k) for k in ("memory", "memory_swap", "cpus", "cpu_shares",
                                             "cpuset_cpus", "pids_limit", "restart")
               if getattr(args, k) is not None}
    if not changes:
        raise InvalidArgument("you must provide one or more flags when using this command")
    return each(args.containers, lambda eng, rec: eng.update(rec, dict(changes)) and None,
                settings)
