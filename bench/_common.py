"""What the benchmarks that run containers (bench/run, bench/network) share: hutch and
podman each with its state in a temporary directory, subprocess helpers, the busybox
image on a registry on 127.0.0.1, interleaved timing rounds, and `guarded`, which runs a
benchmark and then undoes, on success, failure or Ctrl-C, whatever the tools left
outside their temp dirs.

A script imports it as `_common` (its own directory, bench/, is first on sys.path), then
calls use_venv() before importing registry_fixtures. Standard library only at module
level: it is imported before the script has re-executed itself in the virtualenv.

podman's rlimits must stay within the hard limits of this machine (no CAP_SYS_RESOURCE:
see DESIGN.md "Facts about these machines"); podman 4.3 lowers its own nproc hard limit
to 32768 at start, so that is the most it may ask for. podman 4.3 keeps netavark's IPAM
database in /run/containers/networks whatever the configuration says; the directory is
removed afterwards if it did not exist before.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(HERE, ".venv", "bin", "python")
HUTCH = os.path.join(HERE, ".venv", "bin", "hutch")
REPO = "bench/busybox:latest"
IDLE_NAME = "hbench-idle"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def use_venv() -> None:
    """Re-execute the calling script in the project's virtualenv (registry_fixtures needs
    pytest, bench/network hutch.linux), and make tests/integration importable."""
    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(HERE, ".venv")) \
            and os.path.exists(VENV_PY):
        os.execv(VENV_PY, [VENV_PY, *sys.argv])
    sys.path.insert(0, os.path.join(HERE, "tests", "integration"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_cmd(argv: list[str], env: dict | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
    # A session of its own: a Ctrl-C reaches only us; subprocess.run kills the child then.
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                       stdin=subprocess.DEVNULL, start_new_session=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {r.returncode}: "
                           f"{r.stderr.strip()[-800:]}")
    return r


def timed_run(argv: list[str], env: dict | None = None,
              capture: bool = False) -> tuple[float, str]:
    """Wall time of `argv` in seconds, and its stdout if `capture`; raises if it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                       timeout=120, start_new_session=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {r.returncode}: "
                           f"{r.stderr.decode(errors='replace').strip()[-800:]}")
    return dt, (r.stdout or b"").decode(errors="replace")


def timed(argv: list[str], env: dict | None = None) -> float:
    return timed_run(argv, env)[0]


def interleaved(keys: list, runs: int, measure: Callable[[object], object],
                describe: Callable[[object], str]) -> dict:
    """{key: [measure(key) per round]} over `runs` rounds: every key once per round, the
    order rotating between rounds, so machine noise hits all alike. A measurement is
    milliseconds, or a tuple of them; each round is logged."""
    def ms(v) -> str:
        return "/".join(f"{x:.0f}" for x in (v if isinstance(v, tuple) else (v,)))

    times: dict = {k: [] for k in keys}
    for i in range(runs):
        k = i % len(keys)
        for key in keys[k:] + keys[:k]:
            times[key].append(measure(key))
        log(f"round {i + 1}/{runs}: " + ", ".join(
            f"{describe(key)} {ms(v[-1])}ms" for key, v in times.items()))
    return times


# -- the tools ---------------------------------------------------------------------------

class Tool:
    """What the benchmarks ask of a docker-like CLI (`cmd` builds its argv)."""

    def cmd(self, *args: str) -> list[str]:
        raise NotImplementedError

    def run_argv(self, ref: str, network: str | None, *argv: str) -> list[str]:
        net = ["--network", network] if network else []
        return self.cmd("run", "--rm", *net, ref, *(argv or ["true"]))

    def detached_argv(self, ref: str, network: str | None, *argv: str) -> list[str]:
        net = ["--network", network] if network else []
        return self.cmd("run", "-d", *net, ref, *argv)


class Hutch(Tool):
    name = "hutch"

    def __init__(self, base: str) -> None:
        self.root = os.path.join(base, "hutch-root")
        self.run_dir = os.path.join(base, "hutch-run")
        self.env = dict(os.environ)
        self.env.pop("HUTCH_ROOT", None)
        self.env.pop("HUTCH_RUN", None)
        self.ids: list[str] = []  # container ids seen: their cgroups may be removed

    def cmd(self, *args: str) -> list[str]:
        return [HUTCH, "--root", self.root, "--run", self.run_dir, *args]

    def available(self) -> bool:
        return os.path.exists(HUTCH) and run_cmd(self.cmd("run", "--help"), self.env,
                                                 check=False).returncode == 0

    def pull(self, ref: str) -> None:
        run_cmd(self.cmd("pull", "-q", ref), self.env, timeout=300)

    def rm_argv(self, ref: str) -> list[str]:
        return self.cmd("rm", "-f", ref)

    def start_idle(self, ref: str) -> int:
        run_cmd(self.cmd("run", "-d", "--name", IDLE_NAME, ref, "sleep", "1000"), self.env)
        doc = json.loads(run_cmd(self.cmd("inspect", IDLE_NAME), self.env).stdout)
        self.ids.append(doc[0].get("Id", ""))
        return int(doc[0]["State"]["MonitorPid"])

    def cleanup(self) -> None:
        if not os.path.exists(HUTCH) or not os.path.isdir(self.root):
            return
        r = run_cmd(self.cmd("ps", "-aq", "--no-trunc"), self.env, timeout=60, check=False)
        if r.returncode != 0:
            r = run_cmd(self.cmd("ps", "-aq"), self.env, timeout=60, check=False)
        ids = r.stdout.split() if r.returncode == 0 else []
        self.ids += ids
        for ref in dict.fromkeys([IDLE_NAME, *ids]):
            run_cmd(self.cmd("rm", "-f", ref), self.env, timeout=60, check=False)


class Podman(Tool):
    name = "podman"

    def __init__(self, base: str) -> None:
        d = os.path.join(base, "p")  # short: podman's runroot may not exceed 50 characters
        self.dir = d
        for sub in ("tmp", "net", "volumes"):
            os.makedirs(os.path.join(d, sub))
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
        if nofile == resource.RLIM_INFINITY:
            nofile = 1048576
        with open(os.path.join(d, "containers.conf"), "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[network]
network_config_dir = "{d}/net"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{d}/tmp"
volume_path = "{d}/volumes"
""")
        with open(os.path.join(d, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/root"\n'
                    f'runroot = "{d}/rr"\n')
        self.env = {"PATH": HOST_PATH, "HOME": d,
                    "CONTAINERS_CONF": os.path.join(d, "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": os.path.join(d, "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": os.path.join(d, "registries.conf"),
                    "REGISTRY_AUTH_FILE": os.path.join(d, "auth.json")}
        self.ids: list[str] = []
        with open(self.env["REGISTRY_AUTH_FILE"], "w") as f:
            f.write("{}")

    def configure_registry(self, host: str) -> None:
        with open(self.env["CONTAINERS_REGISTRIES_CONF"], "w") as f:
            f.write(f'unqualified-search-registries = []\n\n[[registry]]\n'
                    f'location = "{host}"\ninsecure = true\n')

    def cmd(self, *args: str) -> list[str]:
        return ["podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/rr",
                "--storage-driver", "overlay", "--cgroup-manager=cgroupfs",
                "--events-backend=file", *args]

    def pull(self, ref: str) -> None:
        run_cmd(self.cmd("pull", "--quiet", "--tls-verify=false", ref), self.env, timeout=300)

    def rm_argv(self, ref: str) -> list[str]:
        return self.cmd("rm", "-f", "-t", "0", ref)  # -t 0: SIGKILL, as hutch rm -f

    def start_idle(self, ref: str) -> int:
        run_cmd(self.cmd("run", "-d", "--name", IDLE_NAME, ref, "sleep", "1000"), self.env)
        out = run_cmd(self.cmd("inspect", "--format", "{{.State.ConmonPid}} {{.Id}}",
                               IDLE_NAME), self.env).stdout.split()
        self.ids.append(out[1])
        return int(out[0])

    def cleanup(self) -> None:
        if os.path.isdir(os.path.join(self.dir, "root")):
            r = run_cmd(self.cmd("ps", "-aq", "--no-trunc"), self.env, timeout=60,
                        check=False)
            self.ids += r.stdout.split() if r.returncode == 0 else []
            run_cmd(self.cmd("rm", "-af", "-t", "0"), self.env, timeout=120, check=False)


@contextmanager
def busybox_image(base: str, tools: list) -> Iterator[tuple[str, object]]:
    """A registry on 127.0.0.1 serving busybox-static as REPO, pulled into each tool's
    store; yields (reference, registry_fixtures.BuiltImage). The registry stops after."""
    import registry_fixtures as rf

    with rf.start_registry() as reg:
        image = rf.build_busybox_layout(Path(base) / "layout")
        rf.skopeo_copy(image.layout, image.tag, reg, REPO)
        ref = f"{reg.host}/{REPO}"
        for tool in tools:
            if isinstance(tool, Podman):
                tool.configure_registry(reg.host)
            log(f"pulling {ref} into {tool.name}'s store")
            tool.pull(ref)
        yield ref, image


# -- /proc and host state ----------------------------------------------------------------

def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def pids_with_argv(needle: str) -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me
            and any(needle in a for a in cmdline(int(p)))]


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def mountpoints_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return out


def cgroup_dirs() -> set[str]:
    dirs = set()
    for ctl in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", ctl)
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, _ in os.walk(top):
            if dirpath.count("/") - top.count("/") >= 4:
                dirnames[:] = []
            dirs.add(dirpath)
    return dirs


def fw_rules() -> dict[tuple[str, str], list[str]]:
    rules = {}
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        for table in ("filter", "nat"):
            r = run_cmd([tool, "-w", "-t", table, "-S"], check=False)
            if r.returncode == 0:
                rules[(tool, table)] = r.stdout.splitlines()
    return rules


def nft_tables() -> set[str]:
    if not shutil.which("nft"):
        return set()
    r = run_cmd(["nft", "list", "tables"], check=False)
    return set(r.stdout.splitlines()) if r.returncode == 0 else set()


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@dataclass
class HostState:
    """What the tools may change outside their temp dirs, noted before they run."""

    cgroups: set[str] = field(default_factory=cgroup_dirs)
    fw: dict = field(default_factory=fw_rules)
    nft: set[str] = field(default_factory=nft_tables)
    links: set[str] = field(default_factory=links)
    netns: set[str] = field(default_factory=lambda: set(
        os.listdir("/run/netns") if os.path.isdir("/run/netns") else []))
    ip_forward: str | None = field(
        default_factory=lambda: read_text("/proc/sys/net/ipv4/ip_forward"))
    netavark_run: bool = field(
        default_factory=lambda: os.path.exists("/run/containers/networks"))


def restore_host(before: HostState, base: str, ids: Callable[[], list[str]],
                 cgroup_prefixes: tuple[str, ...] = ("libpod_parent",)) -> list[str]:
    """Undo what the tools left outside their temp dirs; returns what could not be undone.
    Besides the cgroups named after a container in ids(), the new ones whose path under a
    controller starts with one of `cgroup_prefixes` are the tools' own."""
    problems = []
    # processes still running with our temp dir in their argv (monitors, conmon, shims):
    # after an interrupt, a `run --rm` monitor may still be tearing its container down
    deadline = time.monotonic() + 10
    while pids_with_argv(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids_with_argv(base):
        kill(pid)
    # mounts under the temp dir (podman's overlay, rootfs mounts, netns bind mounts)
    for _ in range(3):
        mps = mountpoints_under(base)
        if not mps:
            break
        for mp in sorted(mps, key=len, reverse=True):
            if run_cmd(["umount", mp], check=False).returncode != 0:
                run_cmd(["umount", "-l", mp], check=False)
    # podman's network namespaces (/run/netns/netns-UUID)
    if os.path.isdir("/run/netns"):
        for name in set(os.listdir("/run/netns")) - before.netns:
            if name.startswith("netns-"):
                path = os.path.join("/run/netns", name)
                run_cmd(["umount", path], check=False)
                try:
                    os.unlink(path)
                except OSError as e:
                    problems.append(f"{path}: {e}")
    # cgroups: podman's libpod_parent, our ctr namespace, anything named after a container
    known = ids()
    deadline = time.monotonic() + 5  # hutch removes a container's cgroups as it goes
    while any("/hutch/" in d for d in cgroup_dirs() - before.cgroups) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    new = sorted(cgroup_dirs() - before.cgroups, key=lambda p: p.count("/"), reverse=True)
    for d in new:
        rel = d.split("/", 5)[-1] if d.count("/") >= 5 else ""
        if rel == "hutch":  # hutch's parent, shared with any other hutch: only if empty
            try:
                os.rmdir(d)
            except OSError:
                pass
            continue
        if not (rel.startswith(cgroup_prefixes) or any(i and i in rel for i in known)):
            if rel.startswith("hutch/"):
                problems.append(f"cgroup left: {d} (ours, or of another hutch running now)")
            continue
        for pid in (read_text(os.path.join(d, "cgroup.procs")) or "").split():
            kill(int(pid))
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
        else:
            problems.append(f"cgroup {d} not removed")
    # netavark's iptables rules and chains (the container's own ones go with it)
    after = fw_rules()
    for (tool, table), lines in after.items():
        old = set(before.fw.get((tool, table), []))
        for line in lines:
            if line in old or not line.startswith("-A ") or "NETAVARK" not in line:
                continue
            if not line.split()[1].startswith("NETAVARK"):
                run_cmd([tool, "-w", "-t", table, "-D", *shlex.split(line)[1:]], check=False)
        chains = [ln.split()[1] for ln in lines
                  if ln.startswith("-N NETAVARK") and ln not in old]
        for c in chains:
            run_cmd([tool, "-w", "-t", table, "-F", c], check=False)
        for c in chains:
            run_cmd([tool, "-w", "-t", table, "-X", c], check=False)
    for table in nft_tables() - before.nft:
        # made by iptables-nft for netavark: drop it when nothing but empty chains is left
        r = run_cmd(["nft", "list", *table.split()], check=False)
        body = [ln.strip() for ln in r.stdout.splitlines()]
        if r.returncode == 0 and not any(
                ln and not ln.startswith(("table ", "chain ", "type ", "}")) for ln in body):
            run_cmd(["nft", "delete", *table.split()], check=False)
    for link in links() - before.links:
        if link == "podman0":
            run_cmd(["ip", "link", "delete", link], check=False)
    if before.ip_forward is not None and read_text("/proc/sys/net/ipv4/ip_forward") \
            != before.ip_forward:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(before.ip_forward)
    if not before.netavark_run and os.path.isdir("/run/containers/networks"):
        shutil.rmtree("/run/containers/networks", ignore_errors=True)
        try:
            os.rmdir("/run/containers")
        except OSError:
            pass
    # what is still there: report, do not guess further
    problems += [f"mount left: {m}" for m in mountpoints_under(base)]
    problems += [f"new network link left: {ln}" for ln in sorted(links() - before.links)]
    fw_after = fw_rules()
    for key, lines in fw_after.items():
        for ln in sorted(set(lines) - set(before.fw.get(key, []))):
            problems.append(f"{key[0]} -t {key[1]}: rule left: {ln}")
    return problems


# -- running a benchmark -----------------------------------------------------------------

def guarded(body: Callable[[str, list], None],
            cgroup_prefixes: tuple[str, ...] = ("libpod_parent",)) -> int:
    """Run body(base, everyone) with `base` a fresh temp dir; `body` appends each tool
    to `everyone` as soon as it exists. Then, however body ended, every tool's cleanup()
    and restore_host(). Ctrl-C and SIGTERM stop the body, never the cleanup. Returns the
    exit status: 0, 1 (a tool failed) or 130 (interrupted)."""
    # SIGINT may come in ignored (started in the background by a shell): take it anyway.
    sigs = {"cleaning": False, "interrupted": False}

    def on_signal(signum: int, frame: object) -> None:
        sigs["interrupted"] = True
        if not sigs["cleaning"]:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    before = HostState()
    base = tempfile.mkdtemp(prefix="hbr-", dir="/tmp")  # short: sockets, podman's runroot
    everyone: list = []
    rc = 0
    try:
        body(base, everyone)
    except KeyboardInterrupt:
        rc = 130
    except RuntimeError as e:  # a tool failed, or was hit by the same Ctrl-C first
        rc = 130 if sigs["interrupted"] else 1
        if not sigs["interrupted"]:
            log(f"error: {e}")
    finally:
        sigs["cleaning"] = True
        if sigs["interrupted"]:
            log("interrupted: cleaning up")
        problems: list[str] = []
        for tool in everyone:
            try:
                tool.cleanup()
            except Exception as e:  # noqa: BLE001 - go on cleaning the others
                problems.append(f"{tool.name} cleanup: {e}")
        problems += restore_host(before, base, lambda: [i for t in everyone for i in t.ids],
                                 cgroup_prefixes)
        if not mountpoints_under(base):
            shutil.rmtree(base, ignore_errors=True)
        else:
            problems.append(f"{base} kept: mounts left under it")
        for p in problems:
            log(f"warning: {p}")
    return rc


def _users_of_netns(ino: int) -> tuple[list[int], list[str]]:
    """Processes and mount points that still hold the namespace with inode `ino`."""
    me = os.getpid()
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != me:
            try:
                if os.readlink(f"/proc/{p}/ns/net") == f"net:[{ino}]":
                    pids.append(int(p))
            except OSError:
                pass
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split()[4] for ln in f if ln.split()[3] == f"net:[{ino}]"]
    return pids, mounts


def in_own_netns(body: Callable[[], int]) -> int:
    """Run `body` with this (single-threaded) process, and all it spawns, in a new
    network namespace with lo up: the registry, the tools' bridges, veths and firewall
    rules live and die there, and the host's network is never touched. Afterwards,
    anything still holding the namespace is reported and killed."""
    from hutch.linux import libc

    host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    libc.unshare(libc.CLONE_NEWNET)
    ino = os.stat("/proc/thread-self/ns/net").st_ino
    try:
        run_cmd(["ip", "link", "set", "lo", "up"])
        rc = body()
    finally:
        libc.setns(host_ns, libc.CLONE_NEWNET)
        os.close(host_ns)
    pids, mounts = _users_of_netns(ino)
    for pid in pids:  # only what we started can be in there
        log(f"warning: process {pid} ({' '.join(cmdline(pid))[:100]}) was left in "
            "the benchmark's namespace: killed")
        kill(pid)
    for m in mounts:
        log(f"warning: the benchmark's namespace is still mounted at {m}")
    return rc
