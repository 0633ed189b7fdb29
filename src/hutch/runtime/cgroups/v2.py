"""cgroup v2 (unified) manager, writing what runc 1.1's libcontainer/cgroups/fs2 writes.

OCI resources are cgroup v1 shaped; the conversions are runc's: cpu.shares -> cpu.weight
(1 + (shares-2)*9999/262142), memory.swap (memory+swap) -> memory.swap.max (swap only),
-1 -> "max". Knobs v2 lacks (swappiness, disableOOMKiller, realtime*, kernel memory,
leaf weights, net_cls/net_prio) become warnings. Device rules on v2 need an eBPF program
attached to the cgroup; that is not done here (standard library only) and is reported.
"""

from __future__ import annotations

import errno
import posixpath
import time

from hutch.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotSupported,
    SpecError,
    Unavailable,
)

from .base import CgroupManager, cgroup_error
from .fs import CgroupFS, CgroupMount, parse_proc_cgroup
from .paths import join_in_hierarchy
from .v1 import blkio_wanted, rdma_line
from .validate import validate_resources

_R = "linux.resources"


def shares_to_weight(shares: int) -> int:
    """runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] -> [1, 10000]; 0 stays unset."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """runc's ConvertBlkIOToIOWeightValue: [10, 1000] -> [1, 10000]."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int, memory: int) -> int:
    """runc's ConvertMemorySwapToCgroupV2Value: memory+swap -> swap alone."""
    if memory == -1 and swap == 0:
        return -1  # v1 compatibility: unlimited memory with swap unset -> unlimited swap
    if swap in (-1, 0):
        return swap
    field = f"{_R}.memory.swap"
    if memory in (0, -1):
        raise SpecError("unable to set swap limit without memory limit", field=field)
    if memory < 0:
        raise SpecError(f"invalid memory value: {memory}", field=f"{_R}.memory.limit")
    if swap < memory:
        raise SpecError("memory+swap limit should be >= memory limit", field=field)
    return swap - memory


def num_to_str(v: int) -> str:
    """fs2.numToStr: 0 -> "" (leave alone), -1 -> "max"."""
    if v == 0:
        return ""
    if v == -1:
        return "max"
    return str(v)


def _flat(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


def _nz(d: dict, key: str) -> int:
    v = d.get(key)
    return 0 if v is None else v


class V2Manager(CgroupManager):
    version = 2

    def __init__(self, fs: CgroupFS, path: str, mountpoint: str) -> None:
        super().__init__(fs)
        self.path = path
        self.mountpoint = mountpoint
        self._controllers: set[str] | None = None

    @classmethod
    def open(cls, fs: CgroupFS, mount: CgroupMount, inner: str) -> V2Manager:
        own = parse_proc_cgroup(fs.self_cgroup()).get("")
        path = join_in_hierarchy(mount.mountpoint, mount.root, own, inner, v2_parent=True)
        return cls(fs, path, mount.mountpoint)

    # --- contract -----------------------------------------------------------------------
    def paths(self) -> dict[str, str]:
        return {"": self.path}

    def to_state(self) -> dict:
        return {"version": 2, "path": self.path, "mountpoint": self.mountpoint}

    def _procs_dir(self) -> str:
        return self.path

    def create(self) -> None:
        """mkdir -p below the mountpoint, enabling every available controller on the way.

        runc's fs2.CreateCgroupPath writes "+c1 +c2 ..." (all of the root's
        cgroup.controllers) into cgroup.subtree_control of each ancestor, one by one if
        the whole line is refused, so that the leaf has them all.
        """
        mp = self.mountpoint.rstrip("/") or "/"
        if not (self.path.startswith(mp + "/") and self.path != mp):
            raise InvalidArgument(f"cgroup path {self.path} is not below {mp}")
        avail = self._read(posixpath.join(mp, "cgroup.controllers")).split()
        comps = posixpath.relpath(self.path, mp).split("/")
        created: list[str] = []
        try:
            current = mp
            for i in range(len(comps) + 1):
                if i > 0:
                    current = posixpath.join(current, comps[i - 1])
                    try:
                        if self.fs.mkdir(current):
                            created.append(current)
                    except OSError as e:
                        raise cgroup_error(e, "mkdir", current) from None
                    self._fix_type(current)
                if i < len(comps) and avail:
                    self._enable(current, avail)
        except BaseException:
            for d in reversed(created):
                try:
                    self.fs.rmdir(d)
                except OSError:
                    pass
            raise

    def _fix_type(self, d: str) -> None:
        # A cgroup made below one that has processes is "domain invalid"; only threaded
        # controllers work there. runc switches it to threaded when it can.
        try:
            t = self.fs.read(posixpath.join(d, "cgroup.type")).strip()
        except OSError:
            return
        if t == "domain invalid":
            try:
                self.fs.write(posixpath.join(d, "cgroup.type"), "threaded")
            except OSError:
                pass

    def _enable(self, d: str, avail: list[str]) -> None:
        path = posixpath.join(d, "cgroup.subtree_control")
        try:
            self.fs.write(path, " ".join("+" + c for c in avail))
        except OSError:
            for c in avail:
                try:
                    self.fs.write(path, "+" + c)
                except OSError:
                    pass  # refused ones surface in apply() as "not available"

    # --- apply --------------------------------------------------------------------------
    def controllers(self) -> set[str]:
        if self._controllers is None:
            text = self._read(posixpath.join(self.path, "cgroup.controllers"))
            self._controllers = set(text.split())
        return self._controllers

    def need(self, ctrl: str, field: str) -> str:
        if ctrl not in self.controllers():
            have = " ".join(sorted(self.controllers())) or "none"
            raise NotSupported(
                f"{field} is set but the cgroup v2 controller {ctrl!r} is not available in "
                f"{self.path} (available: {have})",
                hint="enable it in the parent's cgroup.subtree_control; on a hybrid host "
                     "the v1 hierarchies own the controllers")
        return self.path

    def apply(self, resources: dict | None) -> list[str]:
        return self._set(resources, devices=True)

    def update(self, resources: dict | None) -> list[str]:
        # As `runc update`: device rules are not touched (SkipDevices).
        return self._set(resources, devices=False)

    def _set(self, resources: dict | None, *, devices: bool) -> list[str]:
        validate_resources(resources)
        if not resources:
            return []
        self._controllers = None  # re-read: create() may have enabled some
        w: list[str] = []
        self._check_threaded(resources)
        # runc fs2.Set order: pids, memory, io, cpu, devices, cpuset, hugetlb, rdma,
        # unified last.
        set_pids(self, resources, w)
        set_memory(self, resources, w)
        set_io(self, resources, w)
        set_cpu(self, resources, w)
        if devices:
            set_devices(self, resources, w)
        set_cpuset(self, resources, w)
        set_hugetlb(self, resources, w)
        set_rdma(self, resources, w)
        set_network(self, resources, w)
        set_unified(self, resources, w)
        return w

    # --- freezer (cgroup.freeze, kernel 5.2+) -------------------------------------------
    freeze_timeout: float = 10.0  # runc fs2 waitFrozen: 1000 x 10 ms

    def _set_freeze(self, value: str) -> None:
        path = posixpath.join(self.path, "cgroup.freeze")
        if not self.fs.exists(path):
            if value == "0":
                return  # nothing can be frozen without the freezer: thawing is a no-op
            raise NotSupported(f"cgroup: cannot freeze {self.path}: cgroup.freeze does not "
                               "exist (kernel older than 5.2)")
        self._write(path, value)

    def freeze(self) -> None:
        self._set_freeze("1")
        try:
            self._wait_frozen()
        except BaseException:
            try:
                self.fs.write(posixpath.join(self.path, "cgroup.freeze"), "0")
            except OSError:
                pass
            raise

    def _wait_frozen(self) -> None:
        """cgroup.freeze only asks; "frozen 1" in cgroup.events says it is done."""
        path = posixpath.join(self.path, "cgroup.events")
        deadline = time.monotonic() + self.freeze_timeout
        while True:
            events = _flat(self._read(path))
            if "frozen" not in events:
                raise NotSupported(f"cgroup: {path} has no 'frozen' line")
            if events["frozen"] == "1":
                return
            if time.monotonic() > deadline:
                raise Unavailable(f"cgroup: timeout of {self.freeze_timeout:g}s reached "
                                  f"waiting for {self.path} to freeze")
            time.sleep(0.01)

    def thaw(self) -> None:
        self._set_freeze("0")

    def frozen(self) -> bool:
        try:
            text = self.fs.read(posixpath.join(self.path, "cgroup.freeze")).strip()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise cgroup_error(e, "read", posixpath.join(self.path, "cgroup.freeze")) from None
        if text != "1":
            return False
        self._wait_frozen()  # asked to freeze: report it once it is (runc readFreezer)
        return True

    # --- statistics and OOM ------------------------------------------------------------
    def stats(self) -> dict:
        from .stats import v2_stats

        return v2_stats(self.fs, self.path)

    def oom_kill_count(self) -> int:
        try:
            text = self.fs.read(posixpath.join(self.path, "memory.events"))
        except OSError:
            return 0
        v = _flat(text).get("oom_kill", "0")
        return int(v) if v.isdigit() else 0

    def under_oom(self) -> bool:
        # cgroup v2 cannot disable the OOM killer, so tasks never wait in an OOM state.
        return False

    def _check_threaded(self, r: dict) -> None:
        mem, cpu = r.get("memory") or {}, r.get("cpu") or {}
        domain = (any(_nz(mem, k) for k in ("limit", "swap", "reservation"))
                  or blkio_wanted(r.get("blockIO") or {}) or bool(r.get("hugepageLimits"))
                  or any(_nz(cpu, k) for k in ("shares", "quota", "period")))
        if not domain:
            return
        try:
            t = self.fs.read(posixpath.join(self.path, "cgroup.type")).strip()
        except OSError:
            return
        if t in ("threaded", "domain threaded", "domain invalid"):
            raise FailedPrecondition(f"cannot use domain controllers (memory, io, cpu, "
                                     f"hugetlb) in {self.path}: it is in {t} mode")


# --- controllers -----------------------------------------------------------------------

def set_pids(m: V2Manager, r: dict, w: list[str]) -> None:
    pids = r.get("pids")
    if pids is None:
        return
    p = m.need("pids", f"{_R}.pids")
    limit = pids["limit"]
    if limit == 0:
        return  # runc 1.1: 0 leaves pids.max alone
    m._write(posixpath.join(p, "pids.max"), str(limit) if limit > 0 else "max")


def set_memory(m: V2Manager, r: dict, w: list[str]) -> None:
    mem = r.get("memory") or {}
    if not mem:
        return
    f = f"{_R}.memory"
    if mem.get("kernel") or mem.get("kernelTCP"):
        w.append(f"{f}.kernel/kernelTCP: kernel memory settings are ignored on cgroup v2")
    if mem.get("swappiness") is not None and mem["swappiness"] != -1:
        w.append(f"{f}.swappiness ignored: cgroup v2 has no per-cgroup swappiness")
    if mem.get("disableOOMKiller"):
        w.append(f"{f}.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer")
    if mem.get("useHierarchy") is False:
        w.append(f"{f}.useHierarchy=false ignored: cgroup v2 is always hierarchical")
    limit, swap, reservation = _nz(mem, "limit"), _nz(mem, "swap"), _nz(mem, "reservation")
    if not (limit or swap or reservation):
        return
    p = m.need("memory", f)
    swap2 = swap_to_v2(swap, limit)
    swap_s = num_to_str(swap2)
    if swap_s == "" and swap2 == 0 and swap > 0:
        swap_s = "0"  # memory == memory+swap: no swap at all
    if swap_s:
        m._write_if_exists(posixpath.join(p, "memory.swap.max"), swap_s, w, f"{f}.swap")
    if num_to_str(limit):
        m._write(posixpath.join(p, "memory.max"), num_to_str(limit))
    if num_to_str(reservation):
        m._write(posixpath.join(p, "memory.low"), num_to_str(reservation))


def _dev(d: dict) -> str:
    return f"{d.get('major', 0)}:{d.get('minor', 0)}"


def set_io(m: V2Manager, r: dict, w: list[str]) -> None:
    b = r.get("blockIO") or {}
    if not blkio_wanted(b):
        return
    f = f"{_R}.blockIO"
    p = m.need("io", f)
    bfq = posixpath.join(p, "io.bfq.weight")
    if _nz(b, "weight"):
        if m.fs.exists(bfq):
            m._write(bfq, str(b["weight"]))
        else:
            m._write_if_exists(posixpath.join(p, "io.weight"),
                               str(blkio_weight_to_io_weight(b["weight"])), w, f"{f}.weight")
    if _nz(b, "leafWeight"):
        w.append(f"{f}.leafWeight ignored: cgroup v2 has no leaf weights")
    for wd in b.get("weightDevice") or []:
        if _nz(wd, "weight"):
            m._write_if_exists(bfq, f"{_dev(wd)} {wd['weight']}", w, f"{f}.weightDevice")
    for key, knob in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"),
                      ("throttleWriteIOPSDevice", "wiops")):
        for td in b.get(key) or []:
            m._write(posixpath.join(p, "io.max"), f"{_dev(td)} {knob}={td.get('rate', 0)}")


def set_cpu(m: V2Manager, r: dict, w: list[str]) -> None:
    c = r.get("cpu") or {}
    f = f"{_R}.cpu"
    if _nz(c, "realtimeRuntime") or _nz(c, "realtimePeriod"):
        w.append(f"{f}.realtimeRuntime/realtimePeriod ignored: cgroup v2 has no "
                 "real-time group scheduling knobs")
    weight = shares_to_weight(_nz(c, "shares"))
    quota, period = _nz(c, "quota"), _nz(c, "period")
    idle, burst = c.get("idle"), c.get("burst")
    if not (weight or quota or period or idle is not None or burst is not None):
        return
    p = m.need("cpu", f)
    if weight:
        m._write(posixpath.join(p, "cpu.weight"), str(weight))
    if quota or period:
        # fs2/cpu.go: "max" unless a positive quota; the kernel's default period.
        value = (str(quota) if quota > 0 else "max") + " " + str(period or 100000)
        m._write(posixpath.join(p, "cpu.max"), value)
    if burst is not None:
        m._write_if_exists(posixpath.join(p, "cpu.max.burst"), str(burst), w, f"{f}.burst")
    if idle is not None:
        m._write_if_exists(posixpath.join(p, "cpu.idle"), str(idle), w, f"{f}.idle")


def set_devices(m: V2Manager, r: dict, w: list[str]) -> None:
    if r.get("devices") is None:
        return
    w.append(f"{_R}.devices not enforced: cgroup v2 device rules need an eBPF program "
             "(BPF_CGROUP_DEVICE), which hutch does not attach yet")


def set_cpuset(m: V2Manager, r: dict, w: list[str]) -> None:
    c = r.get("cpu") or {}
    for key in ("cpus", "mems"):
        if c.get(key):
            p = m.need("cpuset", f"{_R}.cpu.{key}")
            m._write(posixpath.join(p, f"cpuset.{key}"), c[key])


def set_hugetlb(m: V2Manager, r: dict, w: list[str]) -> None:
    hps = r.get("hugepageLimits") or []
    if not hps:
        return
    f = f"{_R}.hugepageLimits"
    p = m.need("hugetlb", f)
    for h in hps:
        path = posixpath.join(p, f"hugetlb.{h['pageSize']}.max")
        if not m.fs.exists(path):
            raise NotSupported(f"{f}: huge page size {h['pageSize']} is not supported here")
        m._write(path, str(h.get("limit", 0)))


def set_rdma(m: V2Manager, r: dict, w: list[str]) -> None:
    rd = r.get("rdma") or {}
    if not rd:
        return
    p = m.need("rdma", f"{_R}.rdma")
    for dev, lim in rd.items():
        m._write(posixpath.join(p, "rdma.max"), rdma_line(dev, lim))


def set_network(m: V2Manager, r: dict, w: list[str]) -> None:
    n = r.get("network") or {}
    if n.get("classID") is not None or n.get("priorities"):
        w.append(f"{_R}.network ignored: net_cls/net_prio do not exist on cgroup v2")


def set_unified(m: V2Manager, r: dict, w: list[str]) -> None:
    """Last, so explicit unified keys override the converted values (runc's order)."""
    for key, value in (r.get("unified") or {}).items():
        path = posixpath.join(m.path, key)
        try:
            m.fs.write(path, value)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EPERM, errno.EACCES):
                ctrl = key.split(".", 1)[0]
                if "." in key and ctrl != "cgroup" and ctrl not in m.controllers():
                    raise NotSupported(
                        f"{_R}.unified.{key} can't be set: controller {ctrl!r} is not "
                        f"available in {m.path}") from None
            raise cgroup_error(e, "write", path, value) from None
