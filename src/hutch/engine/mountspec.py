"""The -v / --mount / --tmpfs flags, and resolving them into a container's OCI mounts.

Flags follow moby volume/mounts/linux_parser.go (ParseMountRaw, validateMountConfigImpl),
the docker CLI's opts/mount.go (--mount csv) and daemon/oci_linux.go (tmpfs defaults
merged by moby/sys/mount MergeTmpfsOptions), messages word for word where scripts may grep
them. Image VOLUMEs and `-v /ctr` become anonymous volumes unless a user mount sits at
the same destination (daemon/create_unix.go); `resolve_mounts` creates them in a
hutch.engine.volumes.VolumeStore and lists where image content must be copied (copy_up).
Split out of hutch.engine.volumes, which re-exports the public names.
"""

from __future__ import annotations

import contextlib
import csv
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence

from hutch.errors import InvalidArgument, NotSupported
from hutch.util.record import field, record

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from hutch.engine.volumes import Volume, VolumeStore

# check_volume_name and DRIVER come from hutch.engine.volumes inside the functions that
# use them: volumes re-exports this module, so a top-level import would be a cycle.


# --- flags ---------------------------------------------------------------------------------

PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
DEFAULT_PROPAGATION = "rprivate"
_CONSISTENCY = frozenset({"consistent", "cached", "delegated"})  # accepted, meaningless here


@record(frozen=True)
class MountSpec:
    """One user mount, parsed. `flag` is where it came from ("-v", "--mount",
    "--tmpfs"): docker creates missing -v host paths but wants --mount sources to exist,
    and treats `-v /ctr` like an image VOLUME."""

    type: str  # "bind" | "volume" | "tmpfs"
    target: str  # absolute, normalised
    source: str = ""  # host path (bind), volume name ("" = anonymous); "" for tmpfs
    readonly: bool = False
    propagation: str = ""  # bind only; "" = rprivate
    nonrecursive: bool = False  # bind only: "bind" instead of "rbind"
    nocopy: bool = False  # volume only: no copy of the image's content
    labels: dict[str, str] = field(default_factory=dict)  # volume-label, for a new volume
    tmpfs_options: tuple[str, ...] = ()  # tmpfs data as given: size=64m, mode=1777, exec...
    flag: str = "--mount"
    raw: str = ""


def clean_path(p: str) -> str:
    """Go's path.Clean for absolute paths ("//x" is "/x", unlike posixpath)."""
    p = posixpath.normpath(p)
    return "/" + p.lstrip("/") if p.startswith("//") else p


def _mode_ok(mode: str) -> bool:
    """moby linuxValidMountMode: known words, at most one of each kind."""
    if not mode:
        return True
    counts: dict[str, int] = {}
    for o in mode.split(","):
        if o in ("rw", "ro"):
            kind = "rw"
        elif o in ("z", "Z"):
            kind = "label"
        elif o in PROPAGATIONS:
            kind = "propagation"
        elif o == "nocopy":
            kind = "copy"
        elif o in _CONSISTENCY:
            kind = "consistency"
        else:
            return False
        counts[kind] = counts.get(kind, 0) + 1
    return all(n == 1 for n in counts.values())


def _validate(kind: str, source: str, target: str, *, readonly: bool, propagation: str,
              bind_opts: bool, volume_opts: bool, tmpfs_options: Sequence[str] = ()) -> None:
    """moby validateMountConfigImpl (minus the bind-source check, done when resolving)."""
    def fail(msg: str) -> InvalidArgument:
        return InvalidArgument(f'invalid mount config for type "{kind}": {msg}')

    if not target:
        raise fail("field Target must not be empty")
    _check_destination(target, fail)
    if kind == "bind":
        if not source:
            raise fail("field Source must not be empty")
        if propagation and propagation not in PROPAGATIONS:
            raise fail(f"invalid propagation mode: {propagation}")
        if volume_opts:
            raise fail("field VolumeOptions must not be specified")
        if not source.startswith("/"):
            raise fail(f"invalid mount path: '{source}' mount path must be absolute")
    elif kind == "volume":
        if bind_opts:
            raise fail("field BindOptions must not be specified")
        if readonly and not source:
            raise fail("must not set ReadOnly mode when using anonymous volumes")
    elif kind == "tmpfs":
        if bind_opts:
            raise fail("field BindOptions must not be specified")
        if source:
            raise fail("field Source must not be specified")
        try:
            merge_tmpfs_options(list(tmpfs_options))
        except InvalidArgument as e:
            raise fail(str(e)) from None
    else:
        raise fail("mount type unknown")


def _check_destination(target: str, fail=InvalidArgument) -> None:
    if clean_path(target) == "/":
        raise fail("invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise fail(f"invalid mount path: '{target}' mount path must be absolute")


def _absolute_source(source: str, cwd: str | None) -> str:
    # The docker CLI makes "./x" and "." absolute (not "x", which names a volume).
    if source == "." or source.startswith("./"):
        return os.path.normpath(os.path.join(cwd or os.getcwd(), source))
    return source


def parse_volume_flag(text: str, *, cwd: str | None = None) -> MountSpec:
    """`-v [SRC:]DST[:OPTS]`: an absolute SRC is a bind, another SRC a named volume,
    no SRC an anonymous volume. OPTS: ro|rw, z|Z (ignored: no SELinux), a propagation
    mode, nocopy, a consistency mode (ignored)."""
    from hutch.engine.volumes import check_volume_name

    def spec_error() -> InvalidArgument:
        return InvalidArgument(f"invalid volume specification: '{text}'")

    arr = text.split(":", 3)
    if arr[0] == "":
        raise spec_error()
    mode = ""
    if len(arr) == 1:
        source, target = "", arr[0]
    elif len(arr) == 2:
        if _mode_ok(arr[1]):  # "/foo:rw": a destination and a mode is not a volume
            raise spec_error()
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise spec_error()
    if not _mode_ok(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    opts = mode.split(",") if mode else []
    source = _absolute_source(source, cwd)
    kind = "bind" if source.startswith("/") else "volume"
    propagation = next((o for o in opts if o in PROPAGATIONS), "")
    nocopy = "nocopy" in opts
    readonly = "ro" in opts
    try:
        _validate(kind, source, target, readonly=readonly, propagation=propagation,
                  bind_opts=bool(propagation), volume_opts=nocopy)
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid volume specification: '{text}': {e}") from None
    if kind == "volume" and source:
        check_volume_name(source)
    return MountSpec(type=kind, target=clean_path(target),
                     source=clean_path(source) if kind == "bind" else source,
                     readonly=readonly, propagation=propagation, nocopy=nocopy,
                     flag="-v", raw=text)


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _go_bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(value)


_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: binary multiples, "64m" = 64 MiB."""
    m = _RAM.match(text)
    if not m:
        raise ValueError(text)
    factor = 1 << (10 * (" kmgtp".index(m.group(2).lower()) if m.group(2) else 0))
    return int(float(m.group(1)) * factor)


def parse_mount_flag(text: str, *, cwd: str | None = None) -> MountSpec:
    """`--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]` (docker
    CLI opts/mount.go; csv, so values may be quoted)."""
    from hutch.engine.volumes import DRIVER, check_volume_name

    def cli_error(msg: str) -> InvalidArgument:
        return InvalidArgument(f'invalid argument "{text}" for "--mount" flag: {msg}')

    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as e:
        raise cli_error(str(e)) from None
    kind, source, target = "volume", "", ""
    readonly = nonrecursive = nocopy = False
    propagation = ""
    labels: dict[str, str] = {}
    tmpfs_size = tmpfs_mode = ""
    bind_opts = volume_opts = tmpfs_opts = False
    for item in fields:
        key, eq, val = item.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
            elif key == "volume-nocopy":
                nocopy = volume_opts = True
            elif key == "bind-nonrecursive":
                nonrecursive = bind_opts = True
            else:
                raise cli_error(f"invalid field '{item}' must be a key=value pair")
            continue
        try:
            if key == "type":
                kind = val.lower()
            elif key in ("source", "src"):
                source = _absolute_source(val, cwd)
            elif key in ("target", "dst", "destination"):
                target = val
            elif key in ("readonly", "ro"):
                readonly = _go_bool(val)
            elif key == "consistency":
                pass
            elif key == "bind-propagation":
                propagation, bind_opts = val.lower(), True
            elif key == "bind-nonrecursive":
                nonrecursive, bind_opts = _go_bool(val), True
            elif key == "volume-nocopy":
                nocopy, volume_opts = _go_bool(val), True
            elif key == "volume-label":
                k, _, v = val.partition("=")
                if k:
                    labels[k] = v
                volume_opts = True
            elif key == "volume-driver":
                if val != DRIVER:
                    raise NotSupported(f"volume driver {val!r} is not supported: "
                                       "hutch has only the local driver")
                volume_opts = True
            elif key in ("volume-opt", "volume-subpath"):
                raise NotSupported(f"--mount {key} is not supported by hutch")
            elif key == "tmpfs-size":
                tmpfs_size, tmpfs_opts = f"size={_tmpfs_size(ram_in_bytes(val))}", True
            elif key == "tmpfs-mode":
                if not re.fullmatch(r"[0-7]{1,11}", val):
                    raise ValueError(val)
                tmpfs_mode, tmpfs_opts = f"mode={int(val, 8):o}", True
            else:
                raise cli_error(f"unexpected key '{key}' in '{item}'")
        except ValueError:
            raise cli_error(f"invalid value for {key}: {val}") from None
    if not kind:
        raise cli_error("type is required")
    if not target:
        raise cli_error("target is required")
    for opts, prefix, want in ((volume_opts, "volume", "volume"), (bind_opts, "bind", "bind"),
                               (tmpfs_opts, "tmpfs", "tmpfs")):
        if opts and kind != want:
            raise cli_error(f"cannot mix '{prefix}-*' options with mount type '{kind}'")
    # moby ConvertTmpfsOptions: ro, mode, size
    tmpfs = [o for o in ("ro" if kind == "tmpfs" and readonly else "", tmpfs_mode, tmpfs_size)
             if o]
    _validate(kind, source, target, readonly=readonly, propagation=propagation,
              bind_opts=bind_opts, volume_opts=volume_opts, tmpfs_options=tmpfs)
    if kind == "volume" and source:
        check_volume_name(source)
    return MountSpec(type=kind, target=clean_path(target),
                     source=clean_path(source) if kind == "bind" else source,
                     readonly=readonly, propagation=propagation, nonrecursive=nonrecursive,
                     nocopy=nocopy, labels=labels, tmpfs_options=tuple(tmpfs),
                     flag="--mount", raw=text)


def _tmpfs_size(size: int) -> str:
    for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size and size % div == 0:
            return f"{size // div}{suffix}"
    return str(size)


def parse_tmpfs_flag(text: str) -> MountSpec:
    """`--tmpfs /path[:opts]`: opts are mount(8) tmpfs options, passed through (checked
    by merge_tmpfs_options) on top of noexec,nosuid,nodev."""
    path, _, opts = text.partition(":")
    _check_destination(path)
    data = tuple(o for o in opts.split(",") if o) if opts else ()
    merge_tmpfs_options(list(data))
    return MountSpec(type="tmpfs", target=clean_path(path), tmpfs_options=data,
                     flag="--tmpfs", raw=text)


# moby/sys/mount flags.go: options that are flags, by the flag they set or clear (an
# option and its opposite share a key), and the data options tmpfs may take.
_TMPFS_FLAG_KEY = {
    "ro": "rdonly", "rw": "rdonly", "suid": "nosuid", "nosuid": "nosuid",
    "dev": "nodev", "nodev": "nodev", "exec": "noexec", "noexec": "noexec",
    "sync": "sync", "async": "sync", "dirsync": "dirsync", "remount": "remount",
    "mand": "mand", "nomand": "mand", "atime": "noatime", "noatime": "noatime",
    "diratime": "nodiratime", "nodiratime": "nodiratime", "relatime": "relatime",
    "norelatime": "relatime", "strictatime": "strictatime", "nostrictatime": "strictatime",
    **{p: "propagation" for p in (*PROPAGATIONS, "unbindable", "runbindable", "bind",
                                  "rbind")},
}
_TMPFS_DATA = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev", DEFAULT_PROPAGATION)


def merge_tmpfs_options(options: Sequence[str]) -> list[str]:
    """moby/sys/mount MergeTmpfsOptions: the last of an option and its opposite wins,
    in the order given."""
    out: list[str] = []
    seen: set[str] = set()
    for option in reversed(options):
        if option == "defaults":
            continue
        key = _TMPFS_FLAG_KEY.get(option)
        if key is None:
            name, eq, _ = option.partition("=")
            if not eq or name not in _TMPFS_DATA:
                raise InvalidArgument(f'invalid tmpfs option "{option}"')
            key = "=" + name
        if key not in seen:
            seen.add(key)
            out.insert(0, option)
    return out


def tmpfs_mount(target: str, options: Sequence[str] = ()) -> dict:
    """The OCI mount of a --tmpfs or --mount type=tmpfs (daemon/oci_linux.go)."""
    return {"destination": clean_path(target), "type": "tmpfs", "source": "tmpfs",
            "options": merge_tmpfs_options([*TMPFS_DEFAULTS, *options])}


def _bind_mount(target: str, source: str, *, readonly: bool, propagation: str = "",
                nonrecursive: bool = False) -> dict:
    return {"destination": target, "type": "bind", "source": source,
            "options": ["bind" if nonrecursive else "rbind", "ro" if readonly else "rw",
                        propagation or DEFAULT_PROPAGATION]}


# --- resolving a container's mounts ---------------------------------------------------------

@record
class Resolved:
    mounts: list[dict] = field(default_factory=list)  # OCI mounts for config.json, in order
    volumes: list[str] = field(default_factory=list)  # every volume used (named + anonymous)
    anonymous: list[str] = field(default_factory=list)  # created for this container
    # (volume mountpoint, container target): copy the image's content there (copy_up)
    # before the first start; copy_up does nothing to a volume that is not empty.
    copy_up: list[tuple[str, str]] = field(default_factory=list)


def resolve_mounts(specs: Iterable[MountSpec], image_volumes: Iterable[str],
                   store: VolumeStore, *, container_id: str) -> Resolved:
    """User mounts + the image's VOLUMEs -> OCI mounts, creating volumes as needed.

    Call it under `store.lock()` together with storing the container's record. On
    failure, the anonymous volumes it created are removed again.
    """
    specs = list(specs)
    # `-v /ctr` goes into docker's Config.Volumes, next to the image's VOLUMEs: it never
    # conflicts, a user mount at the same place wins.
    config_volumes = [s.target for s in specs
                      if s.flag == "-v" and s.type == "volume" and not s.source]
    user = [s for s in specs if not (s.flag == "-v" and s.type == "volume" and not s.source)]
    taken: set[str] = set()
    for s in user:
        target = clean_path(s.target)
        if target in taken:
            raise InvalidArgument(f"Duplicate mount point: {target}")
        taken.add(target)
    for s in user:
        if s.type == "bind" and s.flag != "-v" and not os.path.exists(s.source):
            raise InvalidArgument('invalid mount config for type "bind": '
                                  f"bind source path does not exist: {s.source}")
    anonymous_targets: list[str] = []
    for v in [*config_volumes, *image_volumes]:
        target = clean_path("/" + v.lstrip("/")) if v else ""
        if target in ("", "/"):
            raise InvalidArgument(f"invalid volume {v!r}: a volume cannot be mounted on '/'")
        if target not in taken and target not in anonymous_targets:
            anonymous_targets.append(target)

    result = Resolved()
    try:
        for s in user:
            target = clean_path(s.target)
            if s.type == "bind":
                if s.flag == "-v" and not os.path.lexists(s.source):
                    os.makedirs(s.source, 0o755, exist_ok=True)  # docker's legacy -v
                result.mounts.append(_bind_mount(target, s.source, readonly=s.readonly,
                                                 propagation=s.propagation,
                                                 nonrecursive=s.nonrecursive))
            elif s.type == "tmpfs":
                result.mounts.append(tmpfs_mount(target, s.tmpfs_options))
            else:
                vol = _use_volume(store, s.source or None, s.labels, container_id, result)
                result.mounts.append(_bind_mount(target, vol.mountpoint, readonly=s.readonly))
                if not s.nocopy:
                    result.copy_up.append((vol.mountpoint, target))
        for target in anonymous_targets:
            vol = _use_volume(store, None, {}, container_id, result)
            result.mounts.append(_bind_mount(target, vol.mountpoint, readonly=False))
            result.copy_up.append((vol.mountpoint, target))
    except BaseException:
        for name in result.anonymous:
            with contextlib.suppress(Exception):
                store.remove(name, in_use=(), force=True)
        raise
    return result


def _use_volume(store: VolumeStore, name: str | None, labels: Mapping[str, str],
                container_id: str, result: Resolved) -> Volume:
    vol = store.create(name, labels=labels, created_for=container_id)
    if name is None:
        result.anonymous.append(vol.name)
    if vol.name not in result.volumes:
        result.volumes.append(vol.name)
    return vol
