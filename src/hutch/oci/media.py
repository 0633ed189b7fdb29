"""Media types of image manifests, indexes, configs and layers (OCI image-spec
media-types.md and Docker's image manifest v2 schema 2)."""

from __future__ import annotations

# Docker image manifest v2, schema 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"  # seen in the wild
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
# Schema 1 is refused (signed, no content-addressed config); named to say so clearly.
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# OCI image-spec v1.1
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
# What a client says it accepts when resolving (Accept header), most specific first.
ACCEPT_MANIFESTS = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})

LAYER_TAR = frozenset({OCI_LAYER_TAR, OCI_LAYER_ND_TAR, DOCKER_LAYER_TAR})
LAYER_GZIP = frozenset({OCI_LAYER_GZIP, OCI_LAYER_ND_GZIP, DOCKER_LAYER_GZIP,
                        DOCKER_FOREIGN_LAYER_GZIP})
LAYER_ZSTD = frozenset({OCI_LAYER_ZSTD, OCI_LAYER_ND_ZSTD, DOCKER_LAYER_ZSTD})
LAYER_TYPES = LAYER_TAR | LAYER_GZIP | LAYER_ZSTD
# Layers that registries may not carry: fetched from the descriptor's `urls` if allowed.
NONDISTRIBUTABLE = frozenset({OCI_LAYER_ND_TAR, OCI_LAYER_ND_GZIP, OCI_LAYER_ND_ZSTD,
                              DOCKER_FOREIGN_LAYER_GZIP})


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_layer(media_type: str) -> bool:
    return media_type in LAYER_TYPES


def compression(media_type: str) -> str | None:
    """"gzip", "zstd", "" (plain tar), or None if this is not a known layer type."""
    if media_type in LAYER_GZIP:
        return "gzip"
    if media_type in LAYER_ZSTD:
        return "zstd"
    if media_type in LAYER_TAR:
        return ""
    return None
