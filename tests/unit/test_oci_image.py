"""Manifests, indexes, configs and descriptors are parsed strictly, and an index yields
the entry for a platform."""

from __future__ import annotations

import json

import pytest

from hutch.errors import InvalidArgument, NotFound, NotSupported
from hutch.oci import media
from hutch.oci.digest import sha256_of
from hutch.oci.image import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    parse_manifest,
    select_manifest,
)
from hutch.oci.platform import Platform

pytestmark = pytest.mark.unit

CFG = sha256_of(b"config")
L1 = sha256_of(b"layer1")


def desc(mt: str, digest: str = CFG, size: int = 6, **extra) -> dict:
    return {"mediaType": mt, "digest": digest, "size": size, **extra}


def manifest_doc(mt: str | None = media.OCI_MANIFEST, **extra) -> dict:
    d = {"schemaVersion": 2, "config": desc(media.OCI_CONFIG),
         "layers": [desc(media.OCI_LAYER_GZIP, L1, 6)], **extra}
    if mt:
        d["mediaType"] = mt
    return d


def index_doc(entries: list[dict], mt: str | None = media.OCI_INDEX) -> dict:
    d = {"schemaVersion": 2, "manifests": entries}
    if mt:
        d["mediaType"] = mt
    return d


def entry(platform: dict | None, digest_seed: bytes = b"m", mt=media.OCI_MANIFEST) -> dict:
    e = desc(mt, sha256_of(digest_seed), 100)
    if platform is not None:
        e["platform"] = platform
    return e


def b(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def test_oci_manifest_parses_into_descriptors():
    m = Manifest.parse(b(manifest_doc(annotations={"a": "b"})))
    assert m.media_type == media.OCI_MANIFEST
    assert m.config == Descriptor(media.OCI_CONFIG, CFG, 6)
    assert [x.digest for x in m.layers] == [L1]
    assert m.annotations == {"a": "b"}
    assert Manifest.parse(b(m.to_dict())) == m


def test_docker_manifest_parses():
    doc = manifest_doc(media.DOCKER_MANIFEST)
    doc["config"]["mediaType"] = media.DOCKER_CONFIG
    m = parse_manifest(b(doc))
    assert isinstance(m, Manifest) and m.media_type == media.DOCKER_MANIFEST


def test_media_type_comes_from_the_header_when_the_body_has_none():
    m = parse_manifest(b(manifest_doc(None)), media.DOCKER_MANIFEST + "; charset=utf-8")
    assert m.media_type == media.DOCKER_MANIFEST


def test_media_type_is_guessed_from_shape_when_nothing_declares_it():
    assert parse_manifest(b(manifest_doc(None)), "application/json").media_type == \
        media.OCI_MANIFEST
    assert parse_manifest(b(index_doc([], None))).media_type == media.OCI_INDEX


def test_body_and_declared_media_type_must_agree():
    with pytest.raises(InvalidArgument, match="does not match"):
        parse_manifest(b(manifest_doc()), media.DOCKER_MANIFEST)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(schemaVersion=3), "schemaVersion must be 2"),
    (lambda d: d.pop("schemaVersion"), "schemaVersion must be 2"),
    (lambda d: d.update(schemaVersion="2"), "schemaVersion must be 2"),
    (lambda d: d.update(mediaType="application/x-weird"), "unsupported mediaType"),
    (lambda d: d.pop("config"), "config: not a JSON object"),
    (lambda d: d.update(layers={}), "layers must be a list"),
    (lambda d: d["layers"][0].update(digest="sha256:zz"), "layer 0: invalid digest"),
    (lambda d: d["layers"][0].update(size=-1), "size must be a non-negative"),
    (lambda d: d["layers"][0].update(size=True), "size must be a non-negative"),
    (lambda d: d["layers"][0].update(size=1.5), "size must be a non-negative"),
    (lambda d: d["layers"][0].pop("mediaType"), "missing mediaType"),
    (lambda d: d["layers"][0].update(urls="http://x"), "urls must be a list"),
    (lambda d: d.update(annotations={"a": 1}), "annotations"),
    (lambda d: d.update(manifests=[]), "must not have a 'manifests'"),  # CVE-2021-41190
])
def test_bad_manifests_are_one_line_invalid_argument(mutate, words):
    doc = manifest_doc()
    mutate(doc)
    with pytest.raises(InvalidArgument) as e:
        Manifest.parse(b(doc))
    assert words in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("data, words", [
    (b"{", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"schemaVersion": NaN}', "not valid JSON"),
    (b"", "not valid JSON"),
])
def test_garbage_is_invalid_argument(data, words):
    with pytest.raises(InvalidArgument, match=words):
        parse_manifest(data)


def test_oversized_manifest_is_refused_before_parsing():
    data = b" " * (MAX_MANIFEST_SIZE + 1)
    with pytest.raises(InvalidArgument, match="4 MiB"):
        parse_manifest(data)


def test_schema1_is_not_supported():
    with pytest.raises(NotSupported, match="schema 1"):
        parse_manifest(b'{"schemaVersion": 1, "name": "x", "fsLayers": []}')


def test_index_parses_and_refuses_manifest_fields():
    idx = Index.parse(b(index_doc([entry({"os": "linux", "architecture": "amd64"})])))
    assert idx.manifests[0].platform == Platform("linux", "amd64")
    assert Index.parse(b(idx.to_dict())) == idx
    with pytest.raises(InvalidArgument, match="must not have 'config'"):
        Index.parse(b({**index_doc([]), "layers": []}))
    with pytest.raises(InvalidArgument, match="expected an index"):
        Index.parse(b(manifest_doc()))
    with pytest.raises(InvalidArgument, match="expected a manifest"):
        Manifest.parse(b(index_doc([])))


def test_docker_manifest_list_is_an_index():
    idx = parse_manifest(b(index_doc([], media.DOCKER_MANIFEST_LIST)))
    assert isinstance(idx, Index) and idx.media_type == media.DOCKER_MANIFEST_LIST


def _index(*platforms) -> Index:
    return Index.parse(b(index_doc([entry(p, str(i).encode())
                                    for i, p in enumerate(platforms)])))


def test_select_manifest_picks_the_exact_platform():
    idx = _index({"os": "linux", "architecture": "arm64", "variant": "v8"},
                 {"os": "linux", "architecture": "amd64"},
                 {"os": "windows", "architecture": "amd64"})
    assert select_manifest(idx, Platform.parse("linux/amd64")) is idx.manifests[1]
    assert select_manifest(idx, Platform.parse("linux/arm64")) is idx.manifests[0]


def test_select_manifest_prefers_exact_over_compatible_variant():
    idx = _index({"os": "linux", "architecture": "arm", "variant": "v6"},
                 {"os": "linux", "architecture": "arm", "variant": "v7"})
    assert select_manifest(idx, Platform.parse("linux/arm/v7")) is idx.manifests[1]
    assert select_manifest(idx, Platform.parse("linux/arm/v6")) is idx.manifests[0]


def test_select_manifest_skips_attestations_and_falls_back_to_platformless():
    idx = _index({"os": "unknown", "architecture": "unknown"}, None)
    assert select_manifest(idx, Platform.parse("linux/amd64")) is idx.manifests[1]


def test_select_manifest_names_what_is_available():
    idx = _index({"os": "linux", "architecture": "s390x"})
    with pytest.raises(NotFound) as e:
        select_manifest(idx, Platform.parse("linux/amd64"))
    assert "linux/amd64" in str(e.value) and "linux/s390x" in e.value.hint


def config_doc(**extra) -> dict:
    return {"architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/w",
                       "User": "1:2", "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}},
                       "Volumes": {"/data": {}}, "StopSignal": "SIGTERM"},
            "rootfs": {"type": "layers", "diff_ids": [str(L1)]},
            "history": [{"created_by": "x"}], **extra}


def test_image_config_parses_run_defaults():
    c = ImageConfig.parse(b(config_doc()))
    assert c.platform == Platform("linux", "amd64")
    assert c.env == ("PATH=/bin",) and c.cmd == ("sh",) and c.entrypoint is None
    assert c.working_dir == "/w" and c.user == "1:2" and c.labels == {"a": "b"}
    assert c.exposed_ports == ("80/tcp",) and c.volumes == ("/data",)
    assert c.diff_ids == (L1,) and c.stop_signal == "SIGTERM"
    c.check_layers(Manifest.parse(b(manifest_doc())))


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("os"), "missing os"),
    (lambda d: d["rootfs"].update(type="x"), "rootfs.type"),
    (lambda d: d["rootfs"].update(diff_ids=["sha256:x"]), "diff_ids"),
    (lambda d: d["config"].update(Env="PATH=/bin"), "Env"),
    (lambda d: d["config"].update(Cmd=[1]), "Cmd"),
    (lambda d: d.update(config=[]), "config must be an object"),
])
def test_bad_image_configs_are_refused(mutate, words):
    doc = config_doc()
    mutate(doc)
    with pytest.raises(InvalidArgument, match=words):
        ImageConfig.parse(b(doc))


def test_layer_count_must_match_diff_ids():
    c = ImageConfig.parse(b(config_doc(rootfs={"type": "layers", "diff_ids": []})))
    with pytest.raises(InvalidArgument, match="1 layers but its config lists 0"):
        c.check_layers(Manifest.parse(b(manifest_doc())))


def test_media_helpers():
    assert media.compression(media.OCI_LAYER_ZSTD) == "zstd"
    assert media.compression(media.DOCKER_LAYER_GZIP) == "gzip"
    assert media.compression(media.OCI_LAYER_TAR) == ""
    assert media.compression(media.OCI_CONFIG) is None
    assert media.DOCKER_FOREIGN_LAYER_GZIP in media.NONDISTRIBUTABLE
