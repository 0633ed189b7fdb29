"""Push: the image's manifest (the platform one this store has), its config and layers,
each blob only if the registry lacks it."""

from __future__ import annotations


def push(svc, name: str, *, progress=None) -> tuple[str, int]:
    """Push image `name` to the registry its name points at; return (digest, size)."""
    from hutch.oci.image import Descriptor, Manifest
    from hutch.oci.reference import Reference

    image = svc.lookup(name)
    ref = Reference.parse(image.name)
    manifest_bytes = svc.content.read_bytes(image.manifest.digest)
    manifest = Manifest.parse(manifest_bytes, image.manifest.media_type)
    media_type = manifest.media_type
    blobs: list[Descriptor] = [*manifest.layers, manifest.config]
    client = svc.registry_factory(ref.domain)
    try:
        for desc in blobs:
            if client.blob_exists(ref.path, desc.digest):
                if progress:
                    progress(f"{desc.digest[7:19]}: Layer already exists")
                continue
            with svc.content.open(desc.digest) as f:
                client.push_blob(ref.path, desc, f)
            if progress:
                progress(f"{desc.digest[7:19]}: Pushed")
        digest = client.push_manifest(ref.path, ref.tag or image.manifest.digest, media_type,
                                      manifest_bytes)
    finally:
        client.close()
    return str(digest), len(manifest_bytes)
