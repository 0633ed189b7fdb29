"""hutch cp [-a] [-L] [-q] CONTAINER:SRC_PATH DEST_PATH|-
hutch cp [-a] [-L] [-q] SRC_PATH|- CONTAINER:DEST_PATH"""

from __future__ import annotations

HELP = "Copy files/folders between a container and the local filesystem"


def add_arguments(parser) -> None:
    parser.add_argument("-a", "--archive", action="store_true",
                        help="archive mode (copy all uid/gid information)")
    parser.add_argument("-L", "--follow-link", action="store_true",
                        help="always follow symbol link in SRC_PATH")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="suppress progress output during copy")
    parser.add_argument("src", metavar="SRC")
    parser.add_argument("dest", metavar="DEST")


def split_cp_arg(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: the text before the first ':' names a container, unless the
    argument is an absolute path or starts with '.' (write a local "a:b" as ./a:b)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or not container or container.startswith("."):
        return "", arg
    return container, path


def run(args, settings) -> int:
    import sys

    from hutch.cli._common import human_size
    from hutch.engine.containers import Engine
    from hutch.engine.copy import copy_in, copy_out
    from hutch.errors import InvalidArgument

    src_c, src_p = split_cp_arg(args.src)
    dst_c, dst_p = split_cp_arg(args.dest)
    if src_c and dst_c:
        raise InvalidArgument("copying between containers is not supported")
    if not src_c and not dst_c:
        raise InvalidArgument("must specify at least one container source",
                              hint="write the container side as CONTAINER:PATH")
    with Engine(settings) as eng:
        rec = eng.get(src_c or dst_c)
        mounts = (rec.config or {}).get("mounts") or []
        with eng.mounted_rootfs(rec) as rootfs:
            if src_c:
                dest = sys.stdout.buffer if dst_p == "-" else dst_p
                result = copy_out(rootfs, src_p, dest, follow_link=args.follow_link,
                                  mounts=mounts, container=src_c)
                if dst_p == "-":
                    sys.stdout.buffer.flush()
            else:
                src = sys.stdin.buffer if src_p == "-" else src_p
                result = copy_in(rootfs, src, dst_p, copy_uid_gid=args.archive,
                                 follow_link=args.follow_link, mounts=mounts,
                                 container=dst_c, readonly_rootfs=bool(
                                     ((rec.config or {}).get("run") or {}).get("read_only")))
    for w in result.warnings:
        sys.stderr.write(f"warning: {w}\n")
    if not args.quiet and dst_p != "-" and sys.stderr.isatty():
        sys.stderr.write(f"Successfully copied {human_size(result.size)} to {args.dest}\n")
    return 0
