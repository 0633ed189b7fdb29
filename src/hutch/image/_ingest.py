"""Shared by load and import: streaming blobs into the content store with their digests
verified, compressing plain layers on the way, and naming images only once they are
complete and unpacked (see hutch.image.archive_io)."""

from __future__ import annotations

import re
import time
import uuid

from hutch.errors import InvalidArgument
from hutch.util.record import record

FORMATS = ("docker-archive", "oci-archive")
SMALL_ENTRY = 1 << 20        # entries up to this size are kept in memory
META_MAX = 16 << 20          # manifest.json, configs: bounded before json.loads
MEMORY_BUDGET = 64 << 20     # all in-memory entries together
MAX_LINK_HOPS = 16
_CHUNK = 1 << 20
_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)\Z")
_META_NAMES = frozenset({"manifest.json", "index.json", "oci-layout", "repositories"})
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


@record(frozen=True)

class LoadedImage:
    name: str      # the canonical name it is stored under (id_name(id) if it had none)
    id: str        # config digest, docker's image id
    tagged: bool   # False: the archive gave no name; `name` is id_name(id)


def id_name(config_digest: str) -> str:
    """The name an image without one is kept under: "sha256:<hex>" read as a reference
    (docker.io/library/sha256:<hex>), so `hutch images` shows the id and lookups by id,
    tag and rmi work without a special case."""
    from hutch.oci.reference import Reference

    algorithm, _, hexpart = config_digest.partition(":")
    return str(Reference.parse(f"{algorithm}:{hexpart[:128]}"))


# -- committing an image (shared with importer) ------------------------------------------

@record
class ImagePlan:
    """An image whose blobs are all in the content store, ready to unpack and name."""

    names: list[str]
    target: str
    target_media_type: str
    target_size: int
    manifests: list[tuple[str, bytes, str | None]]
    manifest: object            # hutch.oci.image.Manifest of the manifest to unpack
    manifest_digest: str
    config: object              # hutch.oci.image.ImageConfig
    index_bytes: bytes | None = None


def commit_images(svc, plans: list[ImagePlan], *, unpack: bool = True) -> list[LoadedImage]:
    """Unpack every plan (verifying its diff_ids) before naming any: a layer that does
    not match its config fails here, while no name points at it yet."""
    from hutch.image.metadata import LayerRecord, ManifestRecord, chain_ids
    from hutch.image.service import ImageRef

    if unpack:
        for plan in plans:
            m, cfg = plan.manifest, plan.config
            chains = chain_ids(list(cfg.diff_ids))
            record = ManifestRecord(
                plan.manifest_digest, m.config.digest, m.media_type, None,
                tuple(LayerRecord(layer.digest, layer.media_type, layer.size, diff, chain)
                      for layer, diff, chain in zip(m.layers, cfg.diff_ids, chains,
                                                    strict=True)))
            svc.unpack(ImageRef("", None, record, cfg))
    loaded = []
    for plan in plans:
        cfg_digest = plan.manifest.config.digest
        names = plan.names or [id_name(cfg_digest)]
        for name in names:
            svc.record(name, target_digest=plan.target,
                       target_media_type=plan.target_media_type,
                       target_size=plan.target_size, manifests=plan.manifests,
                       index_bytes=plan.index_bytes)
            loaded.append(LoadedImage(name, cfg_digest, bool(plan.names)))
    return loaded


class BlobTracker:
    """The blobs one load/import adds, under a lease while it runs. `finish()` drops the
    lease and deletes what it added that no image or other lease reaches (all of it after
    a failure), holding the metadata write lock as GC does, so no pull can start using a
    blob between the check and the delete."""

    def __init__(self, svc) -> None:
        self.svc = svc
        self.created: set[str] = set()
        self.lease = "load-" + uuid.uuid4().hex
        svc.meta.add_lease(self.lease, [], time.time() + 24 * 3600)

    def protect(self, digest: str) -> None:
        self.svc.meta.add_lease(self.lease, [digest], time.time() + 24 * 3600)

    def added(self, digest: str, existed: bool) -> None:
        if not existed:
            self.created.add(digest)

    def put_bytes(self, data: bytes) -> str:
        from hutch.oci.digest import sha256_of

        digest = sha256_of(data)
        self.protect(digest)
        existed = self.svc.content.exists(digest)
        self.svc.content.put_bytes(digest, data)
        self.added(digest, existed)
        return digest

    def finish(self) -> None:
        meta = self.svc.meta
        with meta.transaction():
            meta.remove_lease(self.lease)
            live = meta.gc_roots()
            for digest in sorted(self.created - live):
                self.svc.content.delete(digest)


def store_stream(tracker: BlobTracker, read, head: bytes = b"", *, expected: str | None = None,
                 size: int | None = None, what: str = "blob") -> tuple[str, int]:
    """Copy `head` + read() into the content store; (digest, size). `expected`: the
    digest the bytes must have (checked even when the blob is stored already)."""
    from hutch.oci.digest import Hasher

    content = tracker.svc.content
    if expected is not None:
        tracker.protect(expected)
    ref = f"load-{expected}" if expected else f"load-{uuid.uuid4().hex}"
    with content.writer(ref, expected, size) as w:
        try:
            existed = w.exists
            sink = None if existed else w
            if sink is not None and w.offset:
                w.truncate(0)
            hasher = Hasher(expected.partition(":")[0] if expected else "sha256")
            count = 0
            chunk = head
            while True:
                if chunk:
                    hasher.update(chunk)
                    count += len(chunk)
                    if size is not None and count > size:
                        raise InvalidArgument(f"{what} is longer than its {size} bytes")
                    if sink is not None:
                        sink.write(chunk)
                chunk = read(_CHUNK)
                if not chunk:
                    break
            actual = hasher.digest()
            if expected is not None and actual != expected:
                raise InvalidArgument(f"{what} does not match its digest: expected "
                                      f"{expected}, got {actual}",
                                      hint="the archive is corrupt or was tampered with")
            digest = w.commit()
        except InvalidArgument as e:
            w.abort()
            if e.message.startswith(what):
                raise
            raise InvalidArgument(f"{what}: {e.message}", hint=e.hint) from None
        except BaseException:
            w.abort()
            raise
    tracker.protect(digest)
    tracker.added(digest, existed)
    return digest, count


class _Source:
    """head + read(): a stream whose first bytes were peeked at, as a file object."""

    def __init__(self, head: bytes, read) -> None:
        self._head = head
        self._read = read

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(data):]
            return data
        return self._read(_CHUNK if n < 0 else n)


class _Tee:
    """Reads from `src` and writes what it read to `sink`: a compressed layer is stored
    as it is while a decompressor reading through us hashes the tar inside."""

    def __init__(self, src: _Source, sink) -> None:
        self._src = src
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if data:
            self._sink.write(data)
        return data


@record
class StoredLayer:
    digest: str        # the blob in the content store
    size: int
    compression: str   # of the stored blob: "gzip", "zstd" or "none"
    diff_id: str
    converted: bool = False  # the input was a plain tar, stored gzipped


def store_layer(tracker: BlobTracker, read, head: bytes = b"", *, what: str) -> StoredLayer:
    """A layer tar (plain, gzip or zstd) into the content store: a plain tar is gzipped
    as it streams (its digest is the diff_id); a compressed one is stored as it is while
    a decompressor beside it computes the diff_id (with hutch's bomb limits)."""
    from hutch.archive.compress import LayerWriter, detect, open_layer

    head = _fill(head, read, 6)
    compression = detect(head)
    head_plain = compression == "none"
    src = _Source(head, read)
    with tracker.svc.content.writer(f"load-{uuid.uuid4().hex}", None) as w:
        try:
            if compression == "none":
                lw = LayerWriter(w, "gzip")
                while chunk := src.read(_CHUNK):
                    lw.write(chunk)
                diff_id = lw.close().diff_id
                compression = "gzip"
            else:
                tee = _Tee(src, w)
                stream = open_layer(tee)
                stream.drain()
                while tee.read(_CHUNK):  # bytes after the compressed stream, if any
                    pass
                diff_id = stream.diff_id
            size = w.offset
            existed = tracker.svc.content.exists(w.digest())
            digest = w.commit()
        except InvalidArgument as e:
            w.abort()
            raise InvalidArgument(f"{what}: {e.message}", hint=e.hint) from None
        except BaseException:
            w.abort()
            raise
    tracker.protect(digest)
    tracker.added(digest, existed)
    return StoredLayer(digest, size, compression, diff_id, converted=head_plain)


def _fill(head: bytes, read, n: int) -> bytes:
    while len(head) < n:
        chunk = read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head
