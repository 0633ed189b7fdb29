"""hutch pull from a real registry on 127.0.0.1 (what skopeo pushed): the image is
recorded, its rootfs unpacked the same as umoci unpacks it, layers are fetched once, and
`hutch images`/`image inspect`/`tag` see it. The installed `hutch` runs as a user would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import registry_fixtures as rf
from registry_fixtures import skopeo_copy

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

registry = rf.registry
basic_registry = rf.basic_registry
busybox_layout = rf.busybox_layout

HUTCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hutch")


def hutch(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([HUTCH, "--root", str(root / "root"), "--run", str(root / "run"),
                           *args], capture_output=True, text=True, timeout=120, **kw)


def tree(path: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else None
            data = None
            if os.path.isfile(p) and not os.path.islink(p):
                data = Path(p).read_bytes()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, link, data)
    return out


@pytest.fixture
def store(tmp_path):
    yield tmp_path
    # Unpacks mount nothing persistent; leave the temp dir to pytest.


def test_pull_records_unpacks_and_lists_the_image(registry, busybox_layout, store, tmp_path):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/busybox:1")
    name = f"{registry.host}/lib/busybox:1"
    p = hutch(store, "pull", name)
    assert p.returncode == 0, p.stderr
    assert f"Digest: {busybox_layout.manifest_digest}" in p.stdout

    p = hutch(store, "images", "--format", "json")
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(p.stdout)
    assert row["Name"] == name and row["Digest"] == busybox_layout.manifest_digest

    p = hutch(store, "images")
    assert "lib/busybox" in p.stdout and "1" in p.stdout

    # The unpacked rootfs equals umoci's unpack of the same layout.
    from hutch.config import Settings
    from hutch.image.service import ImageService

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        img = svc.lookup(name)
        top = img.top_chain_id
        mounts = svc.snapshotter.view("check", top)
        from hutch.mount import mount_all, unmount

        target = tmp_path / "mnt"
        target.mkdir()
        mount_all(mounts, str(target))
        try:
            ours = tree(target)
        finally:
            unmount(str(target))
            svc.snapshotter.remove("check")
    subprocess.run(["umoci", "unpack", "--image",
                    f"{busybox_layout.layout}:{busybox_layout.tag}", str(tmp_path / "u")],
                   check=True, capture_output=True)
    theirs = tree(tmp_path / "u" / "rootfs")
    assert ours == theirs


def test_a_second_pull_fetches_nothing_and_a_tag_shares_the_image(registry, busybox_layout,
                                                                   store):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/twice:1")
    name = f"{registry.host}/lib/twice:1"
    assert hutch(store, "pull", "-q", name).returncode == 0
    p = hutch(store, "pull", name)
    assert p.returncode == 0, p.stderr
    assert "Already exists" in p.stderr
    assert hutch(store, "tag", name, "mine:latest").returncode == 0
    p = hutch(store, "image", "inspect", "mine")
    assert p.returncode == 0, p.stderr
    (info,) = json.loads(p.stdout)
    assert info["Id"] == busybox_layout.config_digest
    assert hutch(store, "images", "-q").stdout.split() == [busybox_layout.config_digest[7:19]]


def test_pull_of_a_missing_image_is_one_clear_line(registry, store):
    p = hutch(store, "pull", f"{registry.host}/no/such:1")
    assert p.returncode == 1
    assert p.stderr.strip().startswith("Error:") and "Traceback" not in p.stderr
    assert json.loads(hutch(store, "images", "--format", "json").stdout) == []


def test_pull_with_credentials_from_login(basic_registry, busybox_layout, store):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, basic_registry, "lib/auth:1",
                creds=basic_registry.creds())
    name = f"{basic_registry.host}/lib/auth:1"
    p = hutch(store, "pull", name)
    assert p.returncode == 1 and "login" in p.stderr
    user, password = basic_registry.creds()
    p = hutch(store, "login", "-u", user, "--password-stdin", basic_registry.host,
              input=password)
    assert p.returncode == 0, p.stderr
    assert hutch(store, "pull", "-q", name).returncode == 0
    assert hutch(store, "logout", basic_registry.host).returncode == 0


def test_push_by_hutch_is_what_skopeo_pulls_back(registry, busybox_layout, store, tmp_path):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/src:1")
    assert hutch(store, "pull", "-q", f"{registry.host}/lib/src:1").returncode == 0
    dest = f"{registry.host}/other/copy:2"
    assert hutch(store, "tag", f"{registry.host}/lib/src:1", dest).returncode == 0
    p = hutch(store, "push", dest)
    assert p.returncode == 0, p.stderr
    assert f"digest: {busybox_layout.manifest_digest}" in p.stdout
    out = tmp_path / "back"
    rf._skopeo(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                "--src-no-creds", f"docker://{dest}", f"oci:{out}:x"])
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox_layout.manifest_digest
    # a second push sends no blob again
    p = hutch(store, "push", dest)
    assert p.returncode == 0 and "Pushed" not in p.stderr, p.stderr


def test_rmi_untags_and_collects_content_and_layers(registry, busybox_layout, store):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/gone:1")
    name = f"{registry.host}/lib/gone:1"
    assert hutch(store, "pull", "-q", name).returncode == 0
    assert hutch(store, "tag", name, "alias:1").returncode == 0
    p = hutch(store, "rmi", busybox_layout.config_digest[7:19])
    assert p.returncode == 1 and "must be forced" in p.stderr
    p = hutch(store, "rmi", "alias:1")
    assert p.returncode == 0 and "Untagged: docker.io/library/alias:1" in p.stdout
    blobs = store / "root" / "content" / "blobs" / "sha256"
    assert len(list(blobs.iterdir())) == 3  # manifest, config, layer: still named
    p = hutch(store, "rmi", name)
    assert p.returncode == 0, p.stderr
    assert list(blobs.iterdir()) == []
    assert json.loads(hutch(store, "images", "--format", "json").stdout) == []
    p = hutch(store, "rmi", "nosuch:1")
    assert p.returncode == 1 and p.stderr.startswith("Error: No such image")


def test_image_prune_all(registry, busybox_layout, store):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/prune:1")
    assert hutch(store, "pull", "-q", f"{registry.host}/lib/prune:1").returncode == 0
    p = hutch(store, "image", "prune", "-a")
    assert p.returncode == 0, p.stderr
    assert "Total reclaimed space" in p.stdout
    assert json.loads(hutch(store, "images", "--format", "json").stdout) == []


def test_image_prune_all_keeps_images_containers_use(registry, busybox_layout, store):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/used:1")
    name = f"{registry.host}/lib/used:1"
    assert hutch(store, "pull", "-q", name).returncode == 0
    p = hutch(store, "create", "--network", "none", name, "true")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert hutch(store, "image", "prune", "-a").returncode == 0
    assert [i["Repository"] for i in json.loads(
        hutch(store, "images", "--format", "json").stdout)] == [name.rsplit(":", 1)[0]]
    assert hutch(store, "rm", cid).returncode == 0
    assert hutch(store, "image", "prune", "-a").returncode == 0
    assert json.loads(hutch(store, "images", "--format", "json").stdout) == []


def _push_index(registry, busybox_layout, tmp_path, repo: str) -> None:
    from registry_fixtures import build_busybox_layout

    from hutch.oci import media
    from hutch.registry.client import RegistryClient

    arm = build_busybox_layout(tmp_path / "arm", architecture="arm64")
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, f"{repo}:amd")
    skopeo_copy(arm.layout, arm.tag, registry, f"{repo}:arm")
    entries = [
        {"mediaType": media.OCI_MANIFEST, "digest": img.manifest_digest,
         "size": len(img.manifest), "platform": {"os": "linux", "architecture": arch}}
        for img, arch in ((busybox_layout, "amd64"), (arm, "arm64"))]
    index = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX,
                        "manifests": entries}).encode()
    with RegistryClient(registry.host) as c:
        c.push_manifest(repo, "multi", media.OCI_INDEX, index)
    return arm


def test_pull_of_an_index_selects_the_host_or_the_asked_platform(registry, busybox_layout,
                                                                   store, tmp_path):
    arm = _push_index(registry, busybox_layout, tmp_path, "lib/multi")
    name = f"{registry.host}/lib/multi:multi"
    assert hutch(store, "pull", "-q", name).returncode == 0
    (info,) = json.loads(hutch(store, "image", "inspect", name).stdout)
    assert info["Architecture"] == "amd64" and info["Id"] == busybox_layout.config_digest
    other = tmp_path / "other"
    p = hutch(other, "pull", "--platform", "linux/arm64", name)
    assert p.returncode == 0, p.stderr
    (info,) = json.loads(hutch(other, "image", "inspect", name).stdout)
    assert info["Architecture"] == "arm64" and info["Id"] == arm.config_digest
    p = hutch(tmp_path / "third", "pull", "--platform", "linux/s390x", name)
    assert p.returncode == 1 and "linux/amd64" in p.stderr, p.stderr


@pytest.fixture
def btrfs_store(tmp_path):
    from loopfs import btrfs_loop

    with btrfs_loop(tmp_path, "200M") as mnt:
        yield mnt


@pytest.mark.parametrize("which", ["native", "btrfs"])
def test_pull_unpacks_with_the_native_and_btrfs_snapshotters(which, registry, busybox_layout,
                                                             tmp_path, request):
    store = request.getfixturevalue("btrfs_store") if which == "btrfs" else tmp_path / "s"
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, f"lib/{which}:1")
    name = f"{registry.host}/lib/{which}:1"
    env = {**os.environ}
    if which == "native":
        env["HUTCH_SNAPSHOTTER"] = "native"
    p = hutch(store, "pull", "-q", name, env=env)
    assert p.returncode == 0, p.stderr
    assert (store / "root" / "snapshotter").read_text().strip() == which
    from hutch.config import Settings
    from hutch.image.service import ImageService

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        img = svc.lookup(name)
        (mount,) = svc.snapshotter.view("look", img.top_chain_id)
        try:
            assert os.path.isfile(os.path.join(mount.source, "bin", "busybox"))
        finally:
            svc.snapshotter.remove("look")
    assert hutch(store, "rmi", name, env=env).returncode == 0


token_registry = rf.token_registry


def test_pull_and_push_through_bearer_token_auth(token_registry, busybox_layout, store):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, token_registry, "lib/tok:1",
                creds=token_registry.creds())
    name = f"{token_registry.host}/lib/tok:1"
    user, password = token_registry.creds()
    p = hutch(store, "login", "-u", user, "--password-stdin", token_registry.host,
              input=password)
    assert p.returncode == 0, p.stderr
    p = hutch(store, "pull", "-q", name)
    assert p.returncode == 0, p.stderr
    assert len(token_registry.token_server.requests) >= 1
    dest = f"{token_registry.host}/lib/tok-copy:1"
    assert hutch(store, "tag", name, dest).returncode == 0
    p = hutch(store, "push", dest)
    assert p.returncode == 0, p.stderr
    assert f"digest: {busybox_layout.manifest_digest}" in p.stdout
