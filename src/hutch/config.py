"""Settings: where hutch keeps its state. Passed explicitly, never a global."""

from __future__ import annotations

import os


class Settings:
    """HUTCH_ROOT (persistent state, default /var/lib/hutch) and HUTCH_RUN (runtime state,
    default /run/hutch). Tests always pass temporary ones."""

    def __init__(self, root: str | None = None, run: str | None = None) -> None:
        self.root = root or os.environ.get("HUTCH_ROOT") or "/var/lib/hutch"
        self.run = run or os.environ.get("HUTCH_RUN") or "/run/hutch"

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.run, "runtime")
