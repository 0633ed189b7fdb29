"""`hutch load`: images from tar archives (and the formats `hutch save` writes).

Formats written (save):
  oci-archive     a tar of an OCI image layout (image-spec image-layout.md): oci-layout,
                  index.json (one entry per name, annotated io.containerd.image.name and
                  org.opencontainers.image.ref.name as containerd and docker 25 do), blobs/
                  exactly as stored: manifest digests survive the trip.
  docker-archive  docker 25's `docker save` layout, which is an OCI layout too: blobs/ with
                  the config and *uncompressed* layer tars (docker-archive layers are plain
                  tars: docker, skopeo and containerd's importers all expect that), an OCI
                  manifest per image, index.json, and manifest.json
                  ([{"Config", "RepoTags", "Layers"}]) that docker load and skopeo's
                  docker-archive transport read.
Formats read (load): the two above, the legacy docker/skopeo docker-archive (<hex>.json,
<hex>.tar, <id>/layer.tar symlinks, manifest.json), and an OCI layout directory; the outer
tar may be gzip or zstd compressed.

Loading is a single pass over the (untrusted) archive, which may be a pipe: nothing is
ever extracted by the names it carries. Each entry is parsed by hutch.archive.tar and
either kept in memory (small metadata) or streamed into the content store, verified on the
way: blobs/<alg>/<hex> must hash to their name; layer tars are gzip-compressed as they
stream (the plain tar's digest is the diff_id). Then the images are checked against their
configs, unpacked (which verifies every diff_id) and only then named. Any error leaves
the names untouched and removes the blobs this load added that nothing else references.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
from typing import BinaryIO

from hutch.errors import InvalidArgument, NotFound
from hutch.image._ingest import (
    _BLOB_PATH,
    _META_NAMES,
    CONTAINERD_NAME,
    MAX_LINK_HOPS,
    MEMORY_BUDGET,
    META_MAX,
    REF_NAME,
    SMALL_ENTRY,
    BlobTracker,
    ImagePlan,
    LoadedImage,
    StoredLayer,
    _fill,
    commit_images,
    store_layer,
    store_stream,
)
from hutch.util.record import field, record

# -- load --------------------------------------------------------------------------------

@record
class _Item:
    size: int
    data: bytes | None = None      # kept in memory
    blob: str | None = None        # in the content store: the raw bytes, or their gzip
    layer: StoredLayer | None = None  # set when stored (or converted) as a layer


@record
class _Archive:
    items: dict[str, _Item] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    memory: int = 0


def _clean_name(name: str, what: str = "archive entry") -> str:
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise InvalidArgument(f"{what} {name[:200]!r} points outside the archive",
                                  hint="the archive is hostile or corrupt; nothing was loaded")
        parts.append(p)
    return "/".join(parts)


class _Loader:
    def __init__(self, svc, tracker: BlobTracker) -> None:
        self.svc = svc
        self.tracker = tracker
        self.a = _Archive()

    # ingest ---------------------------------------------------------------------------
    def add_file(self, raw_name: str, size: int, read) -> None:
        name = _clean_name(raw_name)
        if not name:
            return
        what = f"archive entry {name[:200]!r}"
        self._check_space(size, what)
        m = _BLOB_PATH.match(name)
        if m:
            from hutch.oci.digest import Digest

            try:
                expected = Digest(f"{m.group(1)}:{m.group(2)}")
            except InvalidArgument:
                expected = None
            if expected is not None:
                digest, _ = store_stream(self.tracker, read, expected=expected, size=size,
                                         what=what)
                self.a.items[name] = _Item(size, blob=digest)
                return
        base = name.rsplit("/", 1)[-1]
        small = size <= SMALL_ENTRY or (size <= META_MAX and (
            base in _META_NAMES or base.endswith(".json") or base == "json"))
        if small:
            self.a.memory += size
            if self.a.memory > MEMORY_BUDGET:
                raise InvalidArgument(f"archive has more than {MEMORY_BUDGET >> 20} MiB of "
                                      "small files: not an image archive")
            data = _fill(b"", read, size)
            if len(data) != size:
                raise InvalidArgument(f"{what} is truncated")
            self.a.items[name] = _Item(size, data=data)
            return
        head = _fill(b"", read, 512)
        from hutch.archive.compress import detect

        if detect(head[:6]) != "none" or head[257:262] == b"ustar":
            layer = store_layer(self.tracker, read, head, what=what)
            self.a.items[name] = _Item(size, blob=None if layer.converted else layer.digest,
                                       layer=layer)
        else:
            digest, _ = store_stream(self.tracker, read, head, size=size, what=what)
            self.a.items[name] = _Item(size, blob=digest)

    def add_link(self, raw_name: str, target: str, *, hard: bool) -> None:
        name = _clean_name(raw_name)
        if not hard:  # relative to the link's directory; ".." may not climb out
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith(("/", "../")) or target == "..":
                raise InvalidArgument(f"archive entry {name[:200]!r} links outside the "
                                      f"archive ({target[:200]!r})",
                                      hint="the archive is hostile or corrupt; nothing "
                                           "was loaded")
        self.a.links[name] = _clean_name(target, f"link {name!r} to")

    def _check_space(self, size: int, what: str) -> None:
        if size <= SMALL_ENTRY:
            return
        st = os.statvfs(self.svc.content.root)
        free = st.f_bavail * st.f_frsize
        if size > free:
            raise InvalidArgument(f"{what} declares {size} bytes, more than the {free} "
                                  "free in the image store")

    # lookup ---------------------------------------------------------------------------
    def get(self, path: object, what: str) -> tuple[str, _Item]:
        if not isinstance(path, str) or not path:
            raise InvalidArgument(f"{what}: not a path")
        name = _clean_name(path, what)
        for _ in range(MAX_LINK_HOPS):
            if name in self.a.items:
                return name, self.a.items[name]
            if name not in self.a.links:
                raise InvalidArgument(f"{what} {path[:200]!r} is missing from the archive")
            name = self.a.links[name]
        raise InvalidArgument(f"{what} {path[:200]!r}: too many levels of links")

    def has(self, path: str) -> bool:
        try:
            self.get(path, "file")
            return True
        except InvalidArgument:
            return False

    def bytes_of(self, path: str, what: str, limit: int = META_MAX) -> bytes:
        _, item = self.get(path, what)
        if item.size > limit:
            raise InvalidArgument(f"{what} {path!r} is {item.size} bytes, over {limit}")
        if item.data is not None:
            return item.data
        if item.blob is None:
            raise InvalidArgument(f"{what} {path!r} is a layer tar, not a JSON document")
        return self.svc.content.read_bytes(item.blob, limit)

    def blob_bytes(self, desc, what: str, limit: int) -> bytes:
        self.check_blob(desc, what)
        return self.svc.content.read_bytes(desc.digest, limit)

    def check_blob(self, desc, what: str) -> None:
        try:
            info = self.svc.content.info(desc.digest)
        except NotFound:
            raise InvalidArgument(f"{what} {desc.digest} is missing from the archive",
                                  hint="the archive is incomplete") from None
        if info.size != desc.size:
            raise InvalidArgument(f"{what} {desc.digest} is {info.size} bytes, its "
                                  f"descriptor says {desc.size}")

    def as_layer(self, path: str, what: str) -> StoredLayer:
        name, item = self.get(path, what)
        if item.layer is None:
            if item.data is not None:
                data = item.data
                item.layer = store_layer(self.tracker, io.BytesIO(data).read, what=what)
            else:
                with self.svc.content.open(item.blob) as f:
                    item.layer = store_layer(self.tracker, f.read, what=what)
        return item.layer

    # plans ----------------------------------------------------------------------------
    def plans(self) -> list[ImagePlan]:
        # manifest.json first, as docker load does: a docker 25 archive is an OCI layout
        # too, but its layers are plain tars that we want gzipped like any docker-archive.
        if self.has("manifest.json"):
            return self._docker_plans()
        if self.has("oci-layout") and self.has("index.json"):
            return self._oci_plans()
        raise InvalidArgument("not an image archive: it has neither manifest.json "
                              "(docker-archive) nor oci-layout and index.json (OCI)")

    def _oci_plans(self) -> list[ImagePlan]:
        from hutch.oci import media
        from hutch.oci.image import Index

        layout = _json(self.bytes_of("oci-layout", "oci-layout"), "oci-layout")
        version = layout.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidArgument(f"oci-layout: unsupported imageLayoutVersion {version!r}")
        index = Index.parse(self.bytes_of("index.json", "index.json", 4 << 20),
                            media.OCI_INDEX)
        plans: dict[str, ImagePlan] = {}
        for desc in index.manifests:
            if desc.media_type not in media.MANIFEST_TYPES | media.INDEX_TYPES:
                continue  # artifacts, attestations: not images
            plan = plans.get(desc.digest)
            if plan is None:
                plan = plans[desc.digest] = self._oci_plan(desc)
            name = _oci_name(desc.annotations)
            if name and name not in plan.names:
                plan.names.append(name)
        if not plans:
            raise InvalidArgument("index.json lists no images")
        return list(plans.values())

    def _oci_plan(self, desc) -> ImagePlan:
        from hutch.oci import media
        from hutch.oci.image import MAX_MANIFEST_SIZE, Index, Manifest, select_manifest
        from hutch.oci.platform import Platform

        body = self.blob_bytes(desc, "manifest", MAX_MANIFEST_SIZE)
        if desc.media_type in media.MANIFEST_TYPES:
            m = Manifest.parse(body, desc.media_type)
            cfg = self._check_image(m)
            return ImagePlan([], desc.digest, desc.media_type, desc.size,
                             [(desc.digest, body, None)], m, desc.digest, cfg)
        sub = Index.parse(body, desc.media_type)
        present = [d for d in sub.manifests if d.media_type in media.MANIFEST_TYPES
                   and self.svc.content.exists(d.digest)]
        if not present:
            raise InvalidArgument(f"image index {desc.digest}: none of its manifests is "
                                  "in the archive")
        try:
            chosen = select_manifest(Index(sub.media_type, tuple(present)), Platform.host())
        except NotFound:
            if len(present) != 1:
                raise
            chosen = present[0]
        mbody = self.blob_bytes(chosen, "manifest", MAX_MANIFEST_SIZE)
        m = Manifest.parse(mbody, chosen.media_type)
        cfg = self._check_image(m)
        p = chosen.platform
        plat = "/".join(x for x in (p.os, p.architecture, p.variant) if x) if p else None
        return ImagePlan([], desc.digest, desc.media_type, desc.size,
                         [(chosen.digest, mbody, plat)], m, chosen.digest, cfg,
                         index_bytes=body)

    def _check_image(self, m):
        from hutch.oci import media
        from hutch.oci.image import MAX_CONFIG_SIZE, ImageConfig

        cfg = ImageConfig.parse(self.blob_bytes(m.config, "config", MAX_CONFIG_SIZE))
        cfg.check_layers(m)
        for i, layer in enumerate(m.layers):
            if media.compression(layer.media_type) is None:
                raise InvalidArgument(f"layer {i}: unsupported media type "
                                      f"{layer.media_type[:100]!r}")
            self.check_blob(layer, f"layer {i}")
        return cfg

    def _docker_entries(self) -> list[dict]:
        doc = _json(self.bytes_of("manifest.json", "manifest.json"), "manifest.json",
                    list)
        for i, entry in enumerate(doc):
            if not isinstance(entry, dict) or not isinstance(entry.get("Layers"), list):
                raise InvalidArgument(f"manifest.json: entry {i} is not "
                                      "{Config, RepoTags, Layers}")
            tags = entry.get("RepoTags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidArgument(f"manifest.json: entry {i}: RepoTags must be strings")
        return doc

    def _docker_plans(self) -> list[ImagePlan]:
        from hutch.oci import media
        from hutch.oci.digest import sha256_of
        from hutch.oci.image import MAX_CONFIG_SIZE, Descriptor, ImageConfig, Manifest

        plans = []
        for i, entry in enumerate(self._docker_entries()):
            names = [self.svc.normalize(t) for t in entry.get("RepoTags") or []]
            cfg_bytes = self.bytes_of(entry.get("Config"), f"manifest.json entry {i}: config",
                                      MAX_CONFIG_SIZE)
            cfg = ImageConfig.parse(cfg_bytes)
            layers = entry["Layers"]
            if len(layers) != len(cfg.diff_ids):
                raise InvalidArgument(f"manifest.json entry {i} lists {len(layers)} layers "
                                      f"but its config has {len(cfg.diff_ids)} diff_ids")
            descs = []
            for path, diff_id in zip(layers, cfg.diff_ids, strict=True):
                layer = self.as_layer(path, "layer")
                if layer.diff_id != diff_id:
                    raise InvalidArgument(
                        f"layer {str(path)[:200]!r} does not match the image config: its "
                        f"content is {layer.diff_id}, the config says {diff_id}",
                        hint="the archive is corrupt or was tampered with")
                mt = {"gzip": media.DOCKER_LAYER_GZIP, "zstd": media.DOCKER_LAYER_ZSTD}.get(
                    layer.compression, media.DOCKER_LAYER_TAR)
                descs.append(Descriptor(mt, layer.digest, layer.size))
            cfg_digest = self.tracker.put_bytes(cfg_bytes)
            m = Manifest(media.DOCKER_MANIFEST,
                         Descriptor(media.DOCKER_CONFIG, cfg_digest, len(cfg_bytes)),
                         tuple(descs))
            body = json.dumps(m.to_dict(), separators=(",", ":")).encode()
            digest = self.tracker.put_bytes(body)
            assert digest == sha256_of(body)
            plans.append(ImagePlan(names, digest, media.DOCKER_MANIFEST, len(body),
                                   [(digest, body, None)], m, digest, cfg))
        if not plans:
            raise InvalidArgument("manifest.json lists no images")
        return plans


def _json(data: bytes, what: str, kind: type = dict):
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(doc, kind):
        raise InvalidArgument(f"{what} is not a JSON {kind.__name__}")
    return doc


def _oci_name(annotations: dict[str, str]) -> str | None:
    """containerd/docker write the full name in io.containerd.image.name; skopeo and
    others a tag (or a full reference) in org.opencontainers.image.ref.name. A bare tag
    names no repository: such an image is kept under its id."""
    from hutch.oci.reference import Reference

    full = annotations.get(CONTAINERD_NAME)
    if full:
        return str(Reference.parse(full))
    ref = annotations.get(REF_NAME, "")
    if "/" in ref or ":" in ref or "@" in ref:
        try:
            return str(Reference.parse(ref))
        except InvalidArgument:
            return None
    return None


def _ingest_tar(loader: _Loader, stream: BinaryIO) -> None:
    from hutch.archive import tar
    from hutch.archive.compress import open_layer

    outer = open_layer(stream, max_ratio=None)  # a gzip/zstd-compressed archive is fine
    reader = tar.TarReader(outer)
    seen = False
    for entry in reader:
        seen = True
        if entry.type == tar.REGTYPE:
            loader.add_file(entry.name, entry.size, reader.read)
        elif entry.type in (tar.SYMTYPE, tar.LNKTYPE):
            loader.add_link(entry.name, entry.linkname, hard=entry.type == tar.LNKTYPE)
        else:
            _clean_name(entry.name)  # directories and the rest: only checked
    if not seen:
        raise InvalidArgument("the archive is empty", hint="hutch load reads a tar from "
                              "-i FILE or stdin")


def _ingest_dir(loader: _Loader, root: str) -> None:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs
                                     if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                loader.add_link(rel, os.readlink(path), hard=False)
                continue
            if not os.path.isfile(path):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                loader.add_file(rel, st.st_size, f.read)


def load(svc, source, *, unpack: bool = True) -> list[LoadedImage]:
    """Load the images of a docker-archive or oci-archive tar (a path or a binary
    stream, possibly gzip/zstd compressed) or of an OCI layout directory into `svc`;
    unpack and name them. Returns what was loaded, in archive order."""
    tracker = BlobTracker(svc)
    try:
        loader = _Loader(svc, tracker)
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if os.path.isdir(path):
                _ingest_dir(loader, path)
            else:
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    raise NotFound(f"open {path}: no such file") from None
                with f:
                    _ingest_tar(loader, f)
        else:
            _ingest_tar(loader, source)
        plans = loader.plans()
        return commit_images(svc, plans, unpack=unpack)
    finally:
        tracker.finish()
