"""The data of the Snapshotter protocol (protocol.py) (containerd's snapshots.Snapshotter).

A snapshot is a directory tree in one of three kinds:
  active     writable, made by prepare(); the only kind that can be committed
  view       read-only, made by view(); never committed
  committed  immutable, made by commit(); the only kind that can be a parent
Keys of active snapshots and views and names of committed snapshots share one namespace.
"""

from __future__ import annotations

import enum
from collections import namedtuple

from hutch.util.record import field, record


class Kind(enum.StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@record(frozen=True)
class Info:
    """What stat() and walk() report. `name` is the key (active, view) or the committed
    name; `parent` the parent's name or None; `created`/`updated` are Unix times."""

    kind: Kind
    name: str
    parent: str | None
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


class Usage(namedtuple("Usage", ["size", "inodes"])):
    """(size: int, inodes: int): disk use of a snapshot's own layer (not its parents'):
    bytes in allocated blocks and the number of distinct inodes. collections.namedtuple,
    not typing.NamedTuple: typing costs ~2 ms on every command's start."""

    __slots__ = ()
