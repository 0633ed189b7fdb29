"""hutch attach [--no-stdin] [--detach-keys K] CONTAINER"""

from __future__ import annotations

HELP = "Attach local standard input, output, and error streams to a running container"


def add_arguments(parser) -> None:
    parser.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    parser.add_argument("--detach-keys", default=None)
    parser.add_argument("--sig-proxy", default="true", choices=("true", "false"))
    parser.add_argument("container")


def run(args, settings) -> int:
    import socket

    from hutch.engine import attach as proto
    from hutch.engine.containers import Engine
    from hutch.errors import FailedPrecondition

    with Engine(settings) as eng:
        rec = eng.get(args.container)
        if rec.state not in ("running", "paused"):
            raise FailedPrecondition("You cannot attach to a stopped container, start it first")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proto.connect_unix(sock, eng.paths(rec).attach_sock)
        except OSError as e:
            raise FailedPrecondition(
                f"cannot attach: the monitor is not there ({e.strerror})") from None
        run_cfg = rec.config.get("run") or {}
        keys = proto.parse_detach_keys(args.detach_keys or proto.DEFAULT_DETACH_KEYS)
        try:
            code = proto.run_client(sock, stdin=not args.no_stdin and run_cfg.get("interactive"),
                                    tty=bool(run_cfg.get("tty")), detach_keys=keys,
                                    sig_proxy=args.sig_proxy != "false")
        except proto.Detached:
            return 0
        finally:
            sock.close()
        if code is None:
            rec = eng.wait_stopped(rec, None)
            return rec.exit_code
        return code
