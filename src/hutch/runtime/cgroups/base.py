"""What the v1 and v2 managers share: error translation, joining, removal."""

from __future__ import annotations

import errno
import os
import posixpath
import time

from hutch.errors import (
    FailedPrecondition,
    HutchError,
    InvalidArgument,
    NotSupported,
    PermissionDenied,
)

from .fs import CgroupFS


def cgroup_error(e: OSError, op: str, path: str, value: str | None = None) -> HutchError:
    """One clear line for a cgroup file operation the kernel refused."""
    what = f"{op} {value!r} to {path}" if value is not None else f"{op} {path}"
    msg = f"cgroup: cannot {what}: {os.strerror(e.errno or 0)}"
    ctx = {"path": path, "op": op}
    if e.errno == errno.ENOENT:
        return NotSupported(msg, hint="the host kernel lacks this cgroup file", **ctx)
    if e.errno in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW):
        return InvalidArgument(msg, **ctx)
    if e.errno == errno.EBUSY:
        return FailedPrecondition(msg, **ctx)
    if e.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return PermissionDenied(msg, **ctx)
    return HutchError(msg, **ctx)


class CgroupManager:
    """Common face of the v1 and v2 managers (see package docstring for the contract)."""

    version: int = 0
    # Pauses between rmdir attempts on EBUSY (runc retries 5 times, doubling from 10ms).
    rmdir_delays: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16)

    def __init__(self, fs: CgroupFS) -> None:
        self.fs = fs

    # --- contract, implemented by the versions ------------------------------------------
    def create(self) -> None:
        raise NotImplementedError

    def apply(self, resources: dict | None) -> list[str]:
        raise NotImplementedError

    def paths(self) -> dict[str, str]:
        raise NotImplementedError

    def to_state(self) -> dict:
        raise NotImplementedError

    def _procs_dir(self) -> str:
        raise NotImplementedError

    def update(self, resources: dict | None) -> list[str]:
        """Change limits of a live cgroup, as `runc update` does: the same writes and
        write order as apply() (0 = leave alone), device rules skipped. Pass the merged
        resources (see cgroups.update.merge_update)."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Freeze every task; returns once the kernel reports the cgroup frozen."""
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        """True if this cgroup itself is frozen (not merely an ancestor)."""
        raise NotImplementedError

    def stats(self) -> dict:
        """What `runc events --stats` prints as "data" (runc's types.Stats, Go's
        omitempty rules applied) so tools that parse runc's output parse ours."""
        raise NotImplementedError

    def oom_kill_count(self) -> int:
        """How many tasks the OOM killer killed in this cgroup (0 if unknown)."""
        raise NotImplementedError

    def under_oom(self) -> bool:
        """v1 with the OOM killer disabled: tasks are stalled waiting for memory."""
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------
    def _unique_dirs(self) -> list[str]:
        seen: list[str] = []
        for p in self.paths().values():
            if p not in seen:
                seen.append(p)
        return seen

    def add_pid(self, pid: int) -> None:
        for d in self._unique_dirs():
            write_procs(self.fs, d, pid)

    def join_self(self, *, include_v2: bool) -> list[str]:
        """Move the calling single-threaded process into this cgroup; return the cgroup2
        directories left for someone else to join with add_pid_to (when not include_v2).

        v1: "0" written to `tasks` moves the current thread without taking the global
        cgroup_threadgroup_rwsem (kernel/cgroup/cgroup.c, cgroup_procs_write_start),
        which writing a pid to cgroup.procs takes for writing: its first writer waits a
        full RCU grace period (~15 ms here) and blocks every fork() meanwhile. cgroup2
        has no such path for a non-threaded cgroup: "0" to cgroup.procs pays it.
        """
        left: list[str] = []
        for key, d in self._unique_keyed_dirs():
            if key != "":
                self._write(posixpath.join(d, "tasks"), "0")
            elif include_v2:
                self._write(posixpath.join(d, "cgroup.procs"), "0")
            else:
                left.append(d)
        return left

    def _unique_keyed_dirs(self) -> list[tuple[str, str]]:
        seen: dict[str, str] = {}
        for key, p in self.paths().items():
            if p not in seen:
                seen[p] = key
        return [(k, p) for p, k in seen.items()]

    def pids(self) -> list[int]:
        return read_pids(self.fs, self._procs_dir())

    def destroy(self) -> None:
        """rmdir every cgroup (children first); idempotent; raises if one stays busy."""
        failed: list[str] = []
        for d in self._unique_dirs():
            try:
                remove_path(self.fs, d, self.rmdir_delays)
            except OSError as e:
                failed.append(f"{d} ({os.strerror(e.errno or 0)})")
        if failed:
            raise FailedPrecondition("cgroup: cannot remove " + ", ".join(failed),
                                     hint="processes may still be running in it")

    # --- helpers for the controllers ----------------------------------------------------
    def _write(self, path: str, value: str) -> None:
        try:
            self.fs.write(path, value)
        except OSError as e:
            raise cgroup_error(e, "write", path, value) from None

    def _read(self, path: str) -> str:
        try:
            return self.fs.read(path).strip()
        except OSError as e:
            raise cgroup_error(e, "read", path) from None

    def _write_if_exists(self, path: str, value: str, warnings: list[str], what: str) -> bool:
        """Write an optional knob; a missing file becomes a warning naming `what`."""
        if not self.fs.exists(path):
            warnings.append(f"{what} ignored: {posixpath.basename(path)} does not exist "
                            f"in {posixpath.dirname(path)} on this host")
            return False
        self._write(path, value)
        return True


def write_procs(fs: CgroupFS, directory: str, pid: int) -> None:
    """Move pid into the cgroup; EINVAL right after fork is retried, as runc does."""
    path = posixpath.join(directory, "cgroup.procs")
    for attempt in range(5):
        try:
            fs.write(path, str(pid))
            return
        except OSError as e:
            if e.errno == errno.EINVAL and attempt < 4:
                time.sleep(0.03)
                continue
            raise cgroup_error(e, "write", path, str(pid)) from None


def read_pids(fs: CgroupFS, directory: str) -> list[int]:
    try:
        text = fs.read(posixpath.join(directory, "cgroup.procs"))
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split() if x.strip().isdigit()]


def remove_path(fs: CgroupFS, path: str,
                delays: tuple[float, ...] = CgroupManager.rmdir_delays) -> None:
    """runc's cgroups.RemovePath: sub-cgroups first, rmdir retried while EBUSY."""
    try:
        entries = fs.listdir(path)
    except FileNotFoundError:
        return
    for name in entries:
        child = posixpath.join(path, name)
        if fs.isdir(child):
            remove_path(fs, child, delays)
    for attempt in range(len(delays) + 1):
        try:
            fs.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # A cgroup whose last task just died stays busy a moment (zombies, css refs).
            if e.errno == errno.EBUSY and attempt < len(delays):
                time.sleep(delays[attempt])
                continue
            raise
