"""A real multi-layer distribution image: debootstrap's Debian minbase cut into five
layers, pushed by skopeo, pulled by hutch; the unpacked rootfs is compared file by file
with umoci's unpack of the same layout (the issue's reference), and with the tree
debootstrap made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import registry_fixtures as rf
from debootstrap_image import debootstrap_layout
from registry_fixtures import skopeo_copy
from test_image_pull import hutch, tree

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

registry = rf.registry


@pytest.fixture(scope="module")
def debian():
    return debootstrap_layout()


def test_debian_minbase_pulls_and_unpacks_like_umoci(registry, debian, tmp_path):
    assert len(debian.layers) >= 4
    skopeo_copy(debian.layout, debian.tag, registry, "debian/minbase:bookworm")
    name = f"{registry.host}/debian/minbase:bookworm"
    p = hutch(tmp_path, "pull", "-q", name)
    assert p.returncode == 0, p.stderr

    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.mount import mount_all, unmount

    with ImageService(Settings(root=str(tmp_path / "root"), run=str(tmp_path / "run"))) as svc:
        img = svc.lookup(name)
        assert [layer.digest for layer in img.manifest.layers] == [
            layer["digest"] for layer in debian.layers]
        mounts = svc.snapshotter.view("check", img.top_chain_id)
        target = tmp_path / "mnt"
        target.mkdir()
        mount_all(mounts, str(target))
        try:
            ours = tree(target)
        finally:
            unmount(str(target))
            svc.snapshotter.remove("check")
    subprocess.run(["umoci", "unpack", "--image", f"{debian.layout}:{debian.tag}",
                    str(tmp_path / "u")], check=True, capture_output=True)
    theirs = tree(tmp_path / "u" / "rootfs")
    assert ours.keys() == theirs.keys()
    diff = [k for k in ours if ours[k] != theirs[k]]
    assert diff == []
    assert Path(tmp_path / "u" / "rootfs" / "etc" / "debian_version").exists()
