"""hutch-runtime: runc's command line.

    hutch-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                  [--systemd-cgroup] COMMAND [OPTIONS] ARGS

A small table-driven parser instead of argparse: this is the hot path of every container
start, and argparse plus gettext cost milliseconds. Flags follow urfave/cli as runc uses
it: `--flag value`, `--flag=value`, `-flag`, and flags stop at the first argument.
Errors are printed to stderr and, with --log, written there as JSON lines
{"level":"error","msg":...,"time":...}, which is where containerd's shim looks.
"""

from __future__ import annotations

import os
import sys

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2"

# command -> {flag: (dest, takes_value)}
_COMMON_CREATE = {
    "bundle": ("bundle", True), "b": ("bundle", True),
    "pid-file": ("pid_file", True), "console-socket": ("console_socket", True),
    "no-pivot": ("no_pivot", False), "no-new-keyring": ("no_new_keyring", False),
    "preserve-fds": ("preserve_fds", True), "pidfd-socket": ("pidfd_socket", True),
}
COMMANDS: dict[str, dict[str, tuple[str, bool]]] = {
    "create": dict(_COMMON_CREATE),
    "run": {**_COMMON_CREATE, "detach": ("detach", False), "d": ("detach", False),
            "keep": ("keep", False), "no-subreaper": ("no_subreaper", False)},
    "exec": {"process": ("process", True), "p": ("process", True),
             "detach": ("detach", False), "d": ("detach", False),
             "pid-file": ("pid_file", True), "console-socket": ("console_socket", True),
             "tty": ("tty", False), "t": ("tty", False), "cwd": ("cwd", True),
             "env": ("env", "list"), "e": ("env", "list"), "user": ("user", True),
             "u": ("user", True), "cap": ("cap", "list"), "c": ("cap", "list"),
             "no-new-privs": ("no_new_privs", False), "preserve-fds": ("preserve_fds", True),
             "additional-gids": ("gids", "list"), "g": ("gids", "list"),
             "process-label": ("label", True), "apparmor": ("apparmor", True),
             "ignore-paused": ("ignore_paused", False), "cgroup": ("cgroup", "list"),
             "pidfd-socket": ("pidfd_socket", True)},
    "ps": {"format": ("format", True), "f": ("format", True)},
    "pause": {},
    "resume": {},
    "update": {"resources": ("resources", True), "r": ("resources", True),
               "blkio-weight": ("blkio_weight", True), "cpu-period": ("cpu_period", True),
               "cpu-quota": ("cpu_quota", True), "cpu-share": ("cpu_share", True),
               "cpu-rt-period": ("cpu_rt_period", True),
               "cpu-rt-runtime": ("cpu_rt_runtime", True),
               "cpuset-cpus": ("cpuset_cpus", True), "cpuset-mems": ("cpuset_mems", True),
               "kernel-memory": ("kernel_memory", True),
               "kernel-memory-tcp": ("kernel_memory_tcp", True),
               "memory": ("memory", True), "memory-reservation": ("memory_reservation", True),
               "memory-swap": ("memory_swap", True), "pids-limit": ("pids_limit", True),
               "l3-cache-schema": ("l3", True), "mem-bw-schema": ("membw", True)},
    "events": {"interval": ("interval", True), "stats": ("stats", False)},
    "start": {},
    "state": {},
    "kill": {"all": ("all", False), "a": ("all", False)},
    "delete": {"force": ("force", False), "f": ("force", False)},
    "list": {"format": ("format", True), "f": ("format", True),
             "quiet": ("quiet", False), "q": ("quiet", False)},
    "spec": {"bundle": ("bundle", True), "b": ("bundle", True),
             "rootless": ("rootless", False)},
    "features": {},
}
GLOBAL = {
    "root": ("root", True), "log": ("log", True), "log-format": ("log_format", True),
    "debug": ("debug", False), "systemd-cgroup": ("systemd_cgroup", False),
    "criu": ("criu", True), "rootless": ("rootless", True),
    "version": ("version", False), "v": ("version", False),
    "help": ("help", False), "h": ("help", False),
}
USAGE = """usage: hutch-runtime [global options] command [command options] [arguments...]

commands: create, start, run, exec, state, kill, delete, list, ps, pause, resume,
          update, events, spec, features
global options: --root DIR --log FILE --log-format text|json --debug --systemd-cgroup
"""
_ARGS = {"ps": "ID [ps options]", "pause": "ID", "resume": "ID", "update": "ID",
         "events": "ID", "exec": "ID [COMMAND ARGS...]", "create": "ID", "run": "ID", "start": "ID", "state": "ID", "kill": "ID [SIGNAL]",
         "delete": "ID", "list": "", "spec": "", "features": ""}


class UsageError(Exception):
    pass


def _parse_flags(argv: list[str], table: dict, opts: dict) -> list[str]:
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[i + 1:]
        if not a.startswith("-") or a == "-":
            return argv[i:]
        name, eq, value = a.lstrip("-").partition("=")
        if name not in table:
            raise UsageError(f"flag provided but not defined: -{name}")
        dest, takes = table[name]
        if takes == "list":
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            opts.setdefault(dest, []).append(value)
        elif takes:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            opts[dest] = value
        else:
            opts[dest] = value.lower() not in ("false", "0") if eq else True
        i += 1
    return []


class Logger:
    def __init__(self, path: str | None, fmt: str) -> None:
        self.path = path
        self.fmt = fmt or "text"

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        import json
        import time

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": now})
        else:
            line = f'time="{now}" level={level} msg="{msg}"'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self._write("error", msg)
        sys.stderr.write(msg + "\n")

    def warn(self, msg: str) -> None:
        self._write("warning", msg)
        sys.stderr.write(f"warning: {msg}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    g: dict = {}
    log = Logger(None, "text")
    cmd = ""
    try:
        rest = _parse_flags(argv, GLOBAL, g)
        log = Logger(g.get("log"), g.get("log_format", "text"))
        if g.get("version"):
            print(f"hutch-runtime version {VERSION}\nspec: {SPEC_VERSION}")
            return 0
        if not rest or g.get("help"):
            sys.stdout.write(USAGE)
            return 0 if g.get("help") or not rest else 1
        cmd, rest = rest[0], rest[1:]
        if cmd not in COMMANDS:
            raise UsageError(f"No help topic for '{cmd}'")
        if rest and rest[0] in ("-h", "--help"):
            print(f"usage: hutch-runtime {cmd} [command options] {_ARGS[cmd]}\n"
                  f"options: {' '.join('--' + k for k in COMMANDS[cmd] if len(k) > 1)}")
            return 0
        opts: dict = {}
        args = _parse_flags(rest, COMMANDS[cmd], opts)
        return _dispatch(cmd, g, opts, args, log)
    except UsageError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, never a traceback
        from hutch.errors import HutchError

        if isinstance(e, HutchError):
            msg = str(e)
            if e.hint:
                msg += f" ({e.hint})"
        elif isinstance(e, OSError):
            msg = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        else:
            msg = f"internal error: {e.__class__.__name__}: {e}"
        if g.get("debug"):
            import traceback

            traceback.print_exc()
        log.error(msg)
        return 255 if cmd == "exec" else 1  # runc exec exits -1 on its own errors


def _need_id(cmd: str, args: list[str], extra: int = 0) -> str:
    if not args:
        raise UsageError(f'"{cmd}" requires a minimum of 1 argument')
    if len(args) > 1 + extra:
        raise UsageError(f'"{cmd}" requires a maximum of {1 + extra} argument(s)')
    return args[0]


def _root(g: dict) -> str:
    root = g.get("root")
    if root:
        return os.path.abspath(root)
    return os.path.join(os.environ.get("HUTCH_RUN", "/run/hutch"), "runtime")


def _json(obj: object, indent: int | None = None) -> str:
    if indent is None:
        from hutch.util import fastjson

        return fastjson.dumps(obj)
    import json  # pretty output only: json pulls in re and enum (~5 ms)

    return json.dumps(obj, indent=indent)


def _dispatch(cmd: str, g: dict, opts: dict, args: list[str], log: Logger) -> int:
    if cmd == "spec":
        return _spec(opts)
    if cmd == "features":
        print(_json(_features(), indent=2))
        return 0
    from hutch.runtime.container import Runtime

    rt = Runtime(_root(g), systemd_cgroup=bool(g.get("systemd_cgroup")), warn=log.warn)
    if cmd == "list":
        states = rt.list()
        if opts.get("format") == "json":
            print(_json(states))
        elif opts.get("quiet"):
            for s in states:
                print(s["id"])
        else:
            print(f"{'ID':<12}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<32}OWNER")
            for s in states:
                print(f"{s['id']:<12}{s['pid']:<10}{s['status']:<10}{s['bundle']:<40}"
                      f"{s['created']:<32}{s['owner'] or 'root'}")
        return 0
    if cmd == "kill":
        cid = _need_id(cmd, args, extra=1)
        sig = parse_signal(args[1] if len(args) > 1 else "SIGTERM")
        rt.kill(cid, sig, all_processes=bool(opts.get("all")))
        return 0
    if cmd == "exec":
        if not args:
            raise UsageError('"exec" requires a minimum of 1 argument')
        return rt.exec(
            args[0], process_file=opts.get("process"), args=args[1:], cwd=opts.get("cwd"),
            env=opts.get("env"), user=opts.get("user"), caps=opts.get("cap"),
            tty=bool(opts.get("tty")), no_new_privs=bool(opts.get("no_new_privs")),
            detach=bool(opts.get("detach")), pid_file=opts.get("pid_file"),
            console_socket=opts.get("console_socket"),
            preserve_fds=int(opts.get("preserve_fds") or 0),
            additional_gids=[_int_flag("additional-gids", g) for g in opts.get("gids") or ()])
    if cmd == "ps":
        if not args:
            raise UsageError('"ps" requires a minimum of 1 argument')
        return _ps(rt, args[0], args[1:], opts.get("format") or "table")
    cid = _need_id(cmd, args)
    if cmd == "pause":
        rt.pause(cid)
        return 0
    if cmd == "resume":
        rt.resume(cid)
        return 0
    if cmd == "update":
        rt.update(cid, _update_resources(opts))
        return 0
    if cmd == "events":
        def emit(event: dict) -> None:
            sys.stdout.write(_json(event) + "\n")
            sys.stdout.flush()

        rt.events(cid, interval=parse_duration(opts.get("interval") or "5s"),
                  stats_only=bool(opts.get("stats")), emit=emit)
        return 0
    if cmd == "state":
        print(_json(rt.state(cid), indent=2))
        return 0
    if cmd == "start":
        rt.start(cid)
        return 0
    if cmd == "delete":
        rt.delete(cid, force=bool(opts.get("force")))
        return 0
    preserve = int(opts.get("preserve_fds") or 0)
    common = dict(pid_file=opts.get("pid_file"), console_socket=opts.get("console_socket"),
                  no_pivot=bool(opts.get("no_pivot")), preserve_fds=preserve)
    bundle = opts.get("bundle") or os.getcwd()
    if cmd == "create":
        rt.create(cid, bundle, **common)
        return 0
    if cmd == "run":
        return rt.run(cid, bundle, detach=bool(opts.get("detach")), keep=bool(opts.get("keep")),
                      **common)
    raise UsageError(f"unknown command {cmd}")


def _int_flag(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"invalid value {value!r} for --{name}") from None


def _ps(rt, cid: str, ps_args: list[str], fmt: str) -> int:
    pids = rt.pids(cid)
    if fmt == "json":
        print(_json(pids or None))  # Go marshals runc's empty (nil) list as null
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option: {fmt}")
    from hutch.errors import FailedPrecondition
    from hutch.runtime.ps import host_ps_lines

    try:
        lines = host_ps_lines(pids, ps_args)
    except FailedPrecondition as e:
        raise UsageError(str(e)) from None
    for line in lines:
        print(line)
    return 0


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
               "p": 1 << 50}


def parse_size(text: str) -> int:
    """docker's RAMInBytes: 1024-based, case-insensitive units (k, m, g, ...), optional
    trailing "b"/"ib"; "-1" means unlimited."""
    t = text.strip().lower()
    if t.lstrip("-").isdigit():
        return int(t)
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix) and not t[-len(suffix) - 1].isdigit():
            t = t[: -len(suffix)]
            break
    num, unit = t[:-1], t[-1:]
    if unit not in _SIZE_UNITS or not num:
        raise UsageError(f"invalid size: {text!r}")
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"invalid size: {text!r}") from None
    if value < 0:
        raise UsageError(f"invalid size: {text!r}")
    return int(value * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "100ms", "1m30s") in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}
    t = text.strip()
    total, i = 0.0, 0
    if not t:
        raise UsageError("invalid duration ''")
    while i < len(t):
        j = i
        while j < len(t) and (t[j].isdigit() or t[j] == "."):
            j += 1
        k = j
        while k < len(t) and not (t[k].isdigit() or t[k] == "."):
            k += 1
        num, unit = t[i:j], t[j:k]
        if not num or unit not in units:
            raise UsageError(f"invalid duration {text!r}")
        total += float(num) * units[unit]
        i = k
    if total <= 0:
        raise UsageError(f"invalid duration {text!r}: must be positive")
    return total


def _update_resources(opts: dict) -> dict:
    """runc update's flags (or --resources FILE|-) as OCI linux.resources."""
    if opts.get("resources"):
        from hutch.util import fastjson

        src = opts["resources"]
        try:
            text = sys.stdin.read() if src == "-" else open(src).read()
            res = fastjson.loads(text)
        except OSError as e:
            raise UsageError(f"--resources {src}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"--resources {src}: invalid JSON: {e}") from None
        if not isinstance(res, dict):
            raise UsageError(f"--resources {src}: must be a JSON object")
        return res

    def num(key: str) -> int | None:
        v = opts.get(key)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise UsageError(f"invalid value for --{key.replace('_', '-')}: {v!r}") from None

    def size(key: str) -> int | None:
        v = opts.get(key)
        return None if v is None else parse_size(v)

    res: dict = {}
    mem = {k: v for k, v in (("limit", size("memory")),
                             ("reservation", size("memory_reservation")),
                             ("swap", size("memory_swap")),
                             ("kernel", size("kernel_memory")),
                             ("kernelTCP", size("kernel_memory_tcp"))) if v is not None}
    if mem:
        res["memory"] = mem
    cpu = {k: v for k, v in (("shares", num("cpu_share")), ("quota", num("cpu_quota")),
                             ("period", num("cpu_period")),
                             ("realtimeRuntime", num("cpu_rt_runtime")),
                             ("realtimePeriod", num("cpu_rt_period"))) if v is not None}
    for key, field in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if opts.get(key) is not None:
            cpu[field] = opts[key]
    if cpu:
        res["cpu"] = cpu
    if num("blkio_weight") is not None:
        res["blockIO"] = {"weight": num("blkio_weight")}
    if num("pids_limit") is not None:
        res["pids"] = {"limit": num("pids_limit")}
    if not res:
        raise UsageError("update: nothing to update (give --resources or a limit flag)")
    return res


def parse_signal(text: str) -> int:
    """'KILL', 'SIGKILL', '9', 'RTMIN+3' -> number. Uses _signal's plain ints: the signal
    module would build its enums (~4 ms) on every kill."""
    import _signal as signal

    t = text.strip()
    if t.isdigit():
        n = int(t)
        if 0 < n < 65:
            return n
        raise UsageError(f"unknown signal {text!r}")
    name = t.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base, _, off = name.partition("+" if "+" in name else "-")
        if off.isdigit():
            n = signal.SIGRTMIN + int(off) if "+" in name else signal.SIGRTMAX - int(off)
            return int(n)
    sig = getattr(signal, name, None)
    if not isinstance(sig, int) or name.startswith("SIG_") or not 0 < sig < 65:
        raise UsageError(f"unknown signal {text!r}")
    return sig


def _spec(opts: dict) -> int:
    import json

    from hutch.oci.spec import default_spec

    bundle = opts.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise UsageError("File config.json exists. Remove it first.")
    with open(path, "w") as f:
        json.dump(default_spec(rootless=bool(opts.get("rootless"))), f, indent="\t")
    return 0


def _features() -> dict:
    from hutch.linux import caps

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
                         "exec", "iversion", "lazytime", "loud", "mand", "noatime", "nodev",
                         "nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
                         "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
                         "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
                         "rslave", "runbindable", "rw", "shared", "silent", "slave",
                         "strictatime", "suid", "symfollow", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts",
                           "time"],
            "capabilities": list(caps.CAP_NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": f"hutch-runtime {VERSION}"},
    }


if __name__ == "__main__":
    sys.exit(main())
