"""What `runc update` does before it touches the cgroup: flags -> resources -> merged.

runc 1.1 update.go starts from a LinuxResources whose memory, cpu, blockIO.weight and
pids fields are all ZERO, overlays `-r FILE` (or `-` for stdin) or the flags on it, then
copies those fields over the container's stored resources: a field not given becomes 0,
which the managers read as "leave the cgroup file alone". Everything else the container
was created with (devices, swappiness, hugepages, throttles, ...) is kept and re-applied.
The one exception: a lone cpu period or quota keeps the other's stored value, so both
can be written together. The caller saves the merged resources and passes them to
manager.update(), which skips device rules as runc does.
"""

from __future__ import annotations

import copy

from hutch.errors import InvalidArgument

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """docker/go-units RAMInBytes: "64m", "1.5G", "512KiB", "100" -> bytes (binary)."""
    s = text.strip()
    low = s.lower()
    for suffix in ("ib", "b"):
        if low.endswith(suffix) and len(low) > len(suffix):
            low = low[: -len(suffix)]
            break
    unit = ""
    if low and low[-1] in "kmgtp":
        unit, low = low[-1], low[:-1]
    low = low.rstrip(" ")
    try:
        if not low or low.startswith(("-", "+")):
            raise ValueError
        number = float(low)
    except ValueError:
        raise InvalidArgument(f"invalid size: {text!r}") from None
    return int(number * _UNITS[unit])


# runc update flag -> (section, field, parser)
def _uint(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise InvalidArgument(f"invalid value {text!r}: not an unsigned integer") from None
    if v < 0:
        raise InvalidArgument(f"invalid value {text!r}: not an unsigned integer")
    return v


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise InvalidArgument(f"invalid value {text!r}: not an integer") from None


def _mem(text: str) -> int:
    return -1 if text.strip() == "-1" else ram_in_bytes(text)


FLAGS = {
    "cpu-period": ("cpu", "period", _uint),
    "cpu-rt-period": ("cpu", "realtimePeriod", _uint),
    "cpu-share": ("cpu", "shares", _uint),
    "cpu-quota": ("cpu", "quota", _int),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", _int),
    "memory": ("memory", "limit", _mem),
    "memory-swap": ("memory", "swap", _mem),
    "kernel-memory": ("memory", "kernel", _mem),
    "kernel-memory-tcp": ("memory", "kernelTCP", _mem),
    "memory-reservation": ("memory", "reservation", _mem),
}


def zero_resources() -> dict:
    """runc update's starting point: every updatable field present and zero."""
    return {
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                "realtimePeriod": 0, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0},
        "pids": {"limit": 0},
    }


def changes_from_flags(flags: dict[str, str]) -> dict:
    """runc update's flags (name without "--" -> string value) as resources."""
    r = zero_resources()
    for name, value in flags.items():
        if value in (None, ""):
            continue
        if name == "blkio-weight":
            r["blockIO"]["weight"] = _uint(value)
        elif name == "cpuset-cpus":
            r["cpu"]["cpus"] = value
        elif name == "cpuset-mems":
            r["cpu"]["mems"] = value
        elif name == "pids-limit":
            r["pids"]["limit"] = _int(value)
        elif name in FLAGS:
            section, field, parse = FLAGS[name]
            r[section][field] = parse(value)
        else:
            raise InvalidArgument(f"update: unknown resource flag --{name}")
    return r


def changes_from_json(doc: object) -> dict:
    """`runc update -r FILE`: the file's linux.resources-shaped object over the zeros."""
    if not isinstance(doc, dict):
        raise InvalidArgument("update: the resources file must hold a JSON object")
    r = zero_resources()
    for key, value in doc.items():
        if isinstance(value, dict) and isinstance(r.get(key), dict):
            r[key].update(value)  # Go's json decodes into the existing struct
        else:
            r[key] = value
    return r


def merge_update(stored: dict | None, changes: dict) -> dict:
    """The container's resources after `runc update` (what to save and to apply)."""
    out = copy.deepcopy(stored or {})
    zero = zero_resources()
    mem_in = {**zero["memory"], **(changes.get("memory") or {})}
    cpu_in = {**zero["cpu"], **(changes.get("cpu") or {})}
    mem = out.get("memory") or {}
    out["memory"] = mem
    for k in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        mem[k] = mem_in[k]
    cpu = out.get("cpu") or {}
    out["cpu"] = cpu
    p, q = cpu_in["period"], cpu_in["quota"]
    if (p == 0) == (q == 0):  # both given or neither: both replaced
        cpu["period"], cpu["quota"] = p, q
    elif p:
        cpu["period"] = p  # the stored quota stays and is written again
    else:
        cpu["quota"] = q
    for k in ("shares", "realtimePeriod", "realtimeRuntime", "cpus", "mems"):
        cpu[k] = cpu_in[k]
    blkio = out.get("blockIO") or {}
    out["blockIO"] = blkio
    blkio["weight"] = (changes.get("blockIO") or {}).get("weight", 0)
    out["pids"] = {"limit": (changes.get("pids") or {}).get("limit", 0)}
    if changes.get("unified") is not None:
        out["unified"] = changes["unified"]
    else:
        out.pop("unified", None)
    return out
