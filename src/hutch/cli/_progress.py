"""Pull progress like docker's: one line per layer ("Already exists", "Downloading",
"Pull complete"). rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading

from hutch.image.pull import Progress


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class LinePullProgress(Progress):
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            sys.stderr.write(text + "\n")

    def resolved(self, name: str, digest: str) -> None:
        self._say(f"{name}: resolved to {digest}")

    def layer(self, digest: str, size: int, present: bool) -> None:
        self._say(f"{_short(digest)}: {'Already exists' if present else 'Pulling fs layer'}")

    def layer_done(self, digest: str) -> None:
        self._say(f"{_short(digest)}: Pull complete")

    def unpacking(self) -> None:
        self._say("Unpacking layers")

    def close(self) -> None:
        pass


class RichPullProgress(Progress):
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
        from rich.progress import Progress as Bars

        self._bars = Bars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), console=Console(stderr=True),
                          transient=False)
        self._tasks: dict[str, int] = {}
        self._bars.start()

    def resolved(self, name: str, digest: str) -> None:
        self._bars.console.print(f"{name}: resolved to {digest}")

    def layer(self, digest: str, size: int, present: bool) -> None:
        label = f"{_short(digest)}: " + ("Already exists" if present else "Downloading")
        tid = self._bars.add_task(label, total=size or None,
                                  completed=size if present else 0)
        self._tasks[digest] = tid

    def advance(self, digest: str, nbytes: int) -> None:
        tid = self._tasks.get(digest)
        if tid is not None:
            self._bars.advance(tid, nbytes)

    def layer_done(self, digest: str) -> None:
        tid = self._tasks.get(digest)
        if tid is not None:
            self._bars.update(tid, description=f"{_short(digest)}: Pull complete")

    def unpacking(self) -> None:
        self._bars.console.print("Unpacking layers")

    def close(self) -> None:
        self._bars.stop()
