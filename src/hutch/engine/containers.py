"""Containers, daemonless: create, start, stop, kill, remove, pause, exec, wait.

Every hutch command is its own short-lived process; what must outlive it lives in
  {root}/containers.db            the records (hutch.engine.store, SQLite WAL)
  {root}/containers/<id>/         persistent files: <id>-json.log (+ rotated .1 .2 ...)
  {run}/containers/<id>/          the bundle (config.json, rootfs/ mount point), the
                                  monitor's lock, pid file and attach socket, `stopping`
  {run}/runtime/<id>/             hutch-runtime's state (driven as a library)
and in one monitor process per running container (hutch.engine.monitor), forked from
the command that starts it. The monitor holds the container's stdio, writes its logs,
reaps its init, records the exit and applies --rm and the restart policy.

Truth after crashes: the monitor holds an exclusive flock on its `monitor.lock` for as long
as it lives, so "is the monitor alive" is one non-blocking flock, immune to pid reuse.
`get()`/`list()` reconcile records that say running with that and with the runtime's own
view (which checks the init's pid *and* start time): a container whose monitor died keeps
running (`stop`, `rm` still work); one whose monitor and init are both gone is marked
exited (code 255: nobody was there to reap it) and cleaned up.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress

from hutch.engine import cgparent
from hutch.engine.cgparent import PARENT as CGROUP_PARENT
from hutch.engine.paths import ContainerPaths
from hutch.engine.spec import RunOptions
from hutch.engine.store import ACTIVE_STATES, ContainerRecord, ContainerStore
from hutch.errors import (
    FailedPrecondition,
    HutchError,
    InvalidArgument,
    NotFound,
)
from hutch.util.record import asdict, field, fields, record

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

SNAPSHOT_PREFIX = "container-"
DEFAULT_LOG_MAX_SIZE = 10 << 20
DEFAULT_LOG_MAX_FILE = 3
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
TINI_PATHS = ("/usr/bin/tini-static", "/usr/bin/docker-init")


@record
class CreateOptions:
    """`docker create` beyond the spec: what the engine itself acts on."""

    image: str
    run: RunOptions = field(default_factory=RunOptions)
    name: str = ""
    volumes: list[str] = field(default_factory=list)  # -v
    mounts: list[str] = field(default_factory=list)  # --mount
    auto_remove: bool = False
    restart: str = "no"
    pull: str = "missing"
    stop_timeout: int | None = None
    log_opts: dict[str, str] = field(default_factory=dict)
    platform: str | None = None
    net: Any = None  # hutch.engine.networking.NetOptions; None: from run.network
    expose: list[str] = field(default_factory=list)  # --expose PORT[/PROTO]


def parse_restart(text: str) -> dict:
    """docker's --restart: no | on-failure[:N] | always | unless-stopped."""
    name, sep, count = (text or "no").partition(":")
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {text!r}",
                              hint="no, on-failure[:max-retries], always or unless-stopped")
    retries = 0
    if sep:
        if name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {text!r}: maximum retry count "
                                  "can only be used with 'on-failure'")
        try:
            retries = int(count)
        except ValueError:
            raise InvalidArgument(f"invalid restart policy {text!r}: bad retry count") from None
        if retries < 0:
            raise InvalidArgument(f"invalid restart policy {text!r}: "
                                  "maximum retry count cannot be negative")
    return {"Name": name, "MaximumRetryCount": retries}


def _log_config(opts: dict[str, str]) -> dict:
    from hutch.engine.spec import parse_bytes

    out = {"max-size": DEFAULT_LOG_MAX_SIZE, "max-file": DEFAULT_LOG_MAX_FILE}
    for key, value in opts.items():
        if key == "max-size":
            out["max-size"] = max(0, parse_bytes(value, "log-opt max-size"))
        elif key == "max-file":
            try:
                out["max-file"] = int(value)
            except ValueError:
                raise InvalidArgument(f"invalid log-opt max-file: {value!r}") from None
            if out["max-file"] < 1:
                raise InvalidArgument("log-opt max-file must be at least 1")
        else:
            raise InvalidArgument(f"unknown log opt {key!r} for the json-file log driver")
    return out


def effective_config(image, opts: RunOptions, image_ref: str, volumes: list[str]) -> dict:
    """docker's container Config: the image's defaults merged with the run options."""
    from hutch.engine.spec import _merge_env

    env = _merge_env(list(image.env), list(opts.env_file))
    env = _merge_env(env, list(opts.env))
    if opts.entrypoint is not None:
        entrypoint = list(opts.entrypoint) or None
        cmd = list(opts.cmd) or (None if opts.entrypoint else list(image.cmd or ()) or None)
    else:
        entrypoint = list(image.entrypoint) if image.entrypoint else None
        cmd = list(opts.cmd) or (list(image.cmd) if image.cmd else None)
    vols = {v: {} for v in image.volumes}
    vols.update({v: {} for v in volumes})
    return {
        "Hostname": opts.hostname, "User": opts.user or image.user,
        "Tty": opts.tty, "OpenStdin": opts.interactive, "Env": env, "Cmd": cmd,
        "Image": image_ref, "Volumes": vols or None,
        "WorkingDir": opts.workdir or image.working_dir, "Entrypoint": entrypoint,
        "Labels": {**image.labels, **opts.labels},
        "ExposedPorts": {p: {} for p in image.exposed_ports} or None,
        "StopSignal": opts.stop_signal or image.stop_signal or "SIGTERM",
    }


def import_for_run() -> None:
    """Import now what create() and start() import on first use: the image, content and
    snapshot stores, mounts, the /etc files. `run` calls it before it forks the
    container's monitor, which needs most of them too (at --rm): imported once, shared by
    both, instead of imported again by the monitor with a forked heap, where every
    object an import touches costs a copy-on-write fault."""
    from hutch.content import store as _content  # noqa: F401
    from hutch.image import metadata, service, unpack  # noqa: F401
    from hutch.mount import apply, mountinfo  # noqa: F401
    from hutch.network import etcfiles  # noqa: F401
    from hutch.oci import reference  # noqa: F401
    from hutch.snapshot import factory, fsutil, overlay  # noqa: F401


def _volatile_overlay(mounts: list) -> list:
    """`mounts` with the overlay one mounted `volatile`; [] if there is no overlay. An
    upper directory an earlier volatile mount marked (work/incompat/volatile, which
    makes the kernel refuse another mount; newer kernels put a file "dirty" in it) is
    unmarked first: --rm's writes are disposable whatever happened to them."""
    from hutch.mount import Mount
    from hutch.snapshot.fsutil import remove_tree

    out = []
    for m in mounts:
        workdir = m.option("workdir") if m.type == "overlay" else None
        if workdir:
            remove_tree(os.path.join(workdir, "work", "incompat", "volatile"))
            if "volatile" not in m.options:
                m = Mount(m.type, m.source, [*m.options, "volatile"])
        out.append(m)
    return out if any(m.type == "overlay" for m in mounts) else []


def _normalise_sizes(run: RunOptions) -> None:
    """--memory 64m is kept as bytes, as docker's HostConfig has it."""
    from hutch.engine.spec import parse_bytes

    if run.memory is not None:
        run.memory = parse_bytes(run.memory, "--memory")
    if run.memory_swap is not None:
        run.memory_swap = parse_bytes(run.memory_swap, "--memory-swap")


_RUN_FIELDS = frozenset(f.name for f in fields(RunOptions))


def _run_options_from(config: dict) -> RunOptions:
    data = dict(config.get("run") or {})
    return RunOptions(**{k: v for k, v in data.items() if k in _RUN_FIELDS})


class Engine:
    def __init__(self, settings, *, images=None, runtime=None, store=None) -> None:
        self.settings = settings
        os.makedirs(settings.root, mode=0o711, exist_ok=True)
        self._store: ContainerStore | None = store
        self._own_store = store is None
        self._images = images
        self._own_images = images is None
        self._runtime = runtime
        self._networking = None

    # -- plumbing -----------------------------------------------------------------------
    @property
    def store(self) -> ContainerStore:
        if self._store is None:
            self._store = ContainerStore(os.path.join(self.settings.root, "containers.db"))
        return self._store

    def close_connections(self) -> None:
        """Close every SQLite connection (they reopen on use). Required before fork():
        SQLite's POSIX locks live in per-process state a child must not inherit open."""
        if self._images is not None and self._own_images:
            self._images.close()
            self._images = None
        if self._store is not None:
            if self._own_store:
                self._store.close()
            self._store = None
            self._own_store = True
        if self._networking is not None:
            self._networking.close()
            self._networking = None

    @property
    def images(self):
        if self._images is None:
            from hutch.image.service import ImageService

            self._images = ImageService(self.settings)
        return self._images

    @property
    def networking(self):
        if self._networking is None:
            from hutch.engine.networking import Networking

            self._networking = Networking(self.settings)
        return self._networking

    @property
    def runtime(self):
        if self._runtime is None:
            from hutch.runtime.container import Runtime

            self._runtime = Runtime(self.settings.runtime_root)
        return self._runtime

    def close(self) -> None:
        self.close_connections()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def paths(self, rec: ContainerRecord | str) -> ContainerPaths:
        return ContainerPaths(self.settings, rec if isinstance(rec, str) else rec.id)

    # -- lookup -------------------------------------------------------------------------
    def get(self, ref: str) -> ContainerRecord:
        try:
            rec = self.store.get(ref)
        except NotFound:
            raise NotFound(f"No such container: {ref}", hint="hutch ps -a lists them") from None
        return self.reconcile(rec)

    def list(self, all: bool = False, filters=None) -> list[ContainerRecord]:
        recs = [self.reconcile(r) for r in self.store.list(all=True, filters=filters or {})]
        # moby's list.go: a status filter implies -a, no other filter does.
        if not (all or "status" in (filters or {}) or "exited" in (filters or {})):
            recs = [r for r in recs if r.state in ACTIVE_STATES]
        return recs

    def running(self, rec: ContainerRecord) -> bool:
        try:
            return self.get(rec.id).state in ACTIVE_STATES
        except NotFound:
            return False

    def monitor_alive(self, rec: ContainerRecord) -> bool:
        import fcntl

        try:
            fd = os.open(self.paths(rec).monitor_lock, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def runtime_status(self, rec: ContainerRecord) -> str:
        """hutch-runtime's status of the container: created, running, paused, stopped or
        "" when the runtime does not know it."""
        try:
            return self.runtime.state(rec.id).get("status", "")
        except (NotFound, HutchError, OSError, ValueError):
            return ""

    def reconcile(self, rec: ContainerRecord) -> ContainerRecord:
        if rec.state not in ACTIVE_STATES or self.monitor_alive(rec):
            return rec
        status = self.runtime_status(rec)
        if status in ("running", "paused", "created") and rec.state != "restarting":
            want = "paused" if status == "paused" else "running"
            if rec.state != want:
                with suppress(HutchError):
                    rec = self.store.update(rec.id, state=want)
            return rec  # orphaned but alive: stop and rm still work
        # Neither monitor nor process: nobody reaped it; finish what the monitor would have.
        oom = False
        if status:
            with suppress(HutchError, OSError, ValueError):
                oom = bool(self.runtime.state(rec.id).get("oomKilled"))
        self.release(rec)
        try:
            rec = self.store.update(rec.id, state="exited", exit_code=255, oom_killed=oom,
                                    finished_at=time.time(), pid=0,
                                    error="the container's monitor died; exit status unknown")
        except (NotFound, FailedPrecondition):
            return self.store.get(rec.id) if self._exists(rec.id) else rec
        if rec.config.get("auto_remove"):
            with suppress(HutchError, OSError):
                self.remove(rec.id, force=True, volumes=True)
        return rec

    def _exists(self, container_id: str) -> bool:
        try:
            self.store.get(container_id)
            return True
        except NotFound:
            return False

    # -- create -------------------------------------------------------------------------
    def resolve_image(self, ref: str, policy: str = "missing", platform: str | None = None,
                      progress=None):
        if policy not in ("missing", "always", "never"):
            raise InvalidArgument(f"invalid --pull value {policy!r}: missing, always or never")
        if policy == "always":
            return self._pull(ref, platform, progress)
        try:
            return self.images.lookup(ref)
        except NotFound:
            if policy == "never":
                raise NotFound(f"No such image: {ref}",
                               hint="--pull never: pull it first") from None
        return self._pull(ref, platform, progress)

    def _pull(self, ref: str, platform: str | None, progress):
        from hutch.image.pull import pull

        return pull(self.images, ref, platform=platform, progress=progress)

    def create(self, opts: CreateOptions, *, image=None, progress=None,
               container_id: str | None = None) -> ContainerRecord:
        """`container_id`: the id to give it (run's early monitor knows it already)."""
        run = opts.run
        restart = parse_restart(opts.restart)
        if opts.auto_remove and restart["Name"] != "no":
            raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
        log = _log_config(opts.log_opts)
        _normalise_sizes(run)
        if run.init and not run.init_path:
            run.init_path = next((p for p in TINI_PATHS if os.path.exists(p)), "")
            if not run.init_path:
                raise FailedPrecondition("--init needs tini (apt-get install tini)")
        net = opts.net
        if net is None:
            from hutch.engine.networking import parse_net_options

            net = parse_net_options(network=run.network)
        run.network = net.mode
        if run.network.startswith("container:") and not run.network.partition(":")[2]:
            raise InvalidArgument(f"invalid network mode {run.network!r}")
        from hutch.engine.networking import uses_bridge

        if uses_bridge(net.mode):
            self.networking.check_mode(net.mode)
        if opts.stop_timeout is not None and opts.stop_timeout < -1:
            raise InvalidArgument("--stop-timeout must be -1 or more")
        if image is None:
            image = self.resolve_image(opts.image, opts.pull, opts.platform, progress)
        rec = ContainerRecord(name=opts.name, image=opts.image, image_id=image.id,
                              labels={**image.config.labels, **run.labels},
                              **({"id": container_id} if container_id else {}))
        paths = self.paths(rec)
        rec = self.store.create(rec)  # reserves the name, atomically across processes
        created_volumes: list[str] = []
        try:
            os.makedirs(paths.root_dir, mode=0o710, exist_ok=True)
            # The image's content stays while the container exists, even if `rmi -f`
            # untags it (docker keeps it as <none>): a lease names it a GC root.
            self.images.meta.add_lease(SNAPSHOT_PREFIX + rec.id, [image.manifest.digest],
                                       None)
            top, _ = self.images.unpack(image)
            key = SNAPSHOT_PREFIX + rec.id
            self.images.snapshotter.prepare(key, top or None)
            run_dict = asdict(run)
            run_dict.pop("binds", None)
            needs_volumes = bool(opts.volumes or opts.mounts or image.config.volumes)
            # Volumes are resolved and the container recorded as their user under the
            # volume store's lock: a `volume prune` cannot take a fresh anonymous volume
            # in between.
            with self.volumes().lock() if needs_volumes else nullcontext():
                mounts, volumes, anonymous, copy_up, anon_targets = \
                    self._resolve_volumes(opts, image, rec.id)
                created_volumes = anonymous
                config = {
                    "run": run_dict, "mounts": mounts, "volumes": volumes,
                    "anonymous_volumes": anonymous, "copy_up": copy_up,
                    "effective": {**effective_config(image.config, run, opts.image,
                                                     anon_targets),
                                  "Hostname": run.hostname or (
                                      os.uname().nodename if run.network == "host"
                                      else rec.id[:12])}
                    | ({"StopTimeout": opts.stop_timeout}
                       if opts.stop_timeout is not None else {}),
                    "auto_remove": opts.auto_remove, "restart": restart,
                    "stop_timeout": opts.stop_timeout, "log": log,
                    "image_name": image.name,
                    "net": asdict(net),
                }
                exposed = dict(config["effective"].get("ExposedPorts") or {})
                for port in [*opts.expose, *(f"{p[3]}/{p[0]}" for p in net.publish)]:
                    exposed.update(dict.fromkeys(port_keys(port), {}))
                config["effective"]["ExposedPorts"] = exposed or None
                rec = self.store.update(rec.id, config=config, snapshot_key=key,
                                        log_path=paths.log_path)
            return rec
        except BaseException:
            self._destroy(rec, volumes=created_volumes)
            raise

    def _resolve_volumes(self, opts: CreateOptions, image, container_id: str):
        """-v/--mount and the image's VOLUMEs -> (OCI mounts, volume names, the anonymous
        ones, [volume dir, target] to fill from the image, -v /path targets)."""
        if not (opts.volumes or opts.mounts or image.config.volumes):
            return [], [], [], [], []
        from hutch.engine import volumes as vol

        specs = [vol.parse_volume_flag(v) for v in opts.volumes]
        specs += [vol.parse_mount_flag(m) for m in opts.mounts]
        resolved = vol.resolve_mounts(specs, list(image.config.volumes), self.volumes(),
                                      container_id=container_id)
        anon_targets = [s.target for s in specs
                        if s.flag == "-v" and s.type == "volume" and not s.source]
        return ([dict(m) for m in resolved.mounts], list(resolved.volumes),
                list(resolved.anonymous), [list(x) for x in resolved.copy_up], anon_targets)

    def volumes(self):
        from hutch.engine.volumes import VolumeStore

        return VolumeStore(os.path.join(self.settings.root, "volumes"))

    # -- start --------------------------------------------------------------------------
    def prepare_bundle(self, rec: ContainerRecord) -> dict:
        """Mount the rootfs (if it is not), fill fresh volumes, write config.json."""
        from hutch.engine.spec import generate_spec
        from hutch.util import fastjson

        paths = self.paths(rec)
        os.makedirs(paths.run_dir, mode=0o700, exist_ok=True)
        self.mount_rootfs(rec)
        run = _run_options_from(rec.config)
        run.binds = [dict(m) for m in rec.config.get("mounts") or []]
        if run.network.startswith("container:"):
            run.network = "container:" + self._network_of(run.network.partition(":")[2])
        from hutch.engine.networking import NetOptions, uses_bridge

        net = NetOptions(**(rec.config.get("net") or {"mode": run.network}))
        if uses_bridge(net.mode):
            state = self.networking.setup(
                rec, net, list((rec.config.get("effective") or {}).get("ExposedPorts") or ()))
            run.netns_path = state["netns"]
            rec = self.store.update(rec.id, network=state)
        image = self._image_config(rec)
        run.binds += self._etc_files(rec, run, paths, net)
        spec = generate_spec(image, run, rootfs=paths.rootfs, container_id=rec.id,
                             cgroups_path=f"/{CGROUP_PARENT}/{rec.id}",
                             passwd_root=paths.rootfs)
        copy_up = rec.config.get("copy_up") or []
        if copy_up:
            from hutch.engine.volumes import copy_up as do_copy_up

            for vol_dir, target in copy_up:
                do_copy_up(vol_dir, paths.rootfs, target)
            rec = self.store.update(rec.id, config={**rec.config, "copy_up": []})
        tmp = paths.config_json + ".tmp"
        with open(tmp, "w") as f:
            f.write(fastjson.dumps(spec))
        os.replace(tmp, paths.config_json)
        return spec

    def _etc_files(self, rec: ContainerRecord, run: RunOptions, paths, net) -> list[dict]:
        """docker's /etc/hostname, /etc/hosts and /etc/resolv.conf: files of the
        container's own, bind-mounted (unless the user mounts something there)."""
        from hutch.engine.networking import uses_bridge
        from hutch.network import etcfiles
        from hutch.util import fastjson

        host_net = run.network == "host"
        hostname = run.hostname or (os.uname().nodename if host_net else rec.id[:12])
        own: list[str] = []
        peers: list = []
        gateway = ""
        if uses_bridge(net.mode):
            own, peers = self.networking.hosts_entries(rec.id)
            nets = list((rec.network or {}).get("networks", {}).values())
            gateway = nets[0]["Gateway"] if nets else ""
        extra = [etcfiles.parse_add_host(h, gateway=gateway) for h in net.extra_hosts]
        hosts = etcfiles.hosts(hostname, own=own, extra=extra, peers=peers,
                               host_network=host_net)
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read()
        except OSError:
            resolv = ""
        resolv = etcfiles.resolv_conf(resolv, dns=net.dns, dns_search=net.dns_search,
                                      dns_options=net.dns_options, host_network=host_net)
        taken = {m.get("destination") for m in run.binds}
        out = []
        for name, text in (("hostname", hostname + "\n"), ("hosts", hosts),
                           ("resolv.conf", resolv)):
            dest = "/etc/" + name
            if dest in taken:
                continue
            path = os.path.join(paths.root_dir, name)
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            if name == "hosts":
                # What hutch.engine.networking needs to rewrite it when peers come and go.
                with open(path + ".json", "w") as f:
                    f.write(fastjson.dumps({"hostname": hostname,
                                            "extra": [list(x) for x in extra]}))
            out.append({"destination": dest, "type": "bind", "source": path,
                        "options": ["rbind", "rprivate", "ro" if run.read_only else "rw"]})
        return out

    def _network_of(self, ref: str) -> str:
        """--network container:<name|id>: the network namespace of that running one."""
        if ref.startswith("/"):
            return ref
        other = self.get(ref)
        if other.state not in ("running", "paused") or not other.pid:
            raise FailedPrecondition(f"cannot join the network of a non running container: "
                                     f"{ref}")
        return f"/proc/{other.pid}/ns/net"

    def _image_config(self, rec: ContainerRecord):
        from hutch.oci.image import ImageConfig

        data = self.images.content.read_bytes(rec.image_id, 16 << 20)
        return ImageConfig.parse(data)

    def mount_rootfs(self, rec: ContainerRecord) -> str:
        from hutch.mount import mount_all
        from hutch.mount.mountinfo import lookup

        paths = self.paths(rec)
        os.makedirs(paths.rootfs, mode=0o755, exist_ok=True)
        real = os.path.realpath(paths.rootfs)
        if lookup(real).mountpoint == real:
            return paths.rootfs
        mounts = self.snapshot_mounts(rec)
        # --rm: nothing of the container's writes outlives it, so its overlay skips the
        # syncs of the upper file system (podman does the same): unmounting a plain
        # overlay syncs all of ext4, ~1.5 ms at every `run --rm`. Kernels before 5.10
        # do not know the option: then without it.
        volatile = _volatile_overlay(mounts) if rec.config.get("auto_remove") else []
        if volatile:
            try:
                mount_all(volatile, paths.rootfs)
                return paths.rootfs
            except (HutchError, OSError):
                pass
        mount_all(mounts, paths.rootfs)
        return paths.rootfs

    def snapshot_mounts(self, rec: ContainerRecord):
        if not rec.snapshot_key:
            raise FailedPrecondition(f"container {rec.short_id} has no filesystem")
        return self.images.snapshotter.mounts(rec.snapshot_key)

    @contextmanager
    def mounted_rootfs(self, rec: ContainerRecord) -> Iterator[str]:
        """The container's root filesystem on the host: the live mount while it runs,
        else a private temporary mount of its snapshot."""
        from hutch.mount import mount_all, unmount_all
        from hutch.mount.mountinfo import lookup

        paths = self.paths(rec)
        real = os.path.realpath(paths.rootfs)
        if os.path.isdir(real) and lookup(real).mountpoint == real:
            yield paths.rootfs
            return
        tmp = os.path.join(self.settings.run, "tmp", f"{rec.id}-{os.getpid()}")
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        try:
            mount_all(self.snapshot_mounts(rec), tmp)
            try:
                yield tmp
            finally:
                unmount_all(tmp, detach=True)
        finally:
            with suppress(OSError):
                os.rmdir(tmp)

    def start(self, rec: ContainerRecord, *, attach=None,
              console_size: tuple[int, int] | None = None, early=None) -> ContainerRecord:
        """Start a created or exited container under a new monitor. `attach`: a connected
        socket the monitor streams the output (and the exit code) to, taking input from
        it. `console_size` (rows, cols): the pty's size before the process starts (docker's
        ConsoleSize), so its first `stty size` is right. `early`: a monitor.EarlyMonitor
        made for this container, which holds `attach` and `console_size` already.
        Returns the running record; raises with docker's exit code on failure."""
        from hutch.engine import monitor

        rec = self.reconcile(rec)
        if rec.state in ("running", "restarting"):
            return rec
        if rec.state == "paused":
            raise FailedPrecondition("cannot start a paused container, try unpause instead")
        if rec.state not in ("created", "exited"):
            raise FailedPrecondition(f"cannot start a container in state {rec.state}")
        paths = self.paths(rec)
        with suppress(FileNotFoundError):
            os.unlink(paths.stopping)
        try:
            self.prepare_bundle(rec)
        except BaseException as e:
            self.release(rec)
            self._record_start_failure(rec, e)
            raise
        if early is not None:  # forked already, with `attach` and `console_size`
            return early.start(self, rec)
        return monitor.spawn(self, rec, attach=attach, console_size=console_size)

    def _record_start_failure(self, rec: ContainerRecord, e: BaseException) -> None:
        code = start_error_code(e)
        with suppress(HutchError):
            self.store.update(rec.id, state="exited", exit_code=code, error=str(e),
                              finished_at=time.time())

    def release(self, rec: ContainerRecord) -> None:
        """Undo what a start set up: the runtime's container (killing what is left) and
        the rootfs mount. Quiet about what is already gone."""
        from hutch.mount import unmount_all

        with suppress(NotFound, HutchError, OSError):
            self.runtime.delete(rec.id, force=True)
        with suppress(OSError):
            cgparent.remove_if_unused()
        paths = self.paths(rec)
        with suppress(HutchError, OSError):
            unmount_all(paths.rootfs, detach=True)
        from hutch.engine.networking import uses_bridge

        with suppress(HutchError, OSError):
            self.networking.teardown(rec.id, check_leases=uses_bridge(
                (rec.config.get("net") or {}).get("mode", "")))

    # -- stop, kill, restart ---------------------------------------------------------------
    def _mark_stopping(self, rec: ContainerRecord) -> None:
        paths = self.paths(rec)
        with suppress(FileNotFoundError):
            with open(paths.stopping, "w"):
                pass

    def kill(self, rec: ContainerRecord, sig: int | str = "SIGKILL") -> None:
        rec = self.reconcile(rec)
        if rec.state not in ACTIVE_STATES:
            raise FailedPrecondition(f"Cannot kill container: {rec.name}: "
                                     f"container {rec.short_id} is not running")
        signum = parse_signal(sig)
        self._mark_stopping(rec)
        if rec.state == "restarting":
            return  # the monitor sees `stopping` and gives up restarting
        try:
            self.runtime.kill(rec.id, signum)
        except (NotFound, FailedPrecondition):
            pass
        except ProcessLookupError:
            pass

    def stop(self, rec: ContainerRecord, timeout: float | None = None,
             sig: int | str | None = None) -> ContainerRecord:
        """Signal (the stop signal), wait `timeout` seconds, then SIGKILL the whole cgroup."""
        rec = self.reconcile(rec)
        if rec.state not in ACTIVE_STATES:
            return rec
        if timeout is None:
            timeout = rec.config.get("stop_timeout")
            if timeout is None:
                timeout = 10
        signum = parse_signal(sig or rec.config.get("effective", {}).get("StopSignal")
                              or "SIGTERM")
        self._mark_stopping(rec)
        if rec.state == "paused":
            with suppress(HutchError, OSError):
                self.runtime.resume(rec.id)
            with suppress(HutchError):
                self.store.update(rec.id, state="running")
        if rec.state != "restarting":
            with suppress(NotFound, FailedPrecondition, ProcessLookupError):
                self.runtime.kill(rec.id, signum)
            if timeout < 0:
                return self.wait_stopped(rec, None)
            rec = self.wait_stopped(rec, timeout)
            if rec.state not in ACTIVE_STATES:
                return rec
            with suppress(NotFound, FailedPrecondition, ProcessLookupError):
                self.runtime.kill(rec.id, 9, all_processes=True)
        return self.wait_stopped(rec, 30)

    def wait_stopped(self, rec: ContainerRecord, timeout: float | None) -> ContainerRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                rec = self.get(rec.id)
            except NotFound:
                return rec
            if rec.state not in ACTIVE_STATES:
                return rec
            if deadline is not None and time.monotonic() >= deadline:
                return rec
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def restart(self, rec: ContainerRecord, timeout: float | None = None) -> ContainerRecord:
        """stop, then start; an --rm container is not removed in between (docker)."""
        marker = self.paths(rec).restarting
        with suppress(FileNotFoundError):
            with open(marker, "w"):
                pass
        try:
            rec = self.stop(rec, timeout)
            self.wait_monitor_gone(rec, 10)
            return self.start(self.get(rec.id))
        finally:
            with suppress(FileNotFoundError):
                os.unlink(marker)

    def wait_monitor_gone(self, rec: ContainerRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.monitor_alive(rec):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- remove -------------------------------------------------------------------------
    def remove(self, ref: str, *, force: bool = False, volumes: bool = False,
               released: bool = False) -> ContainerRecord:
        """`released`: the caller (the container's monitor, ending) has already undone
        what the start set up (see release())."""
        rec = self.get(ref) if not isinstance(ref, ContainerRecord) else ref
        if rec.state in ACTIVE_STATES and not force:
            raise FailedPrecondition(
                f"cannot remove container {rec.name}: container is {rec.state}",
                hint="stop the container before removing it, or use rm -f")
        previous = rec.state
        rec = self.store.update(rec.id, state="removing")
        if previous in ACTIVE_STATES:
            self._mark_stopping(rec)
            with suppress(NotFound, HutchError, OSError):
                self.runtime.delete(rec.id, force=True)
            self.wait_monitor_gone(rec, 10)
        self._destroy(rec, volumes=(rec.config.get("anonymous_volumes") or []) if volumes
                      else [], released=released and previous not in ACTIVE_STATES)
        return rec

    def _destroy(self, rec: ContainerRecord, *, volumes: list[str],
                 released: bool = False) -> None:
        if not released:
            self.release(rec)
        paths = self.paths(rec)
        errors = []
        key = rec.snapshot_key or SNAPSHOT_PREFIX + rec.id
        try:
            self.images.snapshotter.remove(key)
        except NotFound:
            pass
        except (HutchError, OSError) as e:
            errors.append(f"snapshot: {e}")
        if volumes:
            store = self.volumes()
            with store.lock():
                from hutch.engine.volumes import in_use

                users = in_use(r for r in self.store.list(all=True) if r.id != rec.id)
                for vol in volumes:
                    if vol not in users:
                        with suppress(NotFound, HutchError, OSError):
                            store.remove(vol, in_use=set(), force=True)
        with suppress(HutchError):
            self.images.meta.remove_lease(SNAPSHOT_PREFIX + rec.id)
        from hutch.snapshot.fsutil import remove_tree  # not shutil: ~1.5 ms to import

        for d in (paths.run_dir, paths.root_dir):
            try:
                remove_tree(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(f"{d}: {e}")
        if errors:
            with suppress(HutchError):
                self.store.update(rec.id, state="dead", error="; ".join(errors))
            raise FailedPrecondition(f"removing container {rec.short_id}: {errors[0]}")
        with suppress(NotFound):
            self.store.remove(rec.id)

    def prune(self) -> list[ContainerRecord]:
        gone = []
        for rec in self.list(all=True):
            if rec.state in ("exited", "created", "dead"):
                with suppress(HutchError):
                    gone.append(self.remove(rec.id))
        return gone

    # -- pause, update, exec, top, stats --------------------------------------------------
    def _require_running(self, rec: ContainerRecord, verb: str) -> ContainerRecord:
        rec = self.reconcile(rec)
        if rec.state not in ("running", "paused"):
            raise FailedPrecondition(f"container {rec.name} is not running", hint=verb)
        return rec

    def pause(self, rec: ContainerRecord) -> ContainerRecord:
        rec = self._require_running(rec, "pause")
        if rec.state == "paused":
            raise FailedPrecondition(f"container {rec.name} is already paused")
        self.runtime.pause(rec.id)
        return self.store.update(rec.id, state="paused")

    def unpause(self, rec: ContainerRecord) -> ContainerRecord:
        rec = self._require_running(rec, "unpause")
        if rec.state != "paused":
            raise FailedPrecondition(f"container {rec.name} is not paused")
        self.runtime.resume(rec.id)
        return self.store.update(rec.id, state="running")

    def update(self, rec: ContainerRecord, changes: dict) -> ContainerRecord:
        """Live limits (docker update): `changes` holds RunOptions fields (memory,
        memory_swap, cpus, cpu_shares, cpuset_cpus, pids_limit) and/or "restart"."""
        from hutch.engine.spec import resources

        config = dict(rec.config)
        if "restart" in changes:
            policy = parse_restart(changes.pop("restart"))
            if config.get("auto_remove") and policy["Name"] != "no":
                raise InvalidArgument("cannot set a restart policy on a container "
                                      "started with --rm")
            config["restart"] = policy
        run = _run_options_from(config)
        for k, v in changes.items():
            if k not in _RUN_FIELDS:
                raise InvalidArgument(f"cannot update {k}")
            setattr(run, k, v)
        _normalise_sizes(run)
        res = resources(run, [], os.cpu_count() or 1)
        rec = self.reconcile(rec)
        if rec.state in ("running", "paused") and changes:
            live = {k: v for k, v in res.items() if k in ("memory", "cpu", "pids")}
            self.runtime.update(rec.id, live)
        run_dict = asdict(run)
        run_dict.pop("binds", None)
        config["run"] = run_dict
        return self.store.update(rec.id, config=config)

    def top(self, rec: ContainerRecord) -> list[int]:
        rec = self._require_running(rec, "top")
        return self.runtime.pids(rec.id)

    def stats(self, rec: ContainerRecord) -> dict:
        rec = self._require_running(rec, "stats")
        return self.runtime.stats(rec.id)

    def rename(self, rec: ContainerRecord, new_name: str) -> ContainerRecord:
        rec = self.store.rename(rec.id, new_name)
        if os.path.lexists(self.paths(rec).netns):
            # Peers on its user-defined networks know it by name in their /etc/hosts.
            with suppress(HutchError, OSError):
                self.networking.store.rename(rec.id, rec.name)
                self.networking.refresh_hosts(rec.id)
        return rec

    def exec(self, rec: ContainerRecord, args: list[str], *, tty: bool = False,
             interactive: bool = False, detach: bool = False, env: list[str] | None = None,
             user: str = "", workdir: str = "", privileged: bool = False) -> int:
        """Run `args` in the running container; stdio are ours (passthrough) unless
        `tty`, when we proxy a new pty. Returns the exit code (0 when detached)."""
        from hutch.engine.spec import _merge_env
        from hutch.engine.users import resolve_user

        rec = self.reconcile(rec)
        if rec.state == "paused":
            raise FailedPrecondition(f"container {rec.short_id} is paused, unpause the "
                                     "container before exec")
        if rec.state != "running":
            raise FailedPrecondition(f"container {rec.short_id} is not running")
        if not args:
            raise InvalidArgument("exec needs a command")
        state = self.runtime.state(rec.id)
        from hutch.runtime.state import StateDir

        st = StateDir(self.settings.runtime_root, rec.id).load()
        base = dict(st.config.get("process") or {})
        process = dict(base)
        process["args"] = list(args)
        process["terminal"] = bool(tty)
        process["env"] = _merge_env(list(base.get("env") or []), list(env or []))
        if tty and not any(e.startswith("TERM=") for e in process["env"]):
            process["env"].append("TERM=xterm")
        if workdir:
            if not workdir.startswith("/"):
                raise InvalidArgument(f"the working directory {workdir!r} is invalid, it "
                                      "needs to be an absolute path")
            process["cwd"] = workdir
        if user:
            u = resolve_user(user, self.paths(rec).rootfs)
            process["user"] = {"uid": u.uid, "gid": u.gid}
            if u.additional_gids:
                process["user"]["additionalGids"] = list(u.additional_gids)
            process["env"] = [e for e in process["env"] if not e.startswith("HOME=")] + \
                [f"HOME={u.home}"]
        if privileged:
            from hutch.linux.caps import CAP_NAMES

            caps = list(CAP_NAMES)
            process["capabilities"] = {"bounding": caps, "effective": caps,
                                       "permitted": caps}
        del state
        # The process inherits our stdio (passthrough), except: stdin without -i, and all
        # three with -d (a detached exec is connected to nothing, as in docker).
        redirect = (0, 1, 2) if detach and not tty else (() if interactive or tty else (0,))
        null = os.open(os.devnull, os.O_RDWR) if redirect else -1
        saved = [(fd, os.dup(fd)) for fd in redirect]
        for fd in redirect:
            os.dup2(null, fd)
        try:
            return self._exec(rec, process, tty=tty, detach=detach)
        except FailedPrecondition as e:
            raise ExecError(str(e), exit_code=start_error_code(e)) from None
        finally:
            for fd, old in saved:
                os.dup2(old, fd)
                os.close(old)
            if null >= 0:
                os.close(null)

    def _exec(self, rec: ContainerRecord, process: dict, *, tty: bool, detach: bool) -> int:
        if not tty:
            return self.runtime.exec(rec.id, process=process, detach=detach)
        from hutch.linux import libc
        from hutch.runtime import tty as _tty

        ours, fd = _tty.console_pair()
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        try:
            pid = self.runtime.exec(rec.id, process=process, detach=True, console_fd=fd,
                                    want_pid=True)
            master = _tty.receive_master(ours)
        finally:
            ours.close()
        if detach:
            os.close(master)
            return 0
        try:
            _tty.proxy(master, pid)
        finally:
            os.close(master)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
            else 128 + os.WTERMSIG(status)


class ExecError(HutchError):
    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StartError(HutchError):
    """A container that could not start; exit_code is docker's: 126 cannot invoke, 127 not
    found, 125 anything else."""

    def __init__(self, message: str, *, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def start_error_code(e: BaseException) -> int:
    if isinstance(e, StartError):
        return e.exit_code
    err = getattr(e, "context", {}).get("errno") if isinstance(e, HutchError) else \
        getattr(e, "errno", None)
    text = str(e)
    if err == errno.ENOENT or "executable file not found" in text \
            or "no such file or directory" in text.lower():
        return 127
    if err in (errno.EACCES, errno.EPERM, errno.ENOEXEC) or "permission denied" in text:
        return 126
    return 125


_SIGNALS: dict[str, int] | None = None


def parse_signal(sig: int | str) -> int:
    """docker's signal parsing: a number, "KILL" or "SIGKILL" (any case)."""
    global _SIGNALS
    if isinstance(sig, int):
        return sig
    text = str(sig).strip().upper()
    if text.isdigit():
        n = int(text)
        if 0 < n < 65:
            return n
        raise InvalidArgument(f"invalid signal: {sig}")
    if _SIGNALS is None:
        import signal

        _SIGNALS = {s.name: int(s) for s in signal.Signals}
    name = text if text.startswith("SIG") else "SIG" + text
    if name not in _SIGNALS:
        raise InvalidArgument(f"invalid signal: {sig}")
    return _SIGNALS[name]


def container_info(rec: ContainerRecord) -> dict[str, Any]:
    """The record as `docker inspect` shows a container (the fields hutch has)."""
    eff = rec.config.get("effective") or {}
    run = rec.config.get("run") or {}
    net = rec.config.get("net") or {}
    args = list(eff.get("Entrypoint") or []) + list(eff.get("Cmd") or [])
    return {
        "Id": rec.id,
        "Created": _rfc3339(rec.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": rec.state, "Running": rec.state in ("running", "paused"),
            "Paused": rec.state == "paused", "Restarting": rec.state == "restarting",
            "OOMKilled": rec.oom_killed, "Dead": rec.state == "dead", "Pid": rec.pid,
            "ExitCode": rec.exit_code, "Error": rec.error,
            "StartedAt": _rfc3339(rec.started_at), "FinishedAt": _rfc3339(rec.finished_at),
            "MonitorPid": rec.monitor_pid if rec.state in ACTIVE_STATES else 0,
        },
        "Image": rec.image_id,
        "LogPath": rec.log_path,
        "Name": "/" + rec.name,
        "RestartCount": rec.restart_count,
        "Driver": "overlay",
        "Mounts": [{"Type": _mount_type(m), "Name": _volume_name(m),
                    "Source": m.get("source"),
                    "Destination": m.get("destination"),
                    "RW": "ro" not in (m.get("options") or [])}
                   for m in rec.config.get("mounts") or []],
        "Config": eff,
        "NetworkSettings": _network_settings(rec),
        "HostConfig": {
            "AutoRemove": bool(rec.config.get("auto_remove")),
            "RestartPolicy": rec.config.get("restart") or {"Name": "no",
                                                           "MaximumRetryCount": 0},
            "NetworkMode": run.get("network") or "none",
            "PortBindings": _port_bindings(net.get("publish")),
            "PublishAllPorts": bool(net.get("publish_all")),
            "Dns": net.get("dns") or [], "DnsSearch": net.get("dns_search") or [],
            "DnsOptions": net.get("dns_options") or [],
            "ExtraHosts": net.get("extra_hosts") or None,
            "Privileged": bool(run.get("privileged")), "ReadonlyRootfs":
                bool(run.get("read_only")), "Init": bool(run.get("init")),
            "CapAdd": run.get("cap_add") or None, "CapDrop": run.get("cap_drop") or None,
            "SecurityOpt": run.get("security_opt") or None,
            "Memory": run.get("memory") or 0, "MemorySwap": run.get("memory_swap") or 0,
            "NanoCpus": int((run.get("cpus") or 0) * 1e9), "CpuShares":
                run.get("cpu_shares") or 0, "CpusetCpus": run.get("cpuset_cpus") or "",
            "PidsLimit": run.get("pids_limit"), "Tmpfs": run.get("tmpfs") or None,
            "LogConfig": {"Type": "json-file", "Config": {
                k: str(v) for k, v in (rec.config.get("log") or {}).items()}},
        },
    }


def _network_settings(rec: ContainerRecord) -> dict:
    """docker's NetworkSettings: the live state while the container runs."""
    live = rec.network if rec.state in ACTIVE_STATES else {}
    nets = dict((live or {}).get("networks") or {})
    ports: dict = {}
    for p in (live or {}).get("ports") or []:
        ports.setdefault(f"{p['container_port']}/{p['proto']}", []).append(
            {"HostIp": p.get("host_ip") or "0.0.0.0", "HostPort": str(p["host_port"])})
    first = next(iter(nets.values()), {})
    return {"SandboxKey": (live or {}).get("netns", ""), "Ports": ports,
            "IPAddress": first.get("IPAddress", ""),
            "IPPrefixLen": first.get("IPPrefixLen", 0), "Gateway": first.get("Gateway", ""),
            "MacAddress": first.get("MacAddress", ""), "Networks": nets}


def _port_bindings(publish) -> dict:
    out: dict = {}
    for proto, host_ip, host_port, cport in publish or []:
        out.setdefault(f"{cport}/{proto}", []).append(
            {"HostIp": host_ip, "HostPort": str(host_port) if host_port else ""})
    return out


def port_keys(text: str) -> list[str]:
    """docker's --expose: 80, 80/udp, 8000-8001/tcp -> ["80/tcp"], ..., one key a port."""
    ports, _, proto = str(text).partition("/")
    proto = (proto or "tcp").lower()
    first, dash, last = ports.partition("-")
    last = last if dash else first
    if not (first.isdigit() and last.isdigit()) or proto not in ("tcp", "udp", "sctp") \
            or not 0 < int(first) <= int(last) < 65536:
        raise InvalidArgument(f"invalid range format for --expose: {text}")
    return [f"{n}/{proto}" for n in range(int(first), int(last) + 1)]


def _volume_name(m: dict) -> str:
    """Volumes are binds of {root}/volumes/<name>/_data."""
    src = m.get("source") or ""
    parts = src.rstrip("/").split("/")
    if m.get("type") == "bind" and len(parts) >= 3 and parts[-1] == "_data" \
            and parts[-3] == "volumes":
        return parts[-2]
    return ""


def _mount_type(m: dict) -> str:
    return "volume" if _volume_name(m) else (m.get("type") or "bind")


def _rfc3339(ts: float | None) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    t = time.gmtime(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int((ts % 1) * 1e9):09d}Z"
