"""hutch port CONTAINER [PRIVATE_PORT[/PROTO]]"""

from __future__ import annotations

HELP = "List port mappings or a specific mapping for the container"


def add_arguments(parser) -> None:
    parser.add_argument("container")
    parser.add_argument("port", nargs="?")


def run(args, settings) -> int:
    from hutch.engine.containers import Engine
    from hutch.engine.store import ACTIVE_STATES
    from hutch.errors import NotFound

    with Engine(settings) as eng:
        rec = eng.get(args.container)
    active = rec.state in ACTIVE_STATES
    ports = (rec.network or {}).get("ports") or [] if active else []
    shown = 0
    for p in ports:
        key = f"{p['container_port']}/{p.get('proto', 'tcp')}"
        if args.port and args.port not in (key, str(p["container_port"])):
            continue
        host = f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}"
        # docker: the whole mapping, or only the host side when a port was asked for.
        print(host if args.port else f"{key} -> {host}")
        shown += 1
    if args.port and not shown:
        raise NotFound(f"No public port '{args.port}' published for {args.container}")
    return 0
