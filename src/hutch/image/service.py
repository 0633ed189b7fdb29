"""The image store as one object: content blobs, metadata, the snapshotter.

Layout under Settings.root:
  content/                 LocalContentStore (blobs/, ingest/)
  metadata.db              MetadataStore (names, manifests, refs, leases, snapshots)
  snapshots/<name>/        the snapshotter's own root; <name> recorded in `snapshotter`
  tmp/                     mount points for unpacking
  auth.json                registry credentials (0600)
Image names are canonical references ("docker.io/library/busybox:latest").
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from hutch.errors import InvalidArgument, NotFound


class ImageRef:
    """What a name resolves to: the manifest and config to run or unpack it."""

    def __init__(self, name: str, record, manifest_record, config) -> None:
        self.name = name
        self.record = record  # ImageRecord (target: manifest or index digest)
        self.manifest = manifest_record  # ManifestRecord (layers with diff/chain ids)
        self.config = config  # hutch.oci.image.ImageConfig

    @property
    def id(self) -> str:
        """docker's image id: the config digest."""
        return self.manifest.config

    @property
    def top_chain_id(self) -> str:
        return self.manifest.layers[-1].chain_id if self.manifest.layers else ""


class ImageService:
    def __init__(self, settings, *, snapshotter=None, registry_factory=None) -> None:
        from hutch.content import LocalContentStore
        from hutch.image.metadata import MetadataStore

        self.settings = settings
        self.root = settings.root
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        self.content = LocalContentStore(os.path.join(self.root, "content"))
        self.meta = MetadataStore(os.path.join(self.root, "metadata.db"))
        self._snapshotter = snapshotter
        self.registry_factory = registry_factory or self._default_registry

    # -- plumbing ------------------------------------------------------------------------
    @property
    def snapshotter(self):
        if self._snapshotter is None:
            self._snapshotter = self._open_snapshotter()
        return self._snapshotter

    @property
    def snapshotter_name(self) -> str:
        return self.snapshotter.name

    def _open_snapshotter(self):
        from hutch.snapshot import default_snapshotter, snapshotter_for

        marker = os.path.join(self.root, "snapshotter")
        name = os.environ.get("HUTCH_SNAPSHOTTER")
        if name is None and os.path.exists(marker):
            with open(marker) as f:
                name = f.read().strip() or None
        if name is None:
            from hutch.mount.mountinfo import lookup

            # bocker's way when the store is on btrfs: subvolume snapshots; otherwise
            # overlay where the kernel can, the native copy as the fallback.
            if lookup(self.root).fstype == "btrfs":
                name = "btrfs"
                snap = snapshotter_for(name, os.path.join(self.root, "snapshots", name))
            else:
                snap = default_snapshotter(os.path.join(self.root, "snapshots", "overlay"))
                name = snap.name
                if name != "overlay":
                    snap.close()
                    snap = snapshotter_for(name, os.path.join(self.root, "snapshots", name))
        else:
            # A store that has its marker was checked when it was made: skip the test
            # mount (~10 ms on every command).
            snap = snapshotter_for(name, os.path.join(self.root, "snapshots", name),
                                   check=not os.path.exists(marker))
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(name + "\n")
        return snap

    def close(self) -> None:
        if self._snapshotter is not None:
            self._snapshotter.close()
        self.meta.close()

    def __enter__(self) -> ImageService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def credentials(self):
        from hutch.registry.credentials import CredentialStore, default_path

        return CredentialStore(default_path(self.root))

    def _default_registry(self, host: str):
        from hutch.registry.client import RegistryClient

        creds = self.credentials().get(host)
        insecure = host in _insecure_registries()
        return RegistryClient(host, insecure=insecure, credentials=creds)

    @contextmanager
    def lease(self, digests=(), ttl: float = 3600.0):
        """Protect content being written from GC until it is named (or given up)."""
        lease_id = os.urandom(16).hex()
        self.meta.add_lease(lease_id, list(digests), time.time() + ttl)
        try:
            yield lease_id
        finally:
            self.meta.remove_lease(lease_id)

    # -- names ---------------------------------------------------------------------------
    @staticmethod
    def normalize(name: str) -> str:
        from hutch.oci.reference import Reference

        return str(Reference.parse(name))

    def lookup(self, name_or_id: str, platform=None) -> ImageRef:
        """By name (docker's rules) or by (a prefix of) the image id."""
        from hutch.oci.image import ImageConfig

        record = self._find(name_or_id)
        manifest = self.meta.resolve_manifest(record.name, platform)
        config = ImageConfig.parse(self.content.read_bytes(manifest.config, 16 << 20))
        return ImageRef(record.name, record, manifest, config)

    def _find(self, name_or_id: str):
        text = name_or_id.strip()
        try:
            return self.meta.get_image(self.normalize(text))
        except (NotFound, InvalidArgument):
            pass
        hexpart = text.removeprefix("sha256:").lower()
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            hits = []
            for rec in self.meta.list_images():
                try:
                    cfg = self.meta.resolve_manifest(rec.name).config
                except (NotFound, InvalidArgument):
                    continue
                if cfg.removeprefix("sha256:").startswith(hexpart):
                    hits.append(rec)
            if len({self.meta.resolve_manifest(h.name).config for h in hits}) == 1:
                return hits[0]
            if hits:
                raise InvalidArgument(f"image id prefix {text} is ambiguous")
        raise NotFound(f"No such image: {name_or_id}", hint="hutch images lists them")

    def list(self) -> list[ImageRef]:
        out = []
        for rec in self.meta.list_images():
            try:
                out.append(self.lookup(rec.name))
            except (NotFound, InvalidArgument):
                continue
        return out

    def tag(self, source: str, target: str) -> None:
        rec = self._find(source)
        self.meta.tag(rec.name, self.normalize(target))

    # -- recording -----------------------------------------------------------------------
    def record(self, name: str, *, target_digest: str, target_media_type: str,
               target_size: int, manifests: list[tuple[str, bytes, str | None]],
               index_bytes: bytes | None = None) -> None:
        """Name an image whose blobs are all in the content store: record its index (if
        any) and each (manifest digest, manifest bytes, platform) with its layers."""
        from hutch.oci.image import ImageConfig, Manifest

        with self.meta.transaction():
            if index_bytes is not None:
                self.meta.record_index(target_digest,
                                       [(d, p) for d, _, p in manifests])
                self.meta.add_refs(target_digest, [d for d, _, _ in manifests])
            for digest, body, platform in manifests:
                m = Manifest.parse(body)
                cfg = ImageConfig.parse(self.content.read_bytes(m.config.digest, 16 << 20))
                cfg.check_layers(m)
                self.meta.record_manifest(
                    digest, m.config.digest,
                    [(layer.digest, layer.media_type, layer.size) for layer in m.layers],
                    list(cfg.diff_ids), platform or _platform_of(cfg),
                    media_type=m.media_type)
                self.meta.add_refs(digest, [m.config.digest] + [layer.digest
                                                                for layer in m.layers])
            self.meta.put_image(name, target_digest, target_media_type, target_size)

    # -- unpack --------------------------------------------------------------------------
    def unpack(self, image: ImageRef) -> tuple[str, list[str]]:
        """Make sure the image's layers are unpacked; return (top chain id, warnings)."""
        from hutch.errors import NotFound
        from hutch.image.unpack import LayerToUnpack, unpack

        top_chain = image.top_chain_id
        if top_chain:
            try:  # the common case (every `run`): unpacked already, nothing to write
                self.snapshotter.stat(top_chain)
                return top_chain, []
            except NotFound:
                pass
        layers = [LayerToUnpack(self._opener(layer.digest), layer.diff_id, layer.digest)
                  for layer in image.manifest.layers]
        top, warnings = unpack(self.snapshotter, layers,
                               work_dir=os.path.join(self.root, "tmp"))
        name = self.snapshotter_name
        for layer in image.manifest.layers:
            self.meta.record_snapshot(layer.chain_id, layer.chain_id, name)
        return top, warnings

    def clean_stale_unpacks(self) -> list[str]:
        from hutch.image.unpack import clean_stale

        return clean_stale(self.snapshotter, os.path.join(self.root, "tmp"))

    def _opener(self, digest: str):
        return lambda: self.content.open(digest)


def _platform_of(cfg) -> str:
    p = cfg.platform
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)


def _insecure_registries() -> set[str]:
    """HUTCH_INSECURE_REGISTRIES="host:port,host2": plain http allowed beyond loopback."""
    raw = os.environ.get("HUTCH_INSECURE_REGISTRIES", "")
    return {h.strip() for h in raw.split(",") if h.strip()}
