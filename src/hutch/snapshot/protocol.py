"""The Snapshotter protocol (containerd's snapshots.Snapshotter), for type checks and
isinstance(). Its own module, off the start-up path: typing costs ~2 ms to import.
`hutch.snapshot.Snapshotter` loads it on first use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from hutch.mount import Mount
from hutch.snapshot.api import Info, Usage


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
