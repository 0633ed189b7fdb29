"""hutch's registry client against the real distribution registry on 127.0.0.1, with
skopeo as the reference client: what skopeo pushes we resolve and fetch with verified
digests, what we push skopeo sees with the same digest. Plain, htpasswd (basic) and
bearer-token registries."""

from __future__ import annotations

import json

import pytest
import registry_fixtures as rf
from registry_fixtures import OCI_INDEX, BuiltImage, Registry, skopeo_copy, skopeo_inspect

from hutch.errors import InvalidArgument, NotFound, Unauthenticated
from hutch.oci import media
from hutch.oci.digest import DigestMismatch, Hasher, sha256_of
from hutch.oci.image import Descriptor, ImageConfig, Index, Manifest, select_manifest
from hutch.oci.platform import Platform
from hutch.registry.client import RegistryClient
from hutch.registry.credentials import CredentialStore, login

pytestmark = pytest.mark.integration

# The shared fixtures, made visible to pytest in this module.
registry = rf.registry
basic_registry = rf.basic_registry
token_registry = rf.token_registry
busybox_layout = rf.busybox_layout


def fetch_all(client: RegistryClient, repo: str, desc: Descriptor) -> bytes:
    return b"".join(client.fetch_blob(repo, desc))


def check_pulls_what_skopeo_pushed(client: RegistryClient, reg: Registry, image: BuiltImage,
                                   repo: str) -> None:
    desc, data = client.resolve(f"{reg.host}/{repo}:1")
    assert desc.digest == image.manifest_digest and data == image.manifest
    assert desc.media_type == media.OCI_MANIFEST and desc.size == len(image.manifest)
    manifest = Manifest.parse(data, desc.media_type)
    config = fetch_all(client, repo, manifest.config)
    assert config == image.config
    ImageConfig.parse(config).check_layers(manifest)
    assert fetch_all(client, repo, manifest.layers[0]) == image.layer


def test_pull_what_skopeo_pushed_to_a_plain_registry(registry, busybox_layout):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/busybox:1")
    with RegistryClient(registry.host) as c:
        check_pulls_what_skopeo_pushed(c, registry, busybox_layout, "lib/busybox")
        by_digest = c.resolve(f"{registry.host}/lib/busybox@{busybox_layout.manifest_digest}")
        assert by_digest[1] == busybox_layout.manifest
        assert c.fetch_manifest("lib/busybox", busybox_layout.manifest_digest) == \
            busybox_layout.manifest
        assert c.head(f"{registry.host}/lib/busybox:1") == Descriptor(
            media.OCI_MANIFEST, busybox_layout.manifest_digest, len(busybox_layout.manifest))


def test_resumed_fetch_from_an_offset_verifies_the_whole_blob(registry, busybox_layout):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/resume:1")
    layer = Manifest.parse(busybox_layout.manifest).layers[0]
    half = layer.size // 2
    h = Hasher()
    h.update(busybox_layout.layer[:half])
    with RegistryClient(registry.host) as c:
        rest = b"".join(c.fetch_blob("lib/resume", layer, offset=half, hasher=h))
        assert busybox_layout.layer[:half] + rest == busybox_layout.layer
        # a descriptor lying about the digest is caught at the end of the stream
        liar = Descriptor(layer.media_type, sha256_of(b"x"), layer.size)
        with pytest.raises((DigestMismatch, NotFound)):
            fetch_all(c, "lib/resume", liar)


def test_missing_things_are_not_found(registry):
    with RegistryClient(registry.host) as c:
        with pytest.raises(NotFound, match="MANIFEST_UNKNOWN|NAME_UNKNOWN"):
            c.resolve(f"{registry.host}/lib/nothing:here")
        assert not c.blob_exists("lib/nothing", sha256_of(b"nothing"))
        with pytest.raises(NotFound):
            fetch_all(c, "lib/nothing", Descriptor(media.OCI_LAYER_GZIP, sha256_of(b"n"), 1))


@pytest.mark.parametrize("mode", ["bytes", "stream", "chunked"])
def test_push_by_hutch_is_seen_by_skopeo(registry, busybox_layout, mode):
    repo = f"pushed/{mode}"
    manifest = Manifest.parse(busybox_layout.manifest)
    with RegistryClient(registry.host) as c:
        for desc in (manifest.config, *manifest.layers):
            assert not c.blob_exists(repo, desc.digest)
            path = busybox_layout.blob(desc.digest)
            if mode == "bytes":
                c.push_blob(repo, desc, path.read_bytes())
            elif mode == "stream":
                with open(path, "rb") as f:
                    c.push_blob(repo, desc, f)
            else:
                with open(path, "rb") as f:
                    c.push_blob(repo, desc, f, chunk_size=256 << 10)
            assert c.blob_exists(repo, desc.digest)
        digest = c.push_manifest(repo, "v1", media.OCI_MANIFEST, busybox_layout.manifest)
    assert digest == busybox_layout.manifest_digest
    seen = skopeo_inspect(registry, f"{repo}:v1")
    assert seen["Digest"] == busybox_layout.manifest_digest
    assert seen["Layers"] == [busybox_layout.layer_digest]


def test_push_of_wrong_data_leaves_no_blob(registry, busybox_layout):
    desc = Manifest.parse(busybox_layout.manifest).config
    with RegistryClient(registry.host) as c:
        with pytest.raises(DigestMismatch):
            c.push_blob("pushed/wrong", desc, iter([b"not the config"]))
        assert not c.blob_exists("pushed/wrong", desc.digest)


def test_cross_repository_mount(registry, busybox_layout):
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/source:1")
    layer = Manifest.parse(busybox_layout.manifest).layers[0]
    with RegistryClient(registry.host) as c:
        assert c.mount_blob("lib/target", layer.digest, "lib/source")
        assert c.blob_exists("lib/target", layer.digest)
        assert not c.mount_blob("lib/target2", sha256_of(b"absent"), "lib/source")


def test_index_pushed_by_hutch_selects_the_host_platform(registry, busybox_layout):
    repo = "lib/multi"
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, f"{repo}:single")
    entry = {"mediaType": media.OCI_MANIFEST, "digest": busybox_layout.manifest_digest,
             "size": len(busybox_layout.manifest)}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**entry, "platform": {"os": "linux", "architecture": "s390x"}},
        {**entry, "platform": {"os": "linux", "architecture": "amd64"}},
    ]}).encode()
    with RegistryClient(registry.host) as c:
        c.push_manifest(repo, "multi", media.OCI_INDEX, index)
        desc, data = c.resolve(f"{registry.host}/{repo}:multi")
        assert desc.media_type == media.OCI_INDEX and desc.digest == sha256_of(index)
        chosen = select_manifest(Index.parse(data), Platform.parse("linux/amd64"))
        assert chosen.digest == busybox_layout.manifest_digest
    raw = skopeo_inspect(registry, f"{repo}:multi", raw=True)
    assert raw["manifests"][1]["platform"]["architecture"] == "amd64"


def test_resolve_refuses_a_reference_to_another_host(registry):
    with RegistryClient(registry.host) as c, pytest.raises(InvalidArgument):
        c.resolve("127.0.0.1:1/lib/x:1")


# -- basic auth (htpasswd) ---------------------------------------------------------------

def test_basic_auth_registry(basic_registry, busybox_layout, tmp_path):
    reg = basic_registry
    user, password = reg.creds()
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, reg, "lib/basic:1",
                creds=(user, password))
    with RegistryClient(reg.host) as c, pytest.raises(Unauthenticated) as e:
        c.resolve(f"{reg.host}/lib/basic:1")
    assert e.value.hint == f"hutch login {reg.host}"
    with RegistryClient(reg.host, credentials=(user, "wrong")) as c, \
            pytest.raises(Unauthenticated, match="refused"):
        c.resolve(f"{reg.host}/lib/basic:1")
    with RegistryClient(reg.host, credentials=(user, password)) as c:
        check_pulls_what_skopeo_pushed(c, reg, busybox_layout, "lib/basic")
        c.push_manifest("lib/basic", "again", media.OCI_MANIFEST, busybox_layout.manifest)
    assert skopeo_inspect(reg, "lib/basic:again", creds=(user, password))["Digest"] == \
        busybox_layout.manifest_digest

    store = CredentialStore(tmp_path / "auth.json")
    with pytest.raises(Unauthenticated):
        login(reg.host, user, "wrong", store=store)
    assert store.get(reg.host) is None
    login(reg.host, user, password, store=store)
    assert store.get(reg.host) == (user, password)


# -- bearer token auth -------------------------------------------------------------------

def test_token_auth_registry(token_registry, busybox_layout, tmp_path):
    reg = token_registry
    tokens = reg.token_server
    user, password = reg.creds()
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, reg, "lib/token:1",
                creds=(user, password))

    # anonymous pull: the token server grants pull to anyone
    tokens.requests.clear()
    with RegistryClient(reg.host) as c:
        check_pulls_what_skopeo_pushed(c, reg, busybox_layout, "lib/token")
    assert len(tokens.requests) == 1, "one token for repository:lib/token:pull, reused"
    assert tokens.requests[0]["user"] is None
    assert tokens.requests[0]["scope"] == ["repository:lib/token:pull"]

    # anonymous push: the token lacks push, the registry says no
    with RegistryClient(reg.host) as c, pytest.raises(Unauthenticated):
        c.push_manifest("lib/token", "anon", media.OCI_MANIFEST, busybox_layout.manifest)

    # with credentials: push works, and skopeo sees it
    tokens.requests.clear()
    with RegistryClient(reg.host, credentials=(user, password)) as c:
        c.push_manifest("lib/token", "mine", media.OCI_MANIFEST, busybox_layout.manifest)
        c.resolve(f"{reg.host}/lib/token:mine")  # the push token covers the pull
    assert [r["user"] for r in tokens.requests] == [user]
    assert skopeo_inspect(reg, "lib/token:mine", creds=(user, password))["Digest"] == \
        busybox_layout.manifest_digest

    with RegistryClient(reg.host, credentials=(user, "wrong")) as c, \
            pytest.raises(Unauthenticated, match="refused a token"):
        c.resolve(f"{reg.host}/lib/token:1")

    store = CredentialStore(tmp_path / "auth.json")
    with pytest.raises(Unauthenticated):
        login(reg.host, user, "wrong", store=store)
    login(reg.host, user, password, store=store)
    assert store.get(reg.host) == (user, password)
