"""Volumes: docker's "local" driver store, and which containers use which volume.

Store: {root}/volumes/<name>/_data is the mountpoint, <name>/meta.json the metadata, as in
/var/lib/docker/volumes. A volume is built in a private ".tmp-*" directory and renamed
into place, so it appears whole or not at all; two processes creating one name race on
that rename(2) and the loser adopts the winner's volume (docker returns an existing volume
for `volume create NAME` too). Removal renames to ".trash-*" before deleting, so a
half-deleted volume is never visible. `lock()` is a flock on {root}/volumes/.lock: hold
it around "compute which volumes are in use, then prune/remove", and around "resolve a
container's mounts, then store its record", so a prune never takes an anonymous volume
created for a container that is not recorded yet (docker's daemon keeps references in
memory; a daemonless engine needs the lock).

The -v / --mount / --tmpfs flags live in hutch.engine.mountspec and the copy of image
content into a new volume in hutch.engine.copyup; their public names are re-exported
here, so `hutch.engine.volumes` stays the one import for callers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from hutch.engine.copyup import copy_up
from hutch.engine.mountspec import (
    DEFAULT_PROPAGATION,
    PROPAGATIONS,
    TMPFS_DEFAULTS,
    MountSpec,
    Resolved,
    clean_path,
    merge_tmpfs_options,
    parse_mount_flag,
    parse_tmpfs_flag,
    parse_volume_flag,
    ram_in_bytes,
    resolve_mounts,
    tmpfs_mount,
)
from hutch.engine.store import regex_match
from hutch.errors import FailedPrecondition, InvalidArgument, NotFound
from hutch.util.record import field, record

__all__ = [
    "ANONYMOUS_LABEL",
    "DEFAULT_PROPAGATION",
    "DRIVER",
    "PROPAGATIONS",
    "TMPFS_DEFAULTS",
    "MountSpec",
    "Resolved",
    "Volume",
    "VolumeStore",
    "check_volume_name",
    "clean_path",
    "containers_in_use",
    "copy_up",
    "disk_usage",
    "in_use",
    "merge_tmpfs_options",
    "open_store",
    "parse_mount_flag",
    "parse_tmpfs_flag",
    "parse_volume_flag",
    "ram_in_bytes",
    "resolve_mounts",
    "tmpfs_mount",
]

DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker 23+: what `volume prune` keys on
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # moby daemon/names RestrictedNameChars
_STALE_TMP = 3600.0  # seconds before a crashed create's ".tmp-*" dir is swept


def check_volume_name(name: str) -> str:
    """moby volume/local validateName, word for word (with the daemon's "create x:")."""
    if isinstance(name, str) and len(name) == 1:
        raise InvalidArgument(f"create {name}: volume name is too short, names should be at "
                              "least two alphanumeric characters", volume=name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path", volume=name)
    return name


def _read_meta(path: str) -> dict | None:
    """meta.json of the volume at `path`; None if there is none, {} if it is damaged
    (still a volume: its data matters more)."""
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _rfc3339(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


@record(frozen=True)
class Volume:
    name: str
    mountpoint: str  # {root}/volumes/<name>/_data
    created: str  # RFC 3339, docker's CreatedAt
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    driver: str = DRIVER

    def to_docker(self) -> dict:
        """`docker volume inspect` of one volume."""
        labels = dict(self.labels)
        if self.anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        return {"CreatedAt": self.created, "Driver": self.driver, "Labels": labels,
                "Mountpoint": self.mountpoint, "Name": self.name, "Options": {},
                "Scope": "local"}


# --- filters (docker volume ls / prune --filter) -----------------------------------------

_FILTER_KEYS = frozenset({"dangling", "name", "label", "label!", "driver"})


def _normalise_filters(filters: Mapping[str, str | Iterable[str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        key = key.strip().lower()
        if key not in _FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        vals = [values] if isinstance(values, str) else list(values)
        if key == "dangling":
            for v in vals:
                if v.lower() not in ("true", "1", "false", "0"):
                    raise InvalidArgument(f"invalid filter 'dangling={v}'")
        if vals:
            out[key] = vals
    return out


def _label_match(term: str, labels: Mapping[str, str]) -> bool:
    key, sep, value = term.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _matches(vol: Volume, wanted: Mapping[str, list[str]], in_use: Mapping | Iterable) -> bool:
    labels = vol.to_docker()["Labels"]
    for key, values in wanted.items():
        if key == "dangling":
            want = {v.lower() in ("true", "1") for v in values}
            if (vol.name not in in_use) not in want:
                return False
        elif key == "name" and not any(regex_match(v, vol.name) for v in values):
            return False
        elif key == "driver" and vol.driver not in values:
            return False
        elif key == "label" and not all(_label_match(v, labels) for v in values):
            return False
        elif key == "label!" and any(_label_match(v, labels) for v in values):
            return False
    return True


# --- the store ------------------------------------------------------------------------------

class VolumeStore:
    """Volumes under `root` ({settings.root}/volumes). `clock` is for tests."""

    def __init__(self, root: str, *, clock=time.time) -> None:
        self.root = root
        self._clock = clock
        self._lock_fd: int | None = None
        self._lock_depth = 0

    def _ensure_root(self) -> None:
        try:
            os.mkdir(self.root, 0o701)  # docker: 0701, volumes are traversable, not listable
            os.chmod(self.root, 0o701)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self.root), exist_ok=True)
            self._ensure_root()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes, re-entrant within this object."""
        if self._lock_depth == 0:
            self._ensure_root()
            fd = os.open(os.path.join(self.root, ".lock"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def create(self, name: str | None = None, *, labels: Mapping[str, str] | None = None,
               anonymous: bool = False, created_for: str = "") -> Volume:
        """A new volume, or the existing one of that name as is (docker's create).
        No name: a random 64-hex one, anonymous. `created_for` (a container id) is kept in
        meta.json for people debugging; nothing depends on it."""
        if name is None:
            name, anonymous = secrets.token_hex(32), True
        check_volume_name(name)
        with contextlib.suppress(NotFound):
            return self.get(name)
        self._ensure_root()
        tmp = os.path.join(self.root, f".tmp-{secrets.token_hex(8)}")
        os.mkdir(tmp, 0o755)
        try:
            os.chmod(tmp, 0o755)
            os.mkdir(os.path.join(tmp, "_data"), 0o755)
            os.chmod(os.path.join(tmp, "_data"), 0o755)
            meta = {"name": name, "created": _rfc3339(self._clock()),
                    "labels": dict(labels or {}), "driver": DRIVER,
                    "anonymous": bool(anonymous)}
            if created_for:
                meta["created_for"] = created_for
            fd = os.open(os.path.join(tmp, "meta.json"),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "w") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, self._dir(name))  # atomic; fails if another create won
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return self.get(name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.root)
        return self._volume(name, meta)

    def _volume(self, name: str, meta: Mapping) -> Volume:
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        return Volume(name=name, mountpoint=os.path.join(self._dir(name), "_data"),
                      created=str(meta.get("created", "")), labels=labels,
                      anonymous=bool(meta.get("anonymous")) or ANONYMOUS_LABEL in labels,
                      driver=str(meta.get("driver") or DRIVER))

    def get(self, name: str) -> Volume:
        if not isinstance(name, str) or not _NAME.match(name):
            raise NotFound(f"no such volume: {name}", volume=name)
        path = self._dir(name)
        meta = _read_meta(path)
        if meta is None:
            if not os.path.isdir(os.path.join(path, "_data")):
                raise NotFound(f"no such volume: {name}", volume=name)
            # A volume without meta.json (made by hand), or one a concurrent create()
            # renamed into place between our two looks: look again.
            meta = _read_meta(path) or {}
        if not meta.get("created"):
            with contextlib.suppress(OSError):
                meta["created"] = _rfc3339(os.stat(path).st_mtime)
        return self._volume(name, meta)

    def list(self, filters: Mapping[str, str | Iterable[str]] | None = None, *,
             in_use: Mapping[str, Sequence[str]] | Iterable[str] = ()) -> list[Volume]:
        """Volumes sorted by name. Filters: dangling=true|false (against `in_use`),
        name= (regex, as docker), label=key[=value], label!=..., driver=."""
        wanted = _normalise_filters(filters)
        in_use = in_use if isinstance(in_use, Mapping) else set(in_use)
        try:
            names = sorted(e.name for e in os.scandir(self.root) if _NAME.match(e.name))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                vol = self.get(name)
            except NotFound:  # removed meanwhile
                continue
            if _matches(vol, wanted, in_use):
                out.append(vol)
        return out

    def remove(self, name: str, *, in_use: Mapping[str, Sequence[str]] | Iterable[str],
               force: bool = False) -> None:
        """Delete a volume no container uses. `force` only ignores a missing volume
        (docker's `volume rm -f`); a used volume is never removed."""
        with self.lock():
            try:
                self.get(name)
            except NotFound:
                if force:
                    return
                raise
            users = in_use if isinstance(in_use, Mapping) else set(in_use)
            if name in users:
                ids = list(users[name]) if isinstance(users, Mapping) else []
                refs = f" - [{', '.join(ids)}]" if ids else ""
                raise FailedPrecondition(f"remove {name}: volume is in use{refs}",
                                         volume=name)
            self._delete(name)

    def _delete(self, name: str) -> None:
        trash = os.path.join(self.root, f".trash-{secrets.token_hex(8)}")
        try:
            os.rename(self._dir(name), trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)  # leftovers are swept by prune

    def prune(self, in_use: Mapping[str, Sequence[str]] | Iterable[str], *, all: bool = False,
              filters: Mapping[str, str | Iterable[str]] | None = None
              ) -> tuple[list[str], int]:
        """Remove unused volumes: only anonymous ones unless `all` (docker 23+).
        Returns (names removed, bytes freed)."""
        with self.lock():
            self._sweep()
            users = in_use if isinstance(in_use, Mapping) else set(in_use)
            names, freed = [], 0
            for vol in self.list(filters, in_use=users):
                if vol.name in users or not (all or vol.anonymous):
                    continue
                size = disk_usage(vol.mountpoint)
                self._delete(vol.name)
                names.append(vol.name)
                freed += size
            return names, freed

    def _sweep(self) -> None:
        """Leftovers of crashed creates and of removals that could not finish."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        now = time.time()
        for e in entries:
            if e.name.startswith(".trash-"):
                shutil.rmtree(e.path, ignore_errors=True)
            elif e.name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    if now - e.stat(follow_symlinks=False).st_mtime > _STALE_TMP:
                        shutil.rmtree(e.path, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_usage(path: str) -> int:
    """Apparent size of a tree, hard links counted once (moby pkg/directory.Size)."""
    total, seen = 0, set()
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def in_use(records: Iterable) -> dict[str, list[str]]:
    """volume name -> ids of the containers using it, from container records
    (ContainerRecord.config["volumes"])."""
    users: dict[str, list[str]] = {}
    for rec in records:
        for name in (rec.config or {}).get("volumes", []) or []:
            ids = users.setdefault(name, [])
            if rec.id not in ids:
                ids.append(rec.id)
    return users


def open_store(settings) -> VolumeStore:
    """The volume store of a hutch.config.Settings: {root}/volumes."""
    return VolumeStore(os.path.join(settings.root, "volumes"))


def containers_in_use(settings) -> dict[str, list[str]]:
    """in_use() of every container recorded under settings.root (none if no database)."""
    path = os.path.join(settings.root, "containers.db")
    if not os.path.exists(path):
        return {}
    from hutch.engine.store import ContainerStore

    with ContainerStore(path) as containers:
        return in_use(containers.list(all=True))
