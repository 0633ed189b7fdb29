"""secure_join: mount destinations never resolve outside the rootfs (no root needed)."""

from __future__ import annotations

import os

import pytest

from hutch.runtime.rootfs import _create_target, secure_join

pytestmark = pytest.mark.unit


def test_plain_paths_join_under_the_root(tmp_path):
    assert secure_join(str(tmp_path), "/a/b") == str(tmp_path / "a" / "b")


def test_dotdot_cannot_climb_above_the_root(tmp_path):
    assert secure_join(str(tmp_path), "/../../etc/passwd") == str(tmp_path / "etc" / "passwd")


def test_absolute_symlinks_resolve_inside_the_root(tmp_path):
    (tmp_path / "etc").mkdir()
    os.symlink("/etc", tmp_path / "link")
    assert secure_join(str(tmp_path), "/link/shadow") == str(tmp_path / "etc" / "shadow")


def test_relative_symlinks_escaping_are_clamped(tmp_path):
    os.symlink("../../../../tmp", tmp_path / "up")
    assert secure_join(str(tmp_path), "/up/x") == str(tmp_path / "tmp" / "x")


def test_symlink_loops_are_an_error(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(OSError):
        secure_join(str(tmp_path), "/a")


def test_creating_a_target_through_a_hostile_symlink_stays_inside(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(str(outside), root / "evil")
    path = _create_target(str(root), "/evil/mnt", True)
    assert path == str(root / str(outside).lstrip("/") / "mnt")
    assert os.path.isdir(path)
    assert not (outside / "mnt").exists()


def test_a_file_target_is_created_as_an_empty_file(tmp_path):
    path = _create_target(str(tmp_path), "/etc/resolv.conf", False)
    assert os.path.isfile(path) and os.path.getsize(path) == 0
