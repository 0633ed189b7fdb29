"""Pull: resolve a reference, fetch what is missing (layers in parallel, each verified
while it streams), record the image, unpack it.

Order (see hutch.image.metadata): a lease protects the blobs from GC while they arrive;
the image is named only once every blob it needs is verified in the store; then it is
unpacked. Killing a pull at any point leaves partial ingests (resumable or discarded)
and verified blobs, never a half-written blob or a name without its content.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from hutch.errors import NotFound


class Progress:
    """Callbacks a CLI renders; the default does nothing. Called from worker threads."""

    def resolved(self, name: str, digest: str) -> None: ...
    def layer(self, digest: str, size: int, present: bool) -> None: ...
    def advance(self, digest: str, nbytes: int) -> None: ...
    def layer_done(self, digest: str) -> None: ...
    def unpacking(self) -> None: ...


def pull(svc, name: str, *, platform: str | None = None, progress: Progress | None = None,
         jobs: int = 4):
    """Pull `name` into `svc` (an ImageService); return its ImageRef."""
    from hutch.oci.image import Index, Manifest, parse_manifest, select_manifest
    from hutch.oci.platform import Platform
    from hutch.oci.reference import Reference

    progress = progress or Progress()
    svc.clean_stale_unpacks()
    ref = Reference.parse(name)
    canonical = str(ref)
    want = Platform.parse(platform) if platform else None
    client = svc.registry_factory(ref.domain)
    try:
        with svc.lease() as lease:
            desc, body = client.resolve(ref)
            progress.resolved(canonical, desc.digest)
            svc.meta.add_lease(lease, [desc.digest], None)
            svc.content.put_bytes(desc.digest, body)
            doc = parse_manifest(body, desc.media_type)
            index_bytes = None
            plat: str | None = None
            if isinstance(doc, Index):
                index_bytes = body
                mdesc = select_manifest(doc, want or Platform.host())
                mbody = client.fetch_manifest(ref.path, mdesc.digest)
                svc.meta.add_lease(lease, [mdesc.digest], None)
                svc.content.put_bytes(mdesc.digest, mbody)
                manifest = Manifest.parse(mbody, mdesc.media_type)
                plat = _platform_str(mdesc.platform)
                manifests = [(mdesc.digest, mbody, plat)]
            else:
                manifest = doc
                manifests = [(desc.digest, body, None)]
            svc.meta.add_lease(lease, [manifest.config.digest]
                               + [layer.digest for layer in manifest.layers], None)
            _fetch_config(svc, client, ref.path, manifest)
            if want is not None and index_bytes is None:
                _check_platform(svc, manifest, want, canonical, platform)
            _fetch_and_unpack(svc, client, ref.path, manifest, progress, jobs)
            svc.record(canonical, target_digest=desc.digest,
                       target_media_type=desc.media_type, target_size=desc.size,
                       manifests=manifests, index_bytes=index_bytes)
    finally:
        client.close()
    image = svc.lookup(canonical, platform=plat)
    svc.unpack(image)  # records the snapshots; the layers are already unpacked
    return image


def _check_platform(svc, manifest, want, name: str, asked: str) -> None:
    """A single-manifest image must be the platform asked for; checked before anything
    is named or downloaded beyond its config."""
    from hutch.errors import InvalidArgument
    from hutch.oci.image import ImageConfig

    got = ImageConfig.parse(svc.content.read_bytes(manifest.config.digest, 16 << 20)).platform
    if not want.matches(got):
        raise InvalidArgument(f"image {name} is {_platform_str(got)}, not {asked}")


def _platform_str(p) -> str | None:
    if p is None:
        return None
    return "/".join(x for x in (p.os, p.architecture, getattr(p, "variant", "")) if x)


def _fetch_config(svc, client, repo: str, manifest) -> None:
    cfg = manifest.config
    if svc.content.exists(cfg.digest):
        return
    data = b"".join(client.fetch_blob(repo, cfg))
    svc.content.put_bytes(cfg.digest, data)


def _fetch_and_unpack(svc, client, repo: str, manifest, progress: Progress,
                      jobs: int) -> None:
    """Download layers in parallel and unpack each as soon as it and the ones below it
    are in the store, so unpacking overlaps the downloads still running."""
    from hutch.image.unpack import LayerToUnpack, unpack
    from hutch.oci.image import ImageConfig

    config = ImageConfig.parse(svc.content.read_bytes(manifest.config.digest, 16 << 20))
    config.check_layers(manifest)
    layers = [LayerToUnpack(svc._opener(layer.digest), diff_id, layer.digest)
              for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True)]
    futures = {}
    pool = None
    todo = []
    for layer in manifest.layers:
        present = svc.content.exists(layer.digest)
        progress.layer(layer.digest, layer.size, present)
        if not present:
            todo.append(layer)
    if todo:
        pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo))))
        futures = {layer.digest: pool.submit(_fetch_layer, svc, client, repo, layer,
                                             progress) for layer in todo}
    try:
        for i, layer in enumerate(manifest.layers):
            f = futures.get(layer.digest)
            if f is not None:
                f.result()
            if i == 0:
                progress.unpacking()
            unpack(svc.snapshotter, layers[: i + 1],
                   work_dir=os.path.join(svc.root, "tmp"))
    finally:
        if pool is not None:
            for f in futures.values():
                f.cancel()
            pool.shutdown(wait=True)


def _fetch_layer(svc, client, repo: str, desc, progress: Progress) -> None:
    # One writer per digest: a concurrent pull of the same layer waits here, then finds
    # the blob committed (writer.exists) instead of downloading it again.
    with svc.content.writer(f"pull-{desc.digest}", desc.digest, desc.size) as w:
        if w.exists:
            w.commit()
            progress.layer_done(desc.digest)
            return
        if w.offset:
            # A partial ingest from a killed pull. The client verifies the whole blob,
            # which needs a hasher fed with the bytes we have: re-read them.
            from hutch.oci.digest import Hasher

            hasher = Hasher(desc.digest.split(":", 1)[0])
            for chunk in w.read_back():
                hasher.update(chunk)
            stream = client.fetch_blob(repo, desc, offset=w.offset, hasher=hasher)
            progress.advance(desc.digest, w.offset)
        else:
            stream = client.fetch_blob(repo, desc)
        for chunk in stream:
            w.write(chunk)
            progress.advance(desc.digest, len(chunk))
        w.commit()
    progress.layer_done(desc.digest)


def missing(svc, image) -> list[str]:
    """Digests an image needs that the content store lacks (for `images` sanity)."""
    need = [image.manifest.config] + [layer.digest for layer in image.manifest.layers]
    return [d for d in need if not svc.content.exists(d)]


__all__ = ["Progress", "pull", "missing", "NotFound"]
