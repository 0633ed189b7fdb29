"""The engine's parent cgroup goes when its last container does (on fake hierarchies:
plain directories stand in for the cgroup mount points)."""

from __future__ import annotations

import fcntl
import os

import pytest

from hutch.engine import cgparent

pytestmark = pytest.mark.unit

MOUNTINFO = """\
25 20 0:22 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
26 20 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
27 20 0:24 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
28 20 0:25 / /proc rw - proc proc rw
"""


def test_hierarchies_are_the_cgroup_mounts_sorted():
    assert cgparent.hierarchies(MOUNTINFO) == [
        "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"]


@pytest.fixture
def mounts(tmp_path):
    out = []
    for name in ("a", "b", "c"):
        (tmp_path / name / cgparent.PARENT).mkdir(parents=True)
        out.append(str(tmp_path / name))
    return out


def test_empty_parents_are_removed_busy_ones_stay(mounts):
    os.mkdir(os.path.join(mounts[1], cgparent.PARENT, "some-container"))
    removed = cgparent.remove_if_unused(mounts)
    assert removed == [os.path.join(mounts[0], cgparent.PARENT),
                       os.path.join(mounts[2], cgparent.PARENT)]
    assert os.path.isdir(os.path.join(mounts[1], cgparent.PARENT, "some-container"))
    assert cgparent.remove_if_unused(mounts) == []  # quiet when gone or busy


def test_nothing_is_removed_while_a_container_is_being_created(mounts):
    with cgparent.creating(mounts):
        assert cgparent.remove_if_unused(mounts) == []
        assert all(os.path.isdir(os.path.join(m, cgparent.PARENT)) for m in mounts)
    assert len(cgparent.remove_if_unused(mounts)) == 3


def test_creators_do_not_exclude_each_other(mounts):
    with cgparent.creating(mounts):
        fd = os.open(mounts[0], os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # would raise if excluded
        finally:
            os.close(fd)


def test_no_cgroup_hierarchy_means_nothing_to_do():
    assert cgparent.remove_if_unused([]) == []
    with cgparent.creating([]):
        pass


def test_a_remover_waits_out_another_remover(mounts):
    # The other remover looked while our container's directory was still there; it
    # holds the lock for a moment: we must not give up on it, or the parent stays.
    import threading

    fd = os.open(mounts[0], os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(0.01, os.close, [fd]).start()
    assert len(cgparent.remove_if_unused(mounts, wait=2.0)) == 3


def test_a_remover_gives_up_on_a_long_creation(mounts):
    import time

    with cgparent.creating(mounts):
        started = time.monotonic()
        assert cgparent.remove_if_unused(mounts, wait=0.05) == []
        assert time.monotonic() - started < 1.0
