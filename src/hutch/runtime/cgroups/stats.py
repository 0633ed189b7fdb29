"""Cgroup statistics in the shape `runc events --stats` prints (runc 1.1).

runc reads libcontainer/cgroups.Stats in fs/*.go (v1) and fs2/*.go (v2) GetStats, then
events.go convertLibcontainerStats copies it into types.Stats, which encoding/json
marshals with `omitempty` on most numbers and lists. We build that JSON object directly:
field order as in the Go structs, zero values dropped where Go drops them, map keys
sorted as Go sorts them. Loaded lazily (only `events`/`stats` need it).

The parsers are plain functions on file text, so unit tests feed them fake trees.
"""

from __future__ import annotations

import posixpath

from hutch.errors import HutchError

UINT64_MAX = 2**64 - 1
_NS_PER_TICK = 1_000_000_000 // 100  # cpuacct.stat counts USER_HZ (100) ticks


# --- parsers ------------------------------------------------------------------------------

def parse_uint(text: str) -> int:
    """runc's fscommon.ParseUint: "max" -> MaxUint64; a negative number -> 0."""
    t = text.strip()
    if t == "max":
        return UINT64_MAX
    try:
        v = int(t)
    except ValueError:
        raise ValueError(f"not an unsigned integer: {t!r}") from None
    return max(v, 0)


def parse_key_values(text: str) -> dict[str, int]:
    """Flat keyed files ("key value" per line): memory.stat, cpu.stat, memory.events..."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parse_uint(parts[1])
        elif parts:
            raise ValueError(f"malformed line {line!r}")
    return out


def parse_cpu_list(text: str) -> list[int]:
    """cpuset.cpus/mems: "0-3,5" -> [0, 1, 2, 3, 5] (runc's getCpusetStat)."""
    out: list[int] = []
    t = text.strip()
    if not t:
        return out
    for part in t.split(","):
        lo, sep, hi = part.partition("-")
        if sep:
            a, b = int(lo), int(hi)
            if a > b:
                raise ValueError(f"invalid cpu list {t!r}")
            out.extend(range(a, b + 1))
        else:
            out.append(int(part))
    return out


def parse_blkio(text: str) -> list[dict]:
    """blkio.*: "8:0 Read 1282048" (or "8:0 6792") lines; the "Total N" line skipped."""
    out: list[dict] = []
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if not fields:
            continue
        if len(fields) < 3:
            if len(fields) == 2 and fields[0] == "Total":
                continue
            raise ValueError(f"invalid blkio line {line!r}")
        op, value = ("", fields[2]) if len(fields) == 3 else (fields[2], fields[3])
        out.append({"major": int(fields[0]), "minor": int(fields[1]), "op": op,
                    "value": int(value)})
    return out


def parse_io_stat(text: str) -> tuple[list[dict], list[dict]]:
    """cgroup v2 io.stat -> (service bytes, serviced) entries as runc's fs2 statIo."""
    by_name = {"rbytes": (0, "Read"), "wbytes": (0, "Write"),
               "rios": (1, "Read"), "wios": (1, "Write")}
    lists: tuple[list[dict], list[dict]] = ([], [])
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        major, _, minor = fields[0].partition(":")
        for item in fields[1:]:
            name, _, value = item.partition("=")
            if name in by_name:
                which, op = by_name[name]
                lists[which].append({"major": int(major), "minor": int(minor), "op": op,
                                     "value": int(value)})
    return lists


def parse_usage_all(text: str) -> tuple[list[int], list[int]]:
    """cpuacct.usage_all ("cpu user system" header, then one line per cpu) ->
    (per-cpu kernel ns, per-cpu user ns)."""
    kernel: list[int] = []
    user: list[int] = []
    for line in text.splitlines()[1:]:
        fields = line.split(" ")
        if len(fields) != 3:
            continue
        user.append(int(fields[1]))
        kernel.append(int(fields[2]))
    return kernel, user


def hugepage_size_name(dirname: str) -> str | None:
    """"hugepages-2048kB" -> "2MB" (runc's HugePageSizes / units.CustomSize)."""
    if not dirname.startswith("hugepages-") or not dirname.endswith("kB"):
        return None
    try:
        size = float(int(dirname[len("hugepages-"):-2]) * 1024)
    except ValueError:
        return None
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:g}{units[i]}"


# --- Go's omitempty ------------------------------------------------------------------------

def _omit(d: dict, *keys: str) -> dict:
    """Drop the omitempty keys whose value is Go's zero value (0, "", nil, empty list)."""
    for k in keys:
        if not d.get(k):
            d.pop(k, None)
    return d


def memory_entry(limit: int = 0, usage: int = 0, max_usage: int = 0, failcnt: int = 0) -> dict:
    return _omit({"limit": limit, "usage": usage, "max": max_usage, "failcnt": failcnt},
                 "usage", "max")


def cpuset_entry(cpus: list[int] | None = None, mems: list[int] | None = None,
                 **numbers: int) -> dict:
    d: dict = {"cpus": cpus or [], "cpu_exclusive": numbers.get("cpu_exclusive", 0),
               "mems": mems or []}
    for k in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
              "memory_spread_slab", "memory_pressure", "sched_load_balance",
              "sched_relax_domain_level"):
        d[k] = numbers.get(k, 0)
    return _omit(d, "cpus", "mems")


def empty_stats() -> dict:
    """types.Stats with nothing read: what runc prints for a cgroup with no data."""
    return {
        "cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
        "cpuset": cpuset_entry(),
        "memory": {"usage": memory_entry(), "swap": memory_entry(),
                   "kernel": memory_entry(), "kernelTCP": memory_entry()},
        "pids": {},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }


def set_cpu_usage(s: dict, total: int = 0, percpu: list[int] | None = None,
                  percpu_kernel: list[int] | None = None,
                  percpu_user: list[int] | None = None, kernel: int = 0,
                  user: int = 0) -> None:
    s["cpu"]["usage"] = _omit({"total": total, "percpu": percpu or [],
                               "percpu_kernel": percpu_kernel or [],
                               "percpu_user": percpu_user or [],
                               "kernel": kernel, "user": user},
                              "total", "percpu", "percpu_kernel", "percpu_user")


def set_throttling(s: dict, periods: int, throttled_periods: int, throttled_time: int) -> None:
    s["cpu"]["throttling"] = _omit({"periods": periods, "throttledPeriods": throttled_periods,
                                    "throttledTime": throttled_time},
                                   "periods", "throttledPeriods", "throttledTime")


def set_memory(s: dict, raw: dict[str, int], cache: int, usage: dict, swap: dict,
               kernel: dict | None = None, kernel_tcp: dict | None = None) -> None:
    mem: dict = {"cache": cache, "usage": usage, "swap": swap,
                 "kernel": kernel or memory_entry(), "kernelTCP": kernel_tcp or memory_entry(),
                 "raw": dict(sorted(raw.items()))}
    s["memory"] = _omit(mem, "cache", "raw")


def set_pids(s: dict, current: int, limit: int) -> None:
    # "max" (no limit) is reported as 0, as runc has always done.
    s["pids"] = _omit({"current": current, "limit": 0 if limit == UINT64_MAX else limit},
                      "current", "limit")


BLKIO_KEYS = ("ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive",
              "ioServiceTimeRecursive", "ioWaitTimeRecursive", "ioMergedRecursive",
              "ioTimeRecursive", "sectorsRecursive")


def set_blkio(s: dict, lists: dict[str, list[dict]]) -> None:
    s["blkio"] = {k: [_omit(dict(e), "major", "minor", "op", "value") for e in lists[k]]
                  for k in BLKIO_KEYS if lists.get(k)}


def set_hugetlb(s: dict, sizes: dict[str, tuple[int, int, int]]) -> None:
    s["hugetlb"] = {k: _omit({"usage": u, "max": m, "failcnt": f}, "usage", "max")
                    for k, (u, m, f) in sorted(sizes.items())}


# --- readers on a manager's directories ------------------------------------------------------

class _Reader:
    """Reads through the manager's CgroupFS; a missing optional file is None."""

    def __init__(self, fs) -> None:
        self.fs = fs

    def text(self, d: str, name: str) -> str | None:
        try:
            return self.fs.read(posixpath.join(d, name))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise HutchError(f"cgroup stats: cannot read {posixpath.join(d, name)}: "
                             f"{e.strerror}") from None

    def uint(self, d: str, name: str) -> int | None:
        t = self.text(d, name)
        return None if t is None else parse_uint(t)

    def int(self, d: str, name: str) -> int | None:
        t = self.text(d, name)
        return None if t is None else int(t.strip())


def hugepage_sizes(fs) -> list[str]:
    try:
        names = fs.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    return sorted(n for n in (hugepage_size_name(x) for x in names) if n)


# blkio files in runc's order of preference: BFQ debug, BFQ, CFQ, throttle (recursive),
# throttle. A group is used if its first file has entries; the first group that has
# them all wins (runc fs/blkio.go GetStats).
_BLKIO_GROUPS = (
    (("blkio.bfq.sectors_recursive", "sectorsRecursive"),
     ("blkio.bfq.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.bfq.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.bfq.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.bfq.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.bfq.time_recursive", "ioTimeRecursive"),
     ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.sectors_recursive", "sectorsRecursive"),
     ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.time_recursive", "ioTimeRecursive"),
     ("blkio.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")),
)


def _v1_blkio(r: _Reader, d: str) -> dict[str, list[dict]]:
    lists: dict[str, list[dict]] = {}
    for group in _BLKIO_GROUPS:
        for i, (fname, key) in enumerate(group):
            text = r.text(d, fname)
            entries = parse_blkio(text) if text is not None else []
            if not entries:
                if i == 0:
                    break  # this kind of statistics is not there: try the next group
                return lists  # runc stops with what it has
            lists[key] = entries
            if i == len(group) - 1:
                return lists
    return lists


def _memory_data(r: _Reader, d: str, prefix: str, optional: bool) -> dict:
    usage = r.uint(d, prefix + ".usage_in_bytes")
    if usage is None:
        if optional:
            return memory_entry()  # swap (memsw) and kmem accounting are optional
        raise HutchError(f"cgroup stats: {posixpath.join(d, prefix)}.usage_in_bytes is missing")
    return memory_entry(limit=r.uint(d, prefix + ".limit_in_bytes") or 0, usage=usage,
                        max_usage=r.uint(d, prefix + ".max_usage_in_bytes") or 0,
                        failcnt=r.uint(d, prefix + ".failcnt") or 0)


def v1_stats(fs, paths: dict[str, str]) -> dict:
    r = _Reader(fs)
    s = empty_stats()
    d = paths.get("cpu")
    if d:
        cs = r.text(d, "cpu.stat")
        if cs is not None:
            kv = parse_key_values(cs)
            set_throttling(s, kv.get("nr_periods", 0), kv.get("nr_throttled", 0),
                           kv.get("throttled_time", 0))
    d = paths.get("cpuacct")
    if d and r.text(d, "cpuacct.usage") is not None:
        st = (r.text(d, "cpuacct.stat") or "").split()
        if len(st) < 4 or st[0] != "user" or st[2] != "system":
            raise HutchError(f"cgroup stats: unexpected {d}/cpuacct.stat: {' '.join(st)!r}")
        percpu = [int(x) for x in (r.text(d, "cpuacct.usage_percpu") or "").split()]
        all_text = r.text(d, "cpuacct.usage_all")
        pk, pu = parse_usage_all(all_text) if all_text is not None else ([], [])
        set_cpu_usage(s, total=r.uint(d, "cpuacct.usage") or 0, percpu=percpu,
                      percpu_kernel=pk, percpu_user=pu,
                      kernel=int(st[3]) * _NS_PER_TICK, user=int(st[1]) * _NS_PER_TICK)
    d = paths.get("cpuset")
    if d:
        nums = {}
        for k in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                  "memory_spread_page", "memory_spread_slab", "memory_pressure",
                  "sched_load_balance"):
            nums[k] = r.uint(d, "cpuset." + k) or 0
        nums["sched_relax_domain_level"] = r.int(d, "cpuset.sched_relax_domain_level") or 0
        s["cpuset"] = cpuset_entry(parse_cpu_list(r.text(d, "cpuset.cpus") or ""),
                                   parse_cpu_list(r.text(d, "cpuset.mems") or ""), **nums)
    d = paths.get("memory")
    if d:
        ms = r.text(d, "memory.stat")
        if ms is not None:
            raw = parse_key_values(ms)
            set_memory(s, raw, raw.get("cache", 0),
                       usage=_memory_data(r, d, "memory", optional=False),
                       swap=_memory_data(r, d, "memory.memsw", optional=True),
                       kernel=_memory_data(r, d, "memory.kmem", optional=True),
                       kernel_tcp=_memory_data(r, d, "memory.kmem.tcp", optional=True))
    d = paths.get("pids")
    if d:
        cur = r.uint(d, "pids.current")
        if cur is not None:
            set_pids(s, cur, r.uint(d, "pids.max") or 0)
    d = paths.get("blkio")
    if d:
        set_blkio(s, _v1_blkio(r, d))
    d = paths.get("hugetlb")
    if d:
        sizes = {}
        for ps in hugepage_sizes(fs):
            pre = f"hugetlb.{ps}."
            usage = r.uint(d, pre + "usage_in_bytes")
            if usage is not None:
                sizes[ps] = (usage, r.uint(d, pre + "max_usage_in_bytes") or 0,
                             r.uint(d, pre + "failcnt") or 0)
        set_hugetlb(s, sizes)
    return s


def v2_stats(fs, d: str) -> dict:
    r = _Reader(fs)
    s = empty_stats()
    cur = r.uint(d, "pids.current")
    if cur is not None:
        set_pids(s, cur, r.uint(d, "pids.max") or 0)
    else:  # no pids controller: count the processes (runc's statPidsFromCgroupProcs)
        procs = r.text(d, "cgroup.procs") or ""
        set_pids(s, len(procs.split()), 0)
    ms = r.text(d, "memory.stat")
    if ms is not None:
        raw = parse_key_values(ms)
        usage = r.uint(d, "memory.current") or 0
        limit = r.uint(d, "memory.max") or 0
        swap_usage = r.uint(d, "memory.swap.current")
        if swap_usage is None:
            swap = memory_entry(usage=usage)
        else:
            # v1 reports swap as memory+swap: runc adds memory to the v2 swap values.
            swap_limit = r.uint(d, "memory.swap.max") or 0
            if swap_limit != UINT64_MAX:
                swap_limit = min(swap_limit + limit, UINT64_MAX)
            swap = memory_entry(limit=swap_limit, usage=swap_usage + usage)
        set_memory(s, raw, raw.get("file", 0), usage=memory_entry(limit=limit, usage=usage),
                   swap=swap)
    io = r.text(d, "io.stat")
    if io is not None:
        service_bytes, serviced = parse_io_stat(io)
        set_blkio(s, {"ioServiceBytesRecursive": service_bytes,
                      "ioServicedRecursive": serviced})
    cs = r.text(d, "cpu.stat")  # there even without the cpu controller
    if cs is not None:
        kv = parse_key_values(cs)
        set_cpu_usage(s, total=kv.get("usage_usec", 0) * 1000,
                      kernel=kv.get("system_usec", 0) * 1000,
                      user=kv.get("user_usec", 0) * 1000)
        set_throttling(s, kv.get("nr_periods", 0), kv.get("nr_throttled", 0),
                       kv.get("throttled_usec", 0) * 1000)
    sizes = {}
    for ps in hugepage_sizes(fs):
        usage = r.uint(d, f"hugetlb.{ps}.current")
        if usage is None:
            continue
        events = parse_key_values(r.text(d, f"hugetlb.{ps}.events") or "")
        sizes[ps] = (usage, 0, events.get("max", 0))
    set_hugetlb(s, sizes)
    return s
