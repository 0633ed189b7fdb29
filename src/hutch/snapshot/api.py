"""The Snapshotter protocol and its data (containerd's snapshots.Snapshotter).

A snapshot is a directory tree in one of three kinds:
  active     writable, made by prepare(); the only kind that can be committed
  view       read-only, made by view(); never committed
  committed  immutable, made by commit(); the only kind that can be a parent
Keys of active snapshots and views and names of committed snapshots share one namespace.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from hutch.mount import Mount


class Kind(enum.StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Info:
    """What stat() and walk() report. `name` is the key (active, view) or the committed
    name; `parent` the parent's name or None; `created`/`updated` are Unix times."""

    kind: Kind
    name: str
    parent: str | None
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


class Usage(NamedTuple):
    """Disk use of a snapshot's own layer (not its parents'): bytes in allocated blocks
    and the number of distinct inodes."""

    size: int
    inodes: int


@runtime_checkable
class Snapshotter(Protocol):
    name: str
    root: str

    def prepare(self, key: str, parent: str | None = None,
                labels: dict[str, str] | None = None) -> list[Mount]: ...

    def view(self, key: str, parent: str | None = None,
             labels: dict[str, str] | None = None) -> list[Mount]: ...

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None: ...

    def remove(self, key: str) -> None: ...

    def mounts(self, key: str) -> list[Mount]: ...

    def stat(self, key: str) -> Info: ...

    def walk(self) -> Iterator[Info]: ...

    def usage(self, key: str) -> Usage: ...

    def cleanup(self) -> list[str]: ...

    def close(self) -> None: ...
