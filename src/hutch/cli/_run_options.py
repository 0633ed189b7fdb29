"""The flags `hutch run` and `hutch create` share (docker's), and their translation to
hutch.engine.containers.CreateOptions."""

from __future__ import annotations

import argparse

from hutch.errors import InvalidArgument


def add_create_arguments(parser) -> None:
    # docker uses -h for --hostname; help stays on --help.
    # (argparse checks conflicts per group: the optionals group holds -h/--help)
    parser.conflict_handler = parser._optionals.conflict_handler = "resolve"
    a = parser.add_argument
    a("--name", default="", help="assign a name to the container")
    a("-e", "--env", action="append", default=[], help="set environment variables")
    a("--env-file", action="append", default=[], help="read in a file of environment variables")
    a("-v", "--volume", action="append", default=[], help="bind mount a volume")
    a("--mount", action="append", default=[], help="attach a filesystem mount")
    a("-w", "--workdir", default="", help="working directory inside the container")
    a("-u", "--user", default="", help="username or UID (format: <name|uid>[:<group|gid>])")
    a("--entrypoint", default=None, help="overwrite the default ENTRYPOINT of the image")
    a("-h", "--hostname", default="", help="container host name")
    a("--read-only", action="store_true", help="mount the container's root filesystem read-only")
    a("--tmpfs", action="append", default=[], help="mount a tmpfs directory (PATH[:OPTIONS])")
    a("--init", action="store_true", help="run an init inside the container (tini) as pid 1")
    a("-m", "--memory", default=None, help="memory limit")
    a("--memory-swap", default=None, help="memory + swap limit, -1 for unlimited swap")
    a("--cpus", type=float, default=None, help="number of CPUs")
    a("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)")
    a("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--pids-limit", type=int, default=None, help="tune container pids limit (-1: unlimited)")
    a("--ulimit", action="append", default=[], help="ulimit options (nofile=1024:2048)")
    a("--cap-add", action="append", default=[], help="add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    a("--privileged", action="store_true", help="give extended privileges to this container")
    a("--security-opt", action="append", default=[],
      help="seccomp=PROFILE.json|unconfined, no-new-privileges")
    a("--device", action="append", default=[], help="add a host device to the container")
    a("--restart", default="no", help="no, on-failure[:max-retries], always, unless-stopped")
    a("--stop-signal", default="", help="signal to stop the container")
    a("--stop-timeout", type=int, default=None, help="timeout (in seconds) to stop a container")
    a("-l", "--label", action="append", default=[], help="set meta data on a container")
    a("--label-file", action="append", default=[], help="read in a line delimited file of labels")
    a("--pull", default="missing", choices=("missing", "always", "never"),
      help="pull image before running")
    a("--network", "--net", default="bridge",
      help="connect a container to a network: bridge (default), none, host, "
           "container:<name|id> or a network's name")
    a("--network-alias", "--net-alias", action="append", default=[],
      help="add network-scoped alias for the container")
    a("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    a("-p", "--publish", action="append", default=[],
      help="publish a container's port(s) to the host ([ip:]hostPort:containerPort[/proto])")
    a("-P", "--publish-all", action="store_true",
      help="publish all exposed ports to random ports")
    a("--expose", action="append", default=[], help="expose a port or a range of ports")
    a("--dns", action="append", default=[], help="set custom DNS servers")
    a("--dns-search", action="append", default=[], help="set custom DNS search domains")
    a("--dns-option", "--dns-opt", action="append", default=[], help="set DNS options")
    a("--add-host", action="append", default=[],
      help="add a custom host-to-IP mapping (host:ip)")
    a("--log-driver", default="json-file", help="logging driver (json-file only)")
    a("--log-opt", action="append", default=[], help="log driver options (max-size, max-file)")
    a("--platform", default=None, help="set platform if server is multi-platform capable")
    a("--shm-size", default=None, help="size of /dev/shm")
    a("-i", "--interactive", action="store_true", help="keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    a("image")
    a("command", nargs=argparse.REMAINDER)


def _read_env_file(path: str) -> list[str]:
    """docker's opts.ParseEnvFile: KEY=VALUE lines, # comments, a bare KEY takes the
    value from our environment (and is dropped if unset)."""
    import os

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument(f"open {path}: {e.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        text = line.lstrip()
        if not text or text.startswith("#"):
            continue
        key, eq, value = text.partition("=")
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"{path}:{n}: variable {key!r} contains whitespaces")
        if eq:
            out.append(f"{key}={value}")
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def _env(values: list[str]) -> list[str]:
    import os

    out = []
    for v in values:
        if "=" in v:
            out.append(v)
        elif v in os.environ:  # docker: `-e KEY` passes our value through
            out.append(f"{v}={os.environ[v]}")
        else:
            out.append(v)  # a bare KEY unsets it in the image's env
    return out


def _labels(values: list[str], files: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines += [x.strip() for x in f if x.strip() and not x.startswith("#")]
        except OSError as e:
            raise InvalidArgument(f"open {path}: {e.strerror}") from None
    for item in lines + list(values):
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {item!r}")
        out[key] = value
    return out


def _tmpfs(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        path, _, opts = v.partition(":")
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid --tmpfs {v!r}: the path must be absolute")
        out[path] = opts
    return out


def _log_opts(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq:
            raise InvalidArgument(f"invalid --log-opt {v!r}: want key=value")
        out[key] = value
    return out


def create_options(args):
    from hutch.engine.containers import CreateOptions
    from hutch.engine.spec import DEFAULT_SHM_SIZE, RunOptions, parse_bytes

    if args.log_driver != "json-file":
        raise InvalidArgument(f"log driver {args.log_driver!r} is not supported: json-file")
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    env_file: list[str] = []
    for path in args.env_file:
        env_file += _read_env_file(path)
    from hutch.engine.networking import parse_net_options

    net = parse_net_options(
        network=args.network, aliases=args.network_alias, ip=args.ip, publish=args.publish,
        publish_all=args.publish_all, dns=args.dns, dns_search=args.dns_search,
        dns_options=args.dns_option, add_hosts=args.add_host)
    network = net.mode
    run = RunOptions(
        cmd=list(args.command), entrypoint=entrypoint, env=_env(args.env), env_file=env_file,
        workdir=args.workdir, user=args.user, hostname=args.hostname,
        read_only=args.read_only, tmpfs=_tmpfs(args.tmpfs), cap_add=list(args.cap_add),
        cap_drop=list(args.cap_drop), privileged=args.privileged,
        security_opt=[_security_opt(s) for s in args.security_opt], devices=list(args.device),
        memory=args.memory, memory_swap=args.memory_swap, cpus=args.cpus,
        cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus, pids_limit=args.pids_limit,
        ulimits=list(args.ulimit), init=args.init, stop_signal=args.stop_signal,
        labels=_labels(args.label, args.label_file), tty=args.tty,
        interactive=args.interactive, network=network,
        shm_size=parse_bytes(args.shm_size, "--shm-size") if args.shm_size
        else DEFAULT_SHM_SIZE,
    )
    if run.stop_signal:
        from hutch.engine.containers import parse_signal

        parse_signal(run.stop_signal)
    return CreateOptions(
        image=args.image, run=run, name=args.name, volumes=list(args.volume),
        mounts=list(args.mount), auto_remove=bool(getattr(args, "rm", False)),
        restart=args.restart, pull=args.pull, stop_timeout=args.stop_timeout,
        log_opts=_log_opts(args.log_opt), platform=args.platform, net=net,
        expose=list(args.expose))


def _security_opt(value: str) -> str:
    """seccomp=FILE: docker reads the file client-side and sends its JSON."""
    key, sep, rest = value.partition("=")
    if key == "seccomp" and sep and rest != "unconfined":
        try:
            with open(rest, encoding="utf-8") as f:
                return "seccomp=" + f.read()
        except OSError as e:
            raise InvalidArgument(f"opening seccomp profile ({rest}) failed: "
                                  f"{e.strerror}") from None
    return value


def pull_progress():
    import sys

    if sys.stderr.isatty():
        from hutch.cli._progress import RichPullProgress

        return RichPullProgress()
    from hutch.cli._progress import LinePullProgress

    return LinePullProgress()
