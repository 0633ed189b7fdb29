"""`hutch save`: images to docker-archive or oci-archive tars (formats: see
hutch.image.archive_io)."""

from __future__ import annotations

import json
import os
import uuid
from typing import BinaryIO

from hutch.errors import FailedPrecondition, InvalidArgument, NotFound
from hutch.image._ingest import (
    _CHUNK,
    CONTAINERD_NAME,
    FORMATS,
    REF_NAME,
)


class _TarOut:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.names: set[str] = set()

    def _header(self, name: str, type_: str, size: int = 0) -> None:
        from hutch.archive import tar

        mode = 0o755 if type_ == tar.DIRTYPE else 0o644
        self.out.write(tar.encode_header(tar.TarEntry(name=name, type=type_, mode=mode,
                                                      size=size)))
        self.names.add(name)

    def dir(self, name: str) -> None:
        from hutch.archive import tar

        if name not in self.names:
            self._header(name, tar.DIRTYPE)

    def file(self, name: str, data: bytes) -> None:
        self.stream(name, len(data), iter((data,)))

    def stream(self, name: str, size: int, chunks) -> None:
        from hutch.archive import tar

        if name in self.names:
            return
        self._header(name, tar.REGTYPE, size)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise FailedPrecondition(f"{name}: more data than the {size} bytes expected")
            self.out.write(chunk)
        if written != size:
            raise FailedPrecondition(f"{name}: {written} bytes instead of {size}")
        self.out.write(tar.padding(size))

    def close(self) -> None:
        from hutch.archive import tar

        self.out.write(tar.end_of_archive())


def _blob_name(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _chunks(f: BinaryIO):
    while chunk := f.read(_CHUNK):
        yield chunk


def _selected(svc, names: list[str]) -> list[tuple[str | None, object]]:
    """(canonical name or None when given an id, ImageRef) per argument."""
    out = []
    for text in names:
        image = svc.lookup(text)
        try:
            name = svc.normalize(text)
            svc.meta.get_image(name)
        except (InvalidArgument, NotFound):
            name = None
        out.append((name, image))
    return out


def save(svc, names: list[str], out, *, format: str = "docker-archive") -> None:
    """Write the images `names` (names or ids) as one archive to `out` (a path, written
    to a temporary file and renamed into place, or a binary stream)."""
    if format not in FORMATS:
        raise InvalidArgument(f"unknown archive format {format!r}",
                              hint="use docker-archive or oci-archive")
    if not names:
        raise InvalidArgument("save needs at least one image")
    images = _selected(svc, names)
    if not isinstance(out, (str, os.PathLike)):
        _write(svc, images, out, format)
        return
    path = os.fspath(out)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            _write(svc, images, f, format)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write(svc, images, out: BinaryIO, format: str) -> None:
    w = _TarOut(out)
    w.file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    w.dir("blobs/")
    if format == "oci-archive":
        index = _write_oci(svc, images, w)
    else:
        index = _write_docker(svc, images, w)
    w.file("index.json", json.dumps(index, separators=(",", ":")).encode())
    w.close()
    out.flush()


def _annotations(name: str | None) -> dict[str, str]:
    if name is None:
        return {}
    from hutch.oci.reference import Reference

    ref = Reference.parse(name)
    a = {CONTAINERD_NAME: name}
    if ref.tag:
        a[REF_NAME] = ref.tag
    return a


def _copy_blob(svc, w: _TarOut, digest: str, size: int | None = None) -> None:
    name = _blob_name(digest)
    if name in w.names:
        return
    w.dir(name.rsplit("/", 1)[0] + "/")
    with svc.content.open(digest) as f:
        actual = os.fstat(f.fileno()).st_size
        if size is not None and actual != size:
            raise FailedPrecondition(f"stored blob {digest} is {actual} bytes, expected {size}")
        w.stream(name, actual, _chunks(f))


def _as_oci_manifest(manifest) -> bytes:
    from hutch.oci import media

    layer_types = {"gzip": media.OCI_LAYER_GZIP, "zstd": media.OCI_LAYER_ZSTD,
                   "": media.OCI_LAYER_TAR}
    if manifest.config.media_type not in media.CONFIG_TYPES:
        raise FailedPrecondition(f"cannot write {manifest.media_type} with config "
                                 f"{manifest.config.media_type} as an OCI manifest")
    layers = []
    for layer in manifest.layers:
        d = layer.to_dict()
        if layer.media_type in media.NONDISTRIBUTABLE:
            d["mediaType"] = {"gzip": media.OCI_LAYER_ND_GZIP}.get(
                media.compression(layer.media_type) or "", media.OCI_LAYER_ND_TAR)
        else:
            d["mediaType"] = layer_types[media.compression(layer.media_type) or ""]
        layers.append(d)
    config = manifest.config.to_dict()
    config["mediaType"] = media.OCI_CONFIG
    doc = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "config": config,
           "layers": layers}
    return json.dumps(doc, separators=(",", ":")).encode()


def _write_oci(svc, images, w: _TarOut) -> dict:
    from hutch.oci import media
    from hutch.oci.digest import sha256_of
    from hutch.oci.image import Manifest

    manifests = []
    for name, image in images:
        m = image.manifest
        _copy_blob(svc, w, m.config)
        for layer in m.layers:
            _copy_blob(svc, w, layer.digest, layer.size)
        body = svc.content.read_bytes(m.digest)
        digest = m.digest
        manifest = Manifest.parse(body)
        if manifest.media_type == media.OCI_MANIFEST:
            _copy_blob(svc, w, m.digest)
        else:
            # OCI layout readers (skopeo, umoci) only take OCI media types: a Docker
            # schema 2 image gets an equivalent OCI manifest. The config is untouched,
            # so the image id stays; the manifest digest cannot.
            body = _as_oci_manifest(manifest)
            digest = sha256_of(body)
            w.dir("blobs/sha256/")
            w.file(_blob_name(digest), body)
        desc = {"mediaType": media.OCI_MANIFEST, "digest": digest, "size": len(body)}
        if name is not None:
            desc["annotations"] = _annotations(name)
        if desc not in manifests:
            manifests.append(desc)
    return {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": manifests}


def _write_docker(svc, images, w: _TarOut) -> dict:
    from hutch.oci import media
    from hutch.oci.reference import Reference

    entries: dict[str, dict] = {}
    manifests = []
    sizes: dict[str, int] = {}
    for name, image in images:
        m = image.manifest
        cfg_name = _blob_name(m.config)
        _copy_blob(svc, w, m.config)
        entry = entries.get(m.config)
        if entry is None:
            entry = entries[m.config] = {"Config": cfg_name, "RepoTags": [], "Layers": []}
            for layer in m.layers:
                if layer.diff_id not in sizes:
                    sizes[layer.diff_id] = _write_plain_layer(svc, w, layer)
                entry["Layers"].append(_blob_name(layer.diff_id))
        if name is not None:
            ref = Reference.parse(name)
            tag = Reference(ref.domain, ref.path, ref.tag).familiar() if ref.tag else None
            if tag and tag not in entry["RepoTags"]:
                entry["RepoTags"].append(tag)
        cfg_size = svc.content.info(m.config).size
        oci = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
               "config": {"mediaType": media.OCI_CONFIG, "digest": m.config,
                          "size": cfg_size},
               "layers": [{"mediaType": media.OCI_LAYER_TAR, "digest": layer.diff_id,
                           "size": sizes[layer.diff_id]} for layer in m.layers]}
        body = json.dumps(oci, separators=(",", ":")).encode()
        from hutch.oci.digest import sha256_of

        digest = sha256_of(body)
        w.dir("blobs/sha256/")
        w.file(_blob_name(digest), body)
        desc = {"mediaType": media.OCI_MANIFEST, "digest": digest, "size": len(body)}
        if name is not None:
            desc["annotations"] = _annotations(name)
        if desc not in manifests:
            manifests.append(desc)
    w.file("manifest.json", json.dumps(list(entries.values()),
                                       separators=(",", ":")).encode())
    return {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": manifests}


def _write_plain_layer(svc, w: _TarOut, layer) -> int:
    """The layer as a plain tar named by its diff_id. A tar entry states its size up
    front, so a compressed layer is decompressed twice: once to count (and check the
    diff_id before writing anything), once to copy (checked again)."""
    from hutch.archive.compress import open_layer

    name = _blob_name(layer.diff_id)
    w.dir(name.rsplit("/", 1)[0] + "/")
    with svc.content.open(layer.digest) as f:
        s = open_layer(f, max_ratio=None)
        s.drain()
    if s.diff_id != layer.diff_id:
        raise FailedPrecondition(f"stored layer {layer.digest} is corrupt: its tar is "
                                 f"{s.diff_id}, expected {layer.diff_id}",
                                 hint="pull or load the image again")
    size = s.size
    with svc.content.open(layer.digest) as f:
        s = open_layer(f, max_ratio=None)
        w.stream(name, size, iter(lambda: s.read(_CHUNK), b""))
    if s.diff_id != layer.diff_id:
        raise FailedPrecondition(f"stored layer {layer.digest} changed while being saved")
    return size
