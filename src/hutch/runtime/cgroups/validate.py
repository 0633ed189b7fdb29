"""validate_resources: pure checks of OCI linux.resources before anything is written.

Types follow the runtime-spec's Go types (config-linux.md): int64 fields accept -1
("unlimited") but no other negative value, uint64/uint16 fields accept no negative value.
JSON booleans are not numbers here even though Python's bool is an int.
"""

from __future__ import annotations

from hutch.errors import SpecError

_BASE = "linux.resources"
_CPU_LIST_CHARS = frozenset("0123456789,- \t\n")  # no `re`: it costs ms at start-up
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def _err(field: str, msg: str) -> SpecError:
    return SpecError(f"{field}: {msg}", field=field)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(d: dict, key: str, field: str, *, lo: int, hi: int = _INT64_MAX) -> None:
    if key not in d or d[key] is None:
        return
    v = d[key]
    if not _is_int(v):
        raise _err(f"{field}.{key}", f"must be an integer, got {type(v).__name__}")
    if v < lo or v > hi:
        raise _err(f"{field}.{key}", f"{v} out of range [{lo}, {hi}]")


def _bool(d: dict, key: str, field: str) -> None:
    if key in d and d[key] is not None and not isinstance(d[key], bool):
        raise _err(f"{field}.{key}", f"must be a boolean, got {type(d[key]).__name__}")


def _dict(v: object, field: str) -> dict:
    if not isinstance(v, dict):
        raise _err(field, f"must be an object, got {type(v).__name__}")
    return v


def _list(v: object, field: str) -> list:
    if not isinstance(v, list):
        raise _err(field, f"must be an array, got {type(v).__name__}")
    return v


def _memory(m: dict, f: str) -> None:
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        _int(m, key, f, lo=-1)
    _int(m, "swappiness", f, lo=0, hi=100)
    for key in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
        _bool(m, key, f)
    limit, swap = m.get("limit") or 0, m.get("swap") or 0
    if limit > 0 and swap > 0 and swap < limit:
        # memory.swap is memory+swap (v1 memsw): the kernel refuses it below the limit.
        raise _err(f"{f}.swap", f"memory+swap limit {swap} is below the memory limit {limit}")


def _cpu(c: dict, f: str) -> None:
    _int(c, "shares", f, lo=0, hi=_UINT64_MAX)
    _int(c, "quota", f, lo=-1)
    _int(c, "burst", f, lo=0, hi=_UINT64_MAX)
    _int(c, "period", f, lo=0, hi=_UINT64_MAX)
    _int(c, "realtimeRuntime", f, lo=-1)
    _int(c, "realtimePeriod", f, lo=0, hi=_UINT64_MAX)
    _int(c, "idle", f, lo=0, hi=1)
    for key in ("cpus", "mems"):
        v = c.get(key)
        if v is None:
            continue
        if not isinstance(v, str) or not set(v) <= _CPU_LIST_CHARS:
            raise _err(f"{f}.{key}", f"must be a list like '0-3,5', got {v!r}")


def _device_numbers(d: dict, f: str) -> None:
    _int(d, "major", f, lo=-1)
    _int(d, "minor", f, lo=-1)


def _block_io(b: dict, f: str) -> None:
    _int(b, "weight", f, lo=0, hi=1000)
    _int(b, "leafWeight", f, lo=0, hi=1000)
    for i, wd in enumerate(_list(b.get("weightDevice", []) or [], f"{f}.weightDevice")):
        g = f"{f}.weightDevice[{i}]"
        wd = _dict(wd, g)
        _device_numbers(wd, g)
        _int(wd, "weight", g, lo=0, hi=1000)
        _int(wd, "leafWeight", g, lo=0, hi=1000)
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
        for i, td in enumerate(_list(b.get(key, []) or [], f"{f}.{key}")):
            g = f"{f}.{key}[{i}]"
            td = _dict(td, g)
            _device_numbers(td, g)
            _int(td, "rate", g, lo=0, hi=_UINT64_MAX)


def _devices(devs: list, f: str) -> None:
    for i, d in enumerate(devs):
        g = f"{f}[{i}]"
        d = _dict(d, g)
        if not isinstance(d.get("allow"), bool):
            raise _err(f"{g}.allow", "is required and must be a boolean")
        t = d.get("type", "a")
        if t not in (None, "a", "b", "c"):
            raise _err(f"{g}.type", f"must be 'a', 'b' or 'c', got {t!r}")
        _device_numbers(d, g)
        acc = d.get("access", "rwm")
        if acc is not None and (not isinstance(acc, str) or set(acc) - set("rwm")):
            raise _err(f"{g}.access", f"must be made of 'r', 'w', 'm', got {acc!r}")


def _is_page_size(ps: object) -> bool:
    """'2MB', '1GB', '64KB' (the hugetlb.<size>.* file names)."""
    if not isinstance(ps, str) or not ps.endswith("B"):
        return False
    num = ps[:-1]
    if num and num[-1] in "KMGTP":
        num = num[:-1]
    return num.isascii() and num.isdigit()


def _hugepages(hps: list, f: str) -> None:
    for i, h in enumerate(hps):
        g = f"{f}[{i}]"
        h = _dict(h, g)
        ps = h.get("pageSize")
        if not _is_page_size(ps):
            raise _err(f"{g}.pageSize", f"must be a size like '2MB', got {ps!r}")
        _int(h, "limit", g, lo=0, hi=_UINT64_MAX)


def _network(n: dict, f: str) -> None:
    _int(n, "classID", f, lo=0, hi=2**32 - 1)
    for i, p in enumerate(_list(n.get("priorities", []) or [], f"{f}.priorities")):
        g = f"{f}.priorities[{i}]"
        p = _dict(p, g)
        name = p.get("name")
        if not isinstance(name, str) or not name or "/" in name or " " in name:
            raise _err(f"{g}.name", f"must be an interface name, got {name!r}")
        _int(p, "priority", g, lo=0, hi=2**32 - 1)


def _rdma(r: dict, f: str) -> None:
    for dev, lim in r.items():
        g = f"{f}.{dev}"
        if not isinstance(dev, str) or not dev or " " in dev or "/" in dev:
            raise _err(f, f"bad device name {dev!r}")
        lim = _dict(lim, g)
        _int(lim, "hcaHandles", g, lo=0, hi=2**32 - 1)
        _int(lim, "hcaObjects", g, lo=0, hi=2**32 - 1)


def validate_unified_key(key: object, field: str = f"{_BASE}.unified") -> None:
    if not isinstance(key, str) or not key:
        raise _err(field, f"key must be a non-empty string, got {key!r}")
    if "/" in key or ".." in key or key.startswith(".") or "\0" in key:
        raise _err(f"{field}.{key}", "must be a file name in the cgroup (no '/' or '..')")


def _unified(u: dict, f: str) -> None:
    for k, v in u.items():
        validate_unified_key(k, f)
        if not isinstance(v, str):
            raise _err(f"{f}.{k}", f"value must be a string, got {type(v).__name__}")


def validate_resources(resources: dict | None) -> None:
    """Raise SpecError(field=...) for a malformed linux.resources; None is fine."""
    if resources is None:
        return
    r = _dict(resources, _BASE)
    checks = (
        ("memory", _dict, _memory), ("cpu", _dict, _cpu), ("blockIO", _dict, _block_io),
        ("devices", _list, _devices), ("hugepageLimits", _list, _hugepages),
        ("network", _dict, _network), ("rdma", _dict, _rdma), ("unified", _dict, _unified),
    )
    for key, shape, check in checks:
        if r.get(key) is None:
            continue
        f = f"{_BASE}.{key}"
        check(shape(r[key], f), f)
    if r.get("pids") is not None:
        p = _dict(r["pids"], f"{_BASE}.pids")
        if "limit" not in p:
            raise _err(f"{_BASE}.pids.limit", "is required")
        _int(p, "limit", f"{_BASE}.pids", lo=-(2**63))
