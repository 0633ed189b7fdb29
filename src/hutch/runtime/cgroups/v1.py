"""cgroup v1 manager (legacy and hybrid hosts), writing what runc 1.1's libcontainer/
cgroups/fs writes, in the same files, formats and order, one function per controller.

Hybrid hosts also mount cgroup2 (usually at /sys/fs/cgroup/unified, no controllers);
runc creates and joins the container's cgroup there too and records it under the key
"" — so do we, which keeps systemd-style tooling that reads 0::/ working.
"""

from __future__ import annotations

import errno
import posixpath
import time

from hutch.errors import FailedPrecondition, HutchError, InvalidArgument, NotSupported, Unavailable

from .base import CgroupManager, cgroup_error
from .fs import CgroupFS, CgroupMount, parse_proc_cgroup
from .paths import join_in_hierarchy
from .validate import validate_resources

# runc 1.1 fs.subsystems order; "name=systemd" is joined for systemd's bookkeeping.
SUBSYSTEMS = ("cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb",
              "net_cls", "net_prio", "perf_event", "freezer", "rdma", "name=systemd")
UNIFIED = ""  # key of the hybrid cgroup2 directory, as in runc's state.json

_R = "linux.resources"


class V1Manager(CgroupManager):
    version = 1

    def __init__(self, fs: CgroupFS, paths: dict[str, str], mounts: dict[str, str]) -> None:
        super().__init__(fs)
        self._paths = dict(paths)
        self._mounts = dict(mounts)  # controller -> mountpoint (cpuset needs its top)

    @classmethod
    def open(cls, fs: CgroupFS, mounts: list[CgroupMount], inner: str) -> V1Manager:
        own = parse_proc_cgroup(fs.self_cgroup())
        by_ctrl: dict[str, CgroupMount] = {}
        unified: CgroupMount | None = None
        for m in mounts:
            if m.fstype == "cgroup2":
                unified = unified or m
                continue
            for c in m.controllers:
                by_ctrl.setdefault(c, m)  # the first mount of a hierarchy wins, as in runc
        paths: dict[str, str] = {}
        mps: dict[str, str] = {}
        for sub in SUBSYSTEMS:
            m = by_ctrl.get(sub)
            if m is None:
                continue
            paths[sub] = join_in_hierarchy(m.mountpoint, m.root, own.get(sub), inner)
            mps[sub] = m.mountpoint
        if "devices" not in paths:
            # runc: "The non-presence of the devices subsystem is considered fatal for
            # security reasons."
            raise NotSupported("cgroup v1: the devices controller is not mounted; "
                               "cannot confine the container's device access")
        if unified is not None:
            paths[UNIFIED] = join_in_hierarchy(unified.mountpoint, unified.root,
                                               own.get(""), inner)
            mps[UNIFIED] = unified.mountpoint
        return cls(fs, paths, mps)

    # --- contract -----------------------------------------------------------------------
    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def to_state(self) -> dict:
        return {"version": 1, "paths": dict(self._paths), "mounts": dict(self._mounts)}

    def _procs_dir(self) -> str:
        return self._paths.get("devices") or next(iter(self._paths.values()))

    def create(self) -> None:
        done: set[str] = set()
        for sub, path in self._paths.items():
            if path in done:
                continue
            done.add(path)
            if sub == "cpuset":
                self._create_cpuset(path, self._mounts[sub])
            else:
                self._makedirs(path)

    def apply(self, resources: dict | None) -> list[str]:
        return self._set(resources, devices=True)

    def update(self, resources: dict | None) -> list[str]:
        # runc update sets SkipDevices: it cannot change device rules, and rewriting
        # them would undo what device plugins added (runc update.go).
        return self._set(resources, devices=False)

    def _set(self, resources: dict | None, *, devices: bool) -> list[str]:
        validate_resources(resources)
        if not resources:
            return []
        if resources.get("unified"):
            raise NotSupported(f"{_R}.unified needs cgroup v2; this host uses cgroup v1")
        w: list[str] = []
        # runc's fs.subsystems order: cpuset, devices, memory, cpu, pids, blkio, ...
        set_cpuset(self, resources, w)
        if devices:
            set_devices(self, resources, w)
        set_memory(self, resources, w)
        set_cpu(self, resources, w)
        set_pids(self, resources, w)
        set_blkio(self, resources, w)
        set_hugetlb(self, resources, w)
        set_network(self, resources, w)
        set_rdma(self, resources, w)
        return w

    # --- freezer ------------------------------------------------------------------------
    # runc fs/freezer.go: the v1 freezer can stay in FREEZING while tasks fork or join,
    # so write FROZEN again and again, now and then thawing and pausing a moment.
    freeze_timeout: float = 10.0

    def _freezer(self) -> str:
        return posixpath.join(self.need("freezer", "pause"), "freezer.state")

    def freeze(self) -> None:
        path = self._freezer()
        deadline = time.monotonic() + self.freeze_timeout
        ok = False
        try:
            i = 0
            while True:
                if i % 50 == 49:
                    self._write(path, "THAWED")
                    time.sleep(0.01)
                self._write(path, "FROZEN")
                if i % 25 == 24:
                    time.sleep(0.0001)
                state = self._read(path)
                if state == "FROZEN":
                    ok = True
                    return
                if state != "FREEZING":
                    raise HutchError(f"cgroup: unexpected freezer state {state!r} in {path}")
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"cgroup: unable to freeze {posixpath.dirname(path)}: still FREEZING "
                        f"after {self.freeze_timeout:g}s", hint="tasks keep forking; retry")
                i += 1
        finally:
            if not ok:
                # Leaving a cgroup FREEZING/FROZEN after a failure is dangerous: thaw.
                try:
                    self.fs.write(path, "THAWED")
                except OSError:
                    pass

    def thaw(self) -> None:
        self._write(self._freezer(), "THAWED")

    def frozen(self) -> bool:
        d = self._paths.get("freezer")
        if d is None:
            return False
        deadline = time.monotonic() + self.freeze_timeout
        while True:
            try:
                state = self.fs.read(posixpath.join(d, "freezer.state")).strip()
            except FileNotFoundError:
                return False
            except OSError as e:
                raise cgroup_error(e, "read", posixpath.join(d, "freezer.state")) from None
            if state == "THAWED":
                return False
            if state == "FROZEN":
                # Frozen because of an ancestor is not "paused" (runc GetState).
                try:
                    return self.fs.read(posixpath.join(d, "freezer.self_freezing")).strip() == "1"
                except FileNotFoundError:
                    return True
            if state != "FREEZING" or time.monotonic() > deadline:
                raise HutchError(f"cgroup: unexpected freezer state {state!r} in {d}")
            time.sleep(0.001)

    # --- statistics and OOM ------------------------------------------------------------
    def stats(self) -> dict:
        from .stats import v1_stats

        return v1_stats(self.fs, self._paths)

    def _oom_control(self) -> dict[str, int]:
        d = self._paths.get("memory")
        if d is None:
            return {}
        try:
            text = self.fs.read(posixpath.join(d, "memory.oom_control"))
        except OSError:
            return {}
        out: dict[str, int] = {}
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if v.strip().isdigit():
                out[k] = int(v)
        return out

    def oom_kill_count(self) -> int:
        # "oom_kill" appeared in memory.oom_control with kernel 4.13.
        return self._oom_control().get("oom_kill", 0)

    def under_oom(self) -> bool:
        return self._oom_control().get("under_oom", 0) == 1

    # --- helpers ------------------------------------------------------------------------
    def need(self, sub: str, field: str) -> str:
        """The controller's cgroup dir, or NotSupported: a limit must never pass silently."""
        p = self._paths.get(sub)
        if p is None:
            raise NotSupported(f"{field} is set but the {sub} cgroup v1 controller is not "
                               "mounted on this host")
        return p

    def _mkdir(self, path: str) -> None:
        try:
            self.fs.mkdir(path)
        except OSError as e:
            raise cgroup_error(e, "mkdir", path) from None

    def _makedirs(self, path: str) -> None:
        if self.fs.isdir(path):
            return
        parent = posixpath.dirname(path)
        if parent != path:
            self._makedirs(parent)
        self._mkdir(path)

    def _create_cpuset(self, path: str, mountpoint: str) -> None:
        """mkdir -p, filling empty cpuset.cpus/mems from the parent at every level.

        A fresh v1 cpuset cgroup has empty cpus and mems and the kernel refuses tasks
        into it (ENOSPC) until both are set (runc's cpusetEnsureParent/CopyIfNeeded).
        """
        rel = posixpath.relpath(path, mountpoint)
        current = mountpoint
        for comp in [] if rel == "." else rel.split("/"):
            parent, current = current, posixpath.join(current, comp)
            if not self.fs.isdir(current):
                self._mkdir(current)
            for name in ("cpuset.cpus", "cpuset.mems"):
                mine = posixpath.join(current, name)
                if self._read(mine) == "":
                    self._write(mine, self._read(posixpath.join(parent, name)))


def _nz(d: dict, key: str) -> int:
    v = d.get(key)
    return 0 if v is None else v


# --- controllers (each one: resources dict in, files written, warnings appended) ---------

def set_cpuset(m: V1Manager, r: dict, w: list[str]) -> None:
    c = r.get("cpu") or {}
    for key in ("cpus", "mems"):
        if c.get(key):
            p = m.need("cpuset", f"{_R}.cpu.{key}")
            m._write(posixpath.join(p, f"cpuset.{key}"), c[key])


def device_rule(d: dict) -> str:
    """The devices.allow/deny line runc writes: 'c 1:3 rwm', 'a *:* rwm'."""
    t = d.get("type") or "a"
    maj = d.get("major")
    mnr = d.get("minor")
    maj_s = "*" if maj is None or maj == -1 else str(maj)
    min_s = "*" if mnr is None or mnr == -1 else str(mnr)
    access = d.get("access") or "rwm"
    return f"{t} {maj_s}:{min_s} {access}"


def set_devices(m: V1Manager, r: dict, w: list[str]) -> None:
    devs = r.get("devices")
    if devs is None:
        return
    p = m.need("devices", f"{_R}.devices")
    # Default deny, then the rules in order (what runc's emulator writes into a fresh
    # cgroup that inherited "a *:* rwm"); the caller passes runc's default allow list.
    m._write(posixpath.join(p, "devices.deny"), "a")
    for d in devs:
        f = "devices.allow" if d.get("allow") else "devices.deny"
        m._write(posixpath.join(p, f), device_rule(d))


def _set_memory_limit(m: V1Manager, p: str, val: int) -> None:
    if val == 0:
        return
    path = posixpath.join(p, "memory.limit_in_bytes")
    try:
        m.fs.write(path, str(val))
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise cgroup_error(e, "write", path, str(val)) from None
        # EBUSY: the new limit is below what the cgroup already uses.
        usage = m._read(posixpath.join(p, "memory.usage_in_bytes"))
        peak = m._read(posixpath.join(p, "memory.max_usage_in_bytes"))
        raise FailedPrecondition(f"unable to set memory limit to {val} (current usage: "
                                 f"{usage}, peak usage: {peak})", path=path) from None


def _set_swap(m: V1Manager, p: str, val: int) -> None:
    if val != 0:
        m._write(posixpath.join(p, "memory.memsw.limit_in_bytes"), str(val))


def set_memory(m: V1Manager, r: dict, w: list[str]) -> None:
    mem = r.get("memory") or {}
    if not mem:
        return
    f = f"{_R}.memory"
    if mem.get("kernel") or mem.get("kernelTCP"):
        w.append(f"{f}.kernel/kernelTCP: kernel memory settings are ignored "
                 "(as runc 1.1 does; the kernel deprecated them)")
    limit, swap, reservation = _nz(mem, "limit"), _nz(mem, "swap"), _nz(mem, "reservation")
    swappiness = mem.get("swappiness")
    oom_off = bool(mem.get("disableOOMKiller"))
    hierarchy = mem.get("useHierarchy")
    if not (limit or swap or reservation or oom_off or swappiness is not None
            or hierarchy is not None):
        return
    p = m.need("memory", f)
    if hierarchy is not None:
        _set_use_hierarchy(m, p, hierarchy, w, f)
    memsw = posixpath.join(p, "memory.memsw.limit_in_bytes")
    has_swap = m.fs.exists(memsw)
    # runc fs/memory.go setMemoryAndSwap: unlimited memory with swap unset means
    # unlimited swap too (only if the kernel accounts swap).
    if limit == -1 and swap == 0 and has_swap:
        swap = -1
    if swap != 0 and not has_swap:
        w.append(f"{f}.swap ignored: memory.memsw.limit_in_bytes does not exist on this "
                 "host (swap accounting is off; boot with swapaccount=1)")
        swap = 0
    done = False
    if limit != 0 and swap != 0:
        cur = int(m._read(posixpath.join(p, "memory.limit_in_bytes")))
        # The kernel wants memsw >= limit at every moment: raise memsw first when it
        # grows (or becomes unlimited), else lower/set the limit first.
        if swap == -1 or cur < swap:
            _set_swap(m, p, swap)
            _set_memory_limit(m, p, limit)
            done = True
    if not done:
        _set_memory_limit(m, p, limit)
        _set_swap(m, p, swap)
    if reservation != 0:
        m._write(posixpath.join(p, "memory.soft_limit_in_bytes"), str(reservation))
    if oom_off:
        m._write(posixpath.join(p, "memory.oom_control"), "1")
    if swappiness is not None and swappiness != -1:
        m._write_if_exists(posixpath.join(p, "memory.swappiness"), str(swappiness), w,
                           f"{f}.swappiness")


def _set_use_hierarchy(m: V1Manager, p: str, on: bool, w: list[str], f: str) -> None:
    """runc 1.1 ignores useHierarchy. Since kernel 5.16 memory.use_hierarchy is fixed at
    1 (writing 0 is EINVAL); older kernels default to 0 in some distributions."""
    path = posixpath.join(p, "memory.use_hierarchy")
    if not m.fs.exists(path):
        w.append(f"{f}.useHierarchy ignored: memory.use_hierarchy does not exist here")
        return
    current = m._read(path)
    if current == ("1" if on else "0"):
        return
    try:
        m.fs.write(path, "1" if on else "0")
    except OSError:
        w.append(f"{f}.useHierarchy={str(on).lower()} ignored: the kernel keeps "
                 f"memory.use_hierarchy at {current}")


def set_cpu(m: V1Manager, r: dict, w: list[str]) -> None:
    c = r.get("cpu") or {}
    f = f"{_R}.cpu"
    shares, quota, period = _nz(c, "shares"), _nz(c, "quota"), _nz(c, "period")
    rt_runtime, rt_period = _nz(c, "realtimeRuntime"), _nz(c, "realtimePeriod")
    idle, burst = c.get("idle"), c.get("burst")
    if not (shares or quota or period or rt_runtime or rt_period
            or idle is not None or burst is not None):
        return
    p = m.need("cpu", f)
    if shares:
        path = posixpath.join(p, "cpu.shares")
        m._write(path, str(shares))
        # The kernel clamps to [2, 262144]; runc reads back and reports the bound.
        got = int(m._read(path))
        if shares > got:
            raise InvalidArgument(f"the maximum allowed cpu-shares is {got}",
                                  field=f"{f}.shares")
        if shares < got:
            raise InvalidArgument(f"the minimum allowed cpu-shares is {got}",
                                  field=f"{f}.shares")
    pending_period = ""
    if period:
        path = posixpath.join(p, "cpu.cfs_period_us")
        try:
            m.fs.write(path, str(period))
        except OSError as e:
            # A period smaller than the current one can be refused (EINVAL) because
            # old_quota/new_period exceeds the parent's; retry after the quota.
            if e.errno != errno.EINVAL:
                raise cgroup_error(e, "write", path, str(period)) from None
            pending_period = str(period)
    if quota:
        m._write(posixpath.join(p, "cpu.cfs_quota_us"), str(quota))
        if pending_period:
            m._write(posixpath.join(p, "cpu.cfs_period_us"), pending_period)
    elif pending_period:
        raise cgroup_error(OSError(errno.EINVAL, "EINVAL"), "write",
                           posixpath.join(p, "cpu.cfs_period_us"), pending_period)
    if burst is not None:
        m._write_if_exists(posixpath.join(p, "cpu.cfs_burst_us"), str(burst), w,
                           f"{f}.burst")
    # Real-time group scheduling needs CONFIG_RT_GROUP_SCHED; period before runtime.
    if rt_period:
        m._write_if_exists(posixpath.join(p, "cpu.rt_period_us"), str(rt_period), w,
                           f"{f}.realtimePeriod")
    if rt_runtime:
        m._write_if_exists(posixpath.join(p, "cpu.rt_runtime_us"), str(rt_runtime), w,
                           f"{f}.realtimeRuntime")
    if idle is not None:
        m._write_if_exists(posixpath.join(p, "cpu.idle"), str(idle), w, f"{f}.idle")


def set_pids(m: V1Manager, r: dict, w: list[str]) -> None:
    pids = r.get("pids")
    if pids is None:
        return
    p = m.need("pids", f"{_R}.pids")
    limit = pids["limit"]
    if limit == 0:
        return  # runc 1.1: 0 leaves pids.max alone (so `update` keeps the limit)
    # A positive limit is written as is, a negative one means no limit ("max").
    m._write(posixpath.join(p, "pids.max"), str(limit) if limit > 0 else "max")


def _dev(d: dict) -> str:
    return f"{d.get('major', 0)}:{d.get('minor', 0)}"


def blkio_wanted(b: dict) -> bool:
    """Anything to write? (`update` passes {"weight": 0}, meaning leave it alone.)"""
    return bool(_nz(b, "weight") or _nz(b, "leafWeight")
                or any(b.get(k) for k in ("weightDevice", "throttleReadBpsDevice",
                                          "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                                          "throttleWriteIOPSDevice")))


def set_blkio(m: V1Manager, r: dict, w: list[str]) -> None:
    b = r.get("blockIO") or {}
    if not blkio_wanted(b):
        return
    f = f"{_R}.blockIO"
    p = m.need("blkio", f)
    # runc 1.1 blkio.go: CFQ's blkio.weight when present, else BFQ's blkio.bfq.weight.
    if m.fs.exists(posixpath.join(p, "blkio.weight")):
        weight_file, weight_dev_file = "blkio.weight", "blkio.weight_device"
    else:
        weight_file, weight_dev_file = "blkio.bfq.weight", "blkio.bfq.weight_device"
    if _nz(b, "weight"):
        m._write_if_exists(posixpath.join(p, weight_file), str(b["weight"]), w,
                           f"{f}.weight")
    if _nz(b, "leafWeight"):
        m._write_if_exists(posixpath.join(p, "blkio.leaf_weight"), str(b["leafWeight"]), w,
                           f"{f}.leafWeight")
    for wd in b.get("weightDevice") or []:
        if _nz(wd, "weight"):
            m._write_if_exists(posixpath.join(p, weight_dev_file),
                               f"{_dev(wd)} {wd['weight']}", w, f"{f}.weightDevice")
        if _nz(wd, "leafWeight"):
            m._write_if_exists(posixpath.join(p, "blkio.leaf_weight_device"),
                               f"{_dev(wd)} {wd['leafWeight']}", w, f"{f}.weightDevice")
    for key, fname in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                       ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                       ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                       ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
        for td in b.get(key) or []:
            path = posixpath.join(p, fname)
            if not m.fs.exists(path):
                raise NotSupported(f"{f}.{key}: {fname} does not exist on this host")
            m._write(path, f"{_dev(td)} {td.get('rate', 0)}")


def set_hugetlb(m: V1Manager, r: dict, w: list[str]) -> None:
    hps = r.get("hugepageLimits") or []
    if not hps:
        return
    f = f"{_R}.hugepageLimits"
    p = m.need("hugetlb", f)
    for h in hps:
        path = posixpath.join(p, f"hugetlb.{h['pageSize']}.limit_in_bytes")
        if not m.fs.exists(path):
            raise NotSupported(f"{f}: huge page size {h['pageSize']} is not supported here")
        m._write(path, str(h.get("limit", 0)))


def set_network(m: V1Manager, r: dict, w: list[str]) -> None:
    n = r.get("network") or {}
    f = f"{_R}.network"
    # net_cls/net_prio only tag traffic for tc/iptables rules (no limit is lost), and
    # most hosts no longer mount them: a missing controller is a warning here (runc
    # 1.1 fails with "cannot set net_cls limit").
    if n.get("classID") is not None:
        p = m._paths.get("net_cls")
        if p is None:
            w.append(f"{f}.classID ignored: the net_cls cgroup controller is not mounted")
        else:
            m._write(posixpath.join(p, "net_cls.classid"), str(n["classID"]))
    prios = n.get("priorities") or []
    if prios and "net_prio" not in m._paths:
        w.append(f"{f}.priorities ignored: the net_prio cgroup controller is not mounted")
        return
    for prio in prios:
        m._write(posixpath.join(m._paths["net_prio"], "net_prio.ifpriomap"),
                 f"{prio['name']} {prio.get('priority', 0)}")


def rdma_line(dev: str, lim: dict) -> str:
    def v(key: str) -> str:
        return "max" if lim.get(key) is None else str(lim[key])
    return f"{dev} hca_handle={v('hcaHandles')} hca_object={v('hcaObjects')}"


def set_rdma(m: V1Manager, r: dict, w: list[str]) -> None:
    rd = r.get("rdma") or {}
    if not rd:
        return
    p = m.need("rdma", f"{_R}.rdma")
    for dev, lim in rd.items():
        m._write(posixpath.join(p, "rdma.max"), rdma_line(dev, lim))


__all__ = ["SUBSYSTEMS", "UNIFIED", "V1Manager", "blkio_wanted", "device_rule", "rdma_line"]
