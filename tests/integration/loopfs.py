"""A btrfs file system on a loop device, for the tests that need one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hutch.mount import unmount_all


@contextmanager
def btrfs_loop(base: Path, size: str = "300M") -> Iterator[Path]:
    """mkfs.btrfs on a sparse file, loop-mounted at base/mnt; detached even on failure
    (and checked: no loop device may stay behind)."""
    if not shutil.which("mkfs.btrfs") or not shutil.which("losetup"):
        pytest.skip("needs btrfs-progs and losetup")
    img, mnt = base / "img", base / "mnt"
    mnt.mkdir()
    loop = None
    try:
        subprocess.run(["truncate", "-s", size, str(img)], check=True)
        subprocess.run(["mkfs.btrfs", "-q", str(img)], check=True, capture_output=True)
        loop = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                              capture_output=True, text=True).stdout.strip()
        subprocess.run(["mount", "-t", "btrfs", loop, str(mnt)], check=True)
        yield mnt
    finally:
        unmount_all(str(mnt), detach=True)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
            out = subprocess.run(["losetup", "-j", str(img)], capture_output=True,
                                 text=True).stdout
            assert out.strip() == "", f"loop device left behind: {out}"
        img.unlink(missing_ok=True)
