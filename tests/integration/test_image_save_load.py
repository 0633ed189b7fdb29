"""hutch save and hutch load against the field's tools: skopeo reads what hutch saves
(docker-archive and oci-archive, the config digest — the image id — kept, OCI manifests
kept byte for byte), hutch loads what skopeo writes and unpacks the same rootfs as umoci,
archives survive a pipe between two stores, and hostile archives are one clear error
that leaves `hutch images` as it was. The installed `hutch` runs as a user runs it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import registry_fixtures as rf
from registry_fixtures import SKOPEO, skopeo_copy

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

registry = rf.registry
busybox_layout = rf.busybox_layout

HUTCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hutch")
SKOPEO_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp",
              "REGISTRY_AUTH_FILE": "/dev/null"}


def hutch(store: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    return subprocess.run([HUTCH, "--root", str(store / "root"), "--run", str(store / "run"),
                           *args], timeout=120, **kw)


def skopeo(*args: str) -> str:
    r = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
                       env=SKOPEO_ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def tree(path: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else None
            data = None
            if os.path.isfile(p) and not os.path.islink(p):
                data = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, link, data)
    return out


def unpacked_tree(store: Path, name: str, where: Path) -> dict[str, tuple]:
    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.mount import mount_all, unmount

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        img = svc.lookup(name)
        mounts = svc.snapshotter.view("check", img.top_chain_id)
        where.mkdir()
        try:
            mount_all(mounts, str(where))
            try:
                return tree(where)
            finally:
                unmount(str(where))
        finally:
            svc.snapshotter.remove("check")


def umoci_tree(layout: Path, tag: str, where: Path) -> dict[str, tuple]:
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(where)], check=True,
                   capture_output=True)
    return tree(where / "rootfs")


def images(store: Path) -> list[dict]:
    p = hutch(store, "images", "--format", "json", text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def pulled(registry, busybox_layout, tmp_path_factory):
    """A store holding busybox pulled from a registry (not loaded: independent of load)."""
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/busybox:1")
    store = tmp_path_factory.mktemp("pulled")
    name = f"{registry.host}/lib/busybox:1"
    p = hutch(store, "pull", "-q", name, text=True)
    assert p.returncode == 0, p.stderr
    return store, name


def test_docker_archive_from_save_is_read_by_skopeo_with_the_same_config(pulled,
                                                                        busybox_layout,
                                                                        tmp_path):
    store, name = pulled
    archive = tmp_path / "busybox.tar"
    p = hutch(store, "save", "-o", str(archive), name, text=True)
    assert p.returncode == 0, p.stderr
    config = skopeo("inspect", "--raw", "--config", f"docker-archive:{archive}").encode()
    assert "sha256:" + hashlib.sha256(config).hexdigest() == busybox_layout.config_digest
    # dir: keeps skopeo from converting anything: config and plain layers as in the archive.
    skopeo("copy", "-q", f"docker-archive:{archive}", f"dir:{tmp_path / 'dir'}")
    manifest = json.loads((tmp_path / "dir" / "manifest.json").read_text())
    assert manifest["config"]["digest"] == busybox_layout.config_digest
    assert [x["digest"] for x in manifest["layers"]] == [busybox_layout.diff_id]
    # And skopeo's OCI conversion of it unpacks (umoci) to the same rootfs as ours.
    skopeo("copy", "-q", f"docker-archive:{archive}", f"oci:{tmp_path / 'oci'}:x")
    assert umoci_tree(tmp_path / "oci", "x", tmp_path / "u") == \
        unpacked_tree(store, name, tmp_path / "mnt")


def test_oci_archive_from_save_keeps_the_manifest_digest_for_skopeo(pulled, busybox_layout,
                                                                   tmp_path):
    store, name = pulled
    archive = tmp_path / "busybox-oci.tar"
    p = hutch(store, "save", "--format", "oci-archive", "-o", str(archive), name, text=True)
    assert p.returncode == 0, p.stderr
    skopeo("copy", "-q", f"oci-archive:{archive}:1", f"oci:{tmp_path / 'oci'}:1")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox_layout.manifest_digest
    with tarfile.open(archive) as t:
        idx = json.load(t.extractfile("index.json"))
    assert idx["manifests"][0]["annotations"]["io.containerd.image.name"] == name


def test_load_of_a_skopeo_docker_archive_unpacks_like_umoci(busybox_layout, tmp_path):
    archive = tmp_path / "da.tar"
    skopeo("copy", "-q", f"oci:{busybox_layout.layout}:{busybox_layout.tag}",
           f"docker-archive:{archive}:example.com/tools/busybox:2")
    store = tmp_path / "s"
    p = hutch(store, "load", "-i", str(archive), text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "Loaded image: example.com/tools/busybox:2\n"
    p = hutch(store, "image", "inspect", "example.com/tools/busybox:2", text=True)
    (info,) = json.loads(p.stdout)
    assert info["Id"] == busybox_layout.config_digest
    assert info["RootFS"]["Layers"] == [busybox_layout.diff_id]
    assert unpacked_tree(store, "example.com/tools/busybox:2", tmp_path / "mnt") == \
        umoci_tree(busybox_layout.layout, busybox_layout.tag, tmp_path / "u")


def test_load_of_a_skopeo_oci_archive_from_stdin_keeps_its_digests(busybox_layout,
                                                                   tmp_path):
    archive = tmp_path / "oa.tar"
    skopeo("copy", "-q", f"oci:{busybox_layout.layout}:{busybox_layout.tag}",
           f"oci-archive:{archive}:latest")
    store = tmp_path / "s"
    with open(archive, "rb") as f:
        p = hutch(store, "load", stdin=f, text=True)
    assert p.returncode == 0, p.stderr
    # A bare tag names no repository: docker's "Loaded image ID" and the image kept by id.
    assert p.stdout == f"Loaded image ID: {busybox_layout.config_digest}\n"
    (row,) = images(store)
    assert row["Digest"] == busybox_layout.manifest_digest
    assert row["ID"] == busybox_layout.config_digest
    assert unpacked_tree(store, busybox_layout.config_digest[7:19], tmp_path / "mnt") == \
        umoci_tree(busybox_layout.layout, busybox_layout.tag, tmp_path / "u")


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_piped_into_load_gives_the_same_image_in_another_store(pulled, busybox_layout,
                                                                    tmp_path, fmt):
    store, name = pulled
    other = tmp_path / "other"
    save = subprocess.Popen([HUTCH, "--root", str(store / "root"), "save", "--format", fmt,
                             name], stdout=subprocess.PIPE)
    try:
        p = hutch(other, "load", "-q", stdin=save.stdout, text=True)
    finally:
        save.stdout.close()
        assert save.wait(60) == 0
    assert p.returncode == 0, p.stderr
    (row,) = images(other)
    assert row["Name"] == name and row["ID"] == busybox_layout.config_digest
    if fmt == "oci-archive":
        assert row["Digest"] == busybox_layout.manifest_digest
    assert unpacked_tree(other, name, tmp_path / "a") == \
        unpacked_tree(store, name, tmp_path / "b")


def _tar(members: dict[str, bytes], size_override: dict[str, int] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _layout_members(layout: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(layout):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(layout))] = p.read_bytes()
    return out


@pytest.mark.parametrize("case", ["dotdot", "missing-layer", "corrupt-layer", "huge-size"])
def test_a_hostile_archive_is_one_error_line_and_changes_nothing(busybox_layout, tmp_path,
                                                                 case):
    # A fresh store: a blob the store holds already would not be "missing".
    store = tmp_path / "s"
    before = images(store)
    blobs_before = sorted(os.listdir(store / "root" / "content" / "blobs" / "sha256"))
    members = _layout_members(busybox_layout.layout)
    layer = f"blobs/sha256/{busybox_layout.layer_digest[7:]}"
    members["index.json"] = members["index.json"].replace(b'"latest"',
                                                          b'"example.com/evil:1"')
    if case == "dotdot":
        members["../../outside"] = b"x"
        data = _tar(members)
    elif case == "missing-layer":
        del members[layer]
        data = _tar(members)
    elif case == "corrupt-layer":
        blob = bytearray(members[layer])
        blob[len(blob) // 2] ^= 0xFF
        members[layer] = bytes(blob)
        data = _tar(members)
    else:
        ti = tarfile.TarInfo(layer)
        ti.size = 1 << 39
        data = ti.tobuf(format=tarfile.GNU_FORMAT) + _tar(members)  # 512 GiB "layer"
    p = hutch(store, "load", input=data)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert err.startswith("Error: ") and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("Error")]) == 1
    assert images(store) == before
    assert sorted(os.listdir(store / "root" / "content" / "blobs" / "sha256")) == blobs_before
    assert not (tmp_path / "outside").exists()


def test_save_refuses_to_write_to_a_terminal(pulled):
    store, name = pulled
    master, slave = os.openpty()
    try:
        p = hutch(store, "save", name, capture_output=False, stdout=slave,
                  stderr=subprocess.PIPE)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 1
    assert b"cowardly refusing to save to a terminal" in p.stderr
