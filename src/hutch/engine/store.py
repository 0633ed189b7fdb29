"""The container records database and the container state machine.

One SQLite file in WAL mode, like the image metadata (hutch.image.metadata): readers never
block the writer, writes take `BEGIN IMMEDIATE` so parallel hutch commands queue on the
write lock up front, and the busy timeout makes them wait rather than fail. The UNIQUE
name column is what makes `hutch run --name x` race-free across processes: docker does
the same with its in-memory name reservation, which a daemonless engine cannot have.

States are docker's (`docker ps --filter status=`): created, running, paused, restarting,
exited, dead, removing. `update()` refuses transitions docker never makes (TRANSITIONS),
inside the write transaction, so two commands racing on one container cannot both win
(e.g. two `rm`: the second finds it "removing" and gets FailedPrecondition).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from hutch.engine.names import check_name, new_id, random_name
from hutch.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from hutch.linux.sqlite import no_checkpoint_on_close
from hutch.util import fastjson
from hutch.util.record import field, fields, record, replace
from hutch.util.sqlite import SqliteStore

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

STATES = ("created", "running", "paused", "restarting", "exited", "dead", "removing")

# state -> states it may change to. docker's container/state.go keeps flags (Running,
# Paused, Restarting, Dead, RemovalInProgress); these are the changes its daemon makes:
# start (created/exited -> running; a failed start -> exited), pause/unpause, the
# restart manager (-> restarting -> running), the monitor seeing the process exit
# (-> exited), a stop or removal that failed (-> dead), and rm (-> removing -> deleted;
# moby's cleanupContainer marks the container dead if deleting its files fails).
TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"running", "exited", "dead", "removing"}),
    "running": frozenset({"paused", "restarting", "exited", "dead", "removing"}),
    "paused": frozenset({"running", "exited", "dead", "removing"}),
    "restarting": frozenset({"running", "exited", "dead", "removing"}),
    "exited": frozenset({"running", "restarting", "dead", "removing"}),
    "dead": frozenset({"removing"}),
    "removing": frozenset({"dead"}),
}

# What `docker ps` shows without -a: containers whose process is alive.
ACTIVE_STATES = ("running", "paused", "restarting")

_ID = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^[0-9a-f]+$")


@record(frozen=True)
class ContainerRecord:
    """One container as the engine knows it. Times are Unix seconds (None: never)."""

    name: str = ""  # empty: create() generates one
    image: str = ""  # the image reference as the user gave it (docker's Config.Image)
    image_id: str = ""  # the image's config digest
    id: str = field(default_factory=new_id)
    created: float = 0.0  # 0: create() stamps it
    state: str = "created"
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""  # why the last start or stop failed (docker's State.Error)
    started_at: float | None = None
    finished_at: float | None = None
    restart_count: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # the run options
    spec_path: str = ""
    bundle_dir: str = ""
    log_path: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    snapshot_key: str = ""
    network: dict[str, Any] = field(default_factory=dict)
    monitor_pid: int = 0

    @property
    def short_id(self) -> str:
        return self.id[:12]


_COLUMNS = tuple(f.name for f in fields(ContainerRecord))
_JSON_COLUMNS = frozenset({"config", "labels", "network"})
# update() may not touch these: the id is the identity, rename() checks names, and the
# creation time is history.
_FIXED = frozenset({"id", "name", "created"})

Migration = Sequence[str]

# Append only: migration i takes the schema from version i to i + 1.
MIGRATIONS: tuple[Migration, ...] = (
    (
        """CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            image TEXT NOT NULL,
            image_id TEXT NOT NULL,
            created REAL NOT NULL,
            state TEXT NOT NULL,
            pid INTEGER NOT NULL,
            exit_code INTEGER NOT NULL,
            oom_killed INTEGER NOT NULL,
            error TEXT NOT NULL,
            started_at REAL,
            finished_at REAL,
            restart_count INTEGER NOT NULL,
            config TEXT NOT NULL,
            spec_path TEXT NOT NULL,
            bundle_dir TEXT NOT NULL,
            log_path TEXT NOT NULL,
            labels TEXT NOT NULL,
            snapshot_key TEXT NOT NULL,
            network TEXT NOT NULL,
            monitor_pid INTEGER NOT NULL
        )""",
        "CREATE INDEX containers_state ON containers(state)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# docker ps filters this store answers (moby daemon/list.go acceptedPsFilterTags, less
# those that need other subsystems: volume, network, publish, expose, health, is-task).
FILTERS = frozenset({"id", "name", "label", "status", "ancestor", "exited", "before", "since"})


def name_conflict(name: str, holder: str) -> AlreadyExists:
    """moby daemon/names.go's message, word for word (scripts grep for it)."""
    return AlreadyExists(
        f'Conflict. The container name "/{name}" is already in use by container "{holder}". '
        "You have to remove (or rename) that container to be able to reuse that name.",
        name=name,
        container=holder,
    )


def parse_filters(args: Iterable[str]) -> dict[str, list[str]]:
    """`--filter key=value` arguments as {key: [values]} (values of one key OR together,
    different keys AND, as in docker)."""
    result: dict[str, list[str]] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {arg}")
        result.setdefault(key.strip().lower(), []).append(value)
    return result


class ContainerStore(SqliteStore):
    """The container database at `path`, created and migrated on open.

    One connection per object; use it from one thread. Any number of processes may open
    the same file. `timeout` is how long a write waits for another process's lock before
    raising Unavailable.
    """

    configure = staticmethod(no_checkpoint_on_close)

    what = "container database"

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        namer: Callable[[int], str] = random_name,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self._namer = namer
        super().__init__(path, timeout=timeout, clock=clock, migrations=migrations)

    # -- records -------------------------------------------------------------------------

    def create(self, record: ContainerRecord) -> ContainerRecord:
        """Store a new container; returns it with its name and creation time filled in.
        AlreadyExists if the name (docker's message) or the id is taken."""
        _check_record(record)
        name = check_name(record.name) if record.name else ""
        if record.state != "created":
            raise InvalidArgument(f"a new container is 'created', not {record.state!r}")
        with self.transaction():
            if self._row("SELECT 1 FROM containers WHERE id = ?", record.id):
                raise AlreadyExists(f"container id {record.id} is in use", container=record.id)
            if name:
                holder = self._row("SELECT id FROM containers WHERE name = ?", name)
                if holder:
                    raise name_conflict(name, holder[0])
            else:
                name = self._generate_name(record.id)
            stored = replace(record, name=name, created=record.created or self._clock())
            try:
                self._execute(
                    f"INSERT INTO containers ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    _to_row(stored),
                )
            except sqlite3.IntegrityError:  # unreachable under the write lock; be safe
                raise name_conflict(name, "?") from None
            return stored

    def _generate_name(self, container_id: str) -> str:
        # moby daemon/names.go generateNewName: six tries, then the short id.
        for retry in range(6):
            candidate = self._namer(retry)
            if not self._row("SELECT 1 FROM containers WHERE name = ?", candidate):
                return check_name(candidate)
        return container_id[:12]

    def _row(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        return self._execute(sql, params).fetchone()

    def get(self, ref: str) -> ContainerRecord:
        """docker's lookup (moby daemon.GetContainer): the exact id, then the exact name
        (with or without "/"), then a unique id prefix. InvalidArgument for an ambiguous
        prefix, NotFound "No such container: x" for nothing."""
        with self._read():
            return self._lookup(ref)

    def _lookup(self, ref: str) -> ContainerRecord:
        if not isinstance(ref, str) or not ref.strip("/"):
            raise InvalidArgument("a container name or id is required")
        select = f"SELECT {', '.join(_COLUMNS)} FROM containers"
        row = self._row(f"{select} WHERE id = ?", ref)
        if row is None:
            row = self._row(f"{select} WHERE name = ?", ref.removeprefix("/"))
        if row is None and _HEX.match(ref):
            rows = self._execute(
                f"{select} WHERE substr(id, 1, ?) = ? LIMIT 2", (len(ref), ref)
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(
                    f"multiple IDs found with provided prefix: {ref}", container=ref
                )
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No such container: {ref}", container=ref)
        return _from_row(row)

    def list(
        self, all: bool = False, filters: Mapping[str, str | Iterable[str]] | None = None
    ) -> list[ContainerRecord]:
        """Containers newest first, as `docker ps`: only live ones unless `all` (or a
        status filter, which implies it, as in moby's list.go)."""
        wanted = _normalise_filters(filters or {})
        show_all = all or "status" in wanted or "exited" in wanted
        with self._read():
            # before/since name containers: resolve them in the same snapshot.
            before = [self._lookup(ref).created for ref in wanted.get("before", [])]
            since = [self._lookup(ref).created for ref in wanted.get("since", [])]
            sql = f"SELECT {', '.join(_COLUMNS)} FROM containers"
            if not show_all:
                sql += f" WHERE state IN ({', '.join('?' * len(ACTIVE_STATES))})"
            rows = self._execute(
                sql + " ORDER BY created DESC, rowid DESC", () if show_all else ACTIVE_STATES
            ).fetchall()
        records = [_from_row(row) for row in rows]
        return [
            r
            for r in records
            if _matches(r, wanted)
            and _every(r.created < t for t in before)
            and _every(r.created > t for t in since)
        ]

    def update(self, ref: str, **changes: Any) -> ContainerRecord:
        """Change fields of one container in one transaction; returns the new record.
        A `state` change must be in TRANSITIONS (FailedPrecondition if not); setting the
        current state again is allowed, except "removing" (a removal in progress)."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise InvalidArgument(f"unknown container field(s): {', '.join(sorted(unknown))}")
        fixed = set(changes) & _FIXED
        if fixed:
            raise InvalidArgument(
                f"container field(s) cannot be updated: {', '.join(sorted(fixed))}"
            )
        with self.transaction():
            current = self._lookup(ref)
            if "state" in changes:
                check_transition(current, changes["state"])
            updated = replace(current, **changes)
            _check_record(updated)
            if changes:
                names = list(changes)
                row = dict(zip(_COLUMNS, _to_row(updated), strict=True))
                self._execute(
                    f"UPDATE containers SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                    [*(row[n] for n in names), current.id],
                )
            return updated

    def rename(self, ref: str, new_name: str) -> ContainerRecord:
        """moby daemon/rename.go: a valid, different, free name."""
        name = check_name(new_name)
        with self.transaction():
            current = self._lookup(ref)
            if current.name == name:
                raise InvalidArgument(
                    "Renaming a container with the same name as its current name",
                    container=current.id,
                )
            if current.state == "removing":
                raise FailedPrecondition(
                    f"cannot rename container {current.short_id}: it is being removed",
                    container=current.id,
                )
            holder = self._row("SELECT id FROM containers WHERE name = ?", name)
            if holder:
                raise name_conflict(name, holder[0])
            self._execute("UPDATE containers SET name = ? WHERE id = ?", (name, current.id))
            return replace(current, name=name)

    def remove(self, ref: str) -> ContainerRecord:
        """Delete the record (the end of removing -> deleted). A stopped container
        (created, exited, dead) may go directly; a live one is refused with docker's
        message. Returns the record that was deleted."""
        with self.transaction():
            current = self._lookup(ref)
            if current.state in ACTIVE_STATES:
                advice = {
                    "paused": "Unpause and then stop the container",
                    "running": "Stop the container",
                    "restarting": "Stop the container",
                }[current.state]
                raise FailedPrecondition(
                    f"You cannot remove a {current.state} container {current.id}. "
                    f"{advice} before attempting removal or force remove",
                    container=current.id,
                    state=current.state,
                )
            self._execute("DELETE FROM containers WHERE id = ?", (current.id,))
            return current


def _every(values: Iterable[bool]) -> bool:
    # `all` is shadowed by list()'s docker-named parameter inside the class.
    return all(values)


def check_transition(current: ContainerRecord, new_state: object) -> None:
    """FailedPrecondition unless `current` may change to `new_state`."""
    if new_state not in STATES:
        raise InvalidArgument(
            f"invalid container state {new_state!r}: want one of {', '.join(STATES)}"
        )
    if new_state == current.state:
        if new_state == "removing":  # moby: "removal of container x is already in progress"
            raise FailedPrecondition(
                f"removal of container {current.short_id} is already in progress",
                container=current.id,
            )
        return
    if new_state not in TRANSITIONS[current.state]:
        raise FailedPrecondition(
            f"container {current.short_id} is {current.state}: it cannot become {new_state}",
            container=current.id,
            state=current.state,
            requested=new_state,
        )


# -- rows and filters ---------------------------------------------------------------------


def _check_record(record: ContainerRecord) -> None:
    if not isinstance(record.id, str) or not _ID.match(record.id):
        raise InvalidArgument(f"invalid container id {str(record.id)[:80]!r}: want 64 hex digits")
    if record.state not in STATES:
        raise InvalidArgument(f"invalid container state {record.state!r}")
    if not isinstance(record.labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in record.labels.items()
    ):
        raise InvalidArgument("container labels must map strings to strings")
    for name in ("config", "network"):
        if not isinstance(getattr(record, name), Mapping):
            raise InvalidArgument(f"container {name} must be a mapping")


def _to_row(record: ContainerRecord) -> tuple[Any, ...]:
    values: list[Any] = []
    for name in _COLUMNS:
        value = getattr(record, name)
        if name in _JSON_COLUMNS:
            try:
                value = fastjson.dumps_sorted(value)
            except (TypeError, ValueError) as e:
                raise InvalidArgument(f"container {name} is not JSON: {e}") from None
        elif name == "oom_killed":
            value = int(bool(value))
        values.append(value)
    return tuple(values)


def _from_row(row: Sequence[Any]) -> ContainerRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON_COLUMNS:
        values[name] = fastjson.loads(values[name])
    values["oom_killed"] = bool(values["oom_killed"])
    return ContainerRecord(**values)


def _normalise_filters(filters: Mapping[str, str | Iterable[str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in filters.items():
        if key not in FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'", filter=key)
        values = [value] if isinstance(value, str) else list(value)
        if key == "status":
            for v in values:
                if v not in STATES:
                    raise InvalidArgument(
                        f"invalid filter 'status={v}': want one of {', '.join(STATES)}"
                    )
        if key == "exited":
            for v in values:
                if not v.lstrip("-").isdigit():
                    raise InvalidArgument(f"invalid filter 'exited={v}': want an exit code")
        if values:
            result[key] = values
    return result


def regex_match(term: str, source: str) -> bool:
    # moby api/types/filters Args.Match: equal, or the term as a regular expression
    # found anywhere in the source. Go's RE2 and Python's re agree on the common syntax.
    if term == source:
        return True
    try:
        return re.search(term, source) is not None
    except re.error:
        return False


def _image_names(image: str) -> set[str]:
    # "busybox", "busybox:latest", "docker.io/library/busybox:latest" name one image.
    names = {image}
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if image.startswith(prefix):
            names.add(image[len(prefix) :])
    for name in list(names):
        if name.endswith(":latest"):
            names.add(name.removesuffix(":latest"))
    return names


def _ancestor_match(value: str, record: ContainerRecord) -> bool:
    """The image the container was created from, by name or by (a prefix of) its id.
    moby also matches images built on top of `value`; that needs the image graph."""
    if _image_names(value) & _image_names(record.image):
        return True
    image_id = record.image_id.removeprefix("sha256:")
    wanted = value.removeprefix("sha256:")
    return bool(image_id and _HEX.match(wanted) and image_id.startswith(wanted))


def _label_match(term: str, labels: Mapping[str, str]) -> bool:
    key, sep, value = term.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def _matches(record: ContainerRecord, wanted: Mapping[str, list[str]]) -> bool:
    for key, values in wanted.items():
        if key == "label":
            ok = all(_label_match(term, record.labels) for term in values)  # labels AND
        elif key == "id":
            ok = any(regex_match(term, record.id) for term in values)
        elif key == "name":
            # docker matches "/name"; accept patterns written for either form.
            ok = any(
                regex_match(term, "/" + record.name) or regex_match(term, record.name)
                for term in values
            )
        elif key == "status":
            ok = record.state in values
        elif key == "ancestor":
            ok = any(_ancestor_match(term, record) for term in values)
        elif key == "exited":
            ok = record.state == "exited" and str(record.exit_code) in {str(int(v)) for v in values}
        else:  # before/since: handled by the caller
            ok = True
        if not ok:
            return False
    return True
