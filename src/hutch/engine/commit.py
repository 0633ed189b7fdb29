"""`hutch commit`: a new image from a container's changes (moby daemon/commit.go).

The layer is the container's snapshot against its parent: an overlay upper directory
through hutch.archive.diff.write_diff, a native or btrfs tree through write_tree_diff;
the mount points the runtime created (engine.changes.mountpoints) are left out, as
docker keeps them in its init layer. An empty change set still makes a layer (an empty
tar), as docker does. The layer is gzipped into the content store (digest verified by
the writer), and the image is built like `hutch import` builds one (image._ingest:
BlobTracker, ImagePlan, commit_images: unpacked and diff_id-checked before it is named).

The config is the parent image's, with rootfs.diff_ids + [the new diff_id], a history
entry {created, created_by: the container's Cmd (docker's), author, comment}, "config"
taken from the container's effective config (Env, Cmd, Entrypoint, WorkingDir, User,
Labels, Volumes, ExposedPorts, StopSignal: what the container ran with, as docker keeps
it), then the --change lines applied; "container" names the container, "created" is now.
The manifest has the parent's layers plus the new one, in the parent's format (OCI or
Docker schema 2). Nothing here pauses or touches the container: the CLI pauses it.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO

from hutch.errors import InvalidArgument, NotFound

# docker commit keeps these fields of the container's Config in the image's "config".
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "Volumes",
                 "ExposedPorts", "StopSignal")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _as_set(value) -> dict:
    """Volumes/ExposedPorts as docker's JSON sets ({"80/tcp": {}}), from a dict or list."""
    if isinstance(value, dict):
        return {str(k): {} for k in value}
    return {str(k): {} for k in value or ()}


def run_config(parent: dict, effective: dict) -> dict:
    """The image's "config" for a commit: the parent image's (unknown keys such as
    Healthcheck or OnBuild kept) with the container's effective CONFIG_FIELDS."""
    config = copy.deepcopy(parent or {})
    for key in CONFIG_FIELDS:
        if key not in effective:
            continue
        value = effective[key]
        if key in ("Volumes", "ExposedPorts") and value is not None:
            value = _as_set(value)
        if value is None or value == "" or value == [] or value == {}:
            config.pop(key, None)
        else:
            config[key] = copy.deepcopy(value)
    return config


def _check_reference(images, reference: str | None) -> str | None:
    if not reference:
        return None
    if "@" in reference:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: "
                              f"{reference}")
    return images.normalize(reference)


def _parent(images, rec):
    try:
        return images.lookup(rec.image_id)
    except NotFound:
        raise NotFound(f"the image of container {rec.name or rec.id[:12]} "
                       f"({rec.image_id[:19]}) is gone", hint="it was removed; pull or "
                       "tag it again to commit this container") from None


def layer_writer(images, rec, mounts, hide: Iterable[str]) -> Callable[[BinaryIO], None]:
    """A function writing the container's changes as a layer tar: opens the snapshot's
    trees when called (and closes them)."""
    from hutch.archive.diff import write_diff, write_tree_diff
    from hutch.engine.changes import added_paths, snapshot_diff

    def write(out: BinaryIO) -> None:
        with snapshot_diff(images.snapshotter, rec.snapshot_key, mounts) as d:
            exclude = added_paths(d, hide)
            if d.overlay:
                write_diff(d.upper, out, exclude=exclude)
            elif d.parent is None:
                from hutch.archive.diff import write_tar

                write_tar(d.upper, out, exclude=exclude)
            else:
                write_tree_diff(d.parent, d.upper, out, exclude=exclude)

    return write


def commit(images, rec, mounts, *, reference: str | None = None,
           changes: Iterable[str] = (), message: str = "", author: str = "",
           hide: Iterable[str] | None = None, created: str | None = None) -> str:
    """Make an image of container `rec` (its snapshot's `mounts`, from
    Engine.snapshot_mounts) in ImageService `images`; name it `reference` (normalised;
    by its id when None, like import). Returns the image id "sha256:...".
    `hide`: container paths left out when the container added them (default:
    engine.changes.mountpoints(rec.config))."""
    from hutch.engine.changes import mountpoints
    from hutch.image._ingest import BlobTracker, ImagePlan, commit_images
    from hutch.image.importer import apply_changes, write_layer_blob
    from hutch.oci import media
    from hutch.oci.image import Descriptor, ImageConfig, Manifest

    if not rec.snapshot_key:
        raise InvalidArgument(f"container {rec.name or rec.id[:12]} has no filesystem")
    canonical = _check_reference(images, reference)
    parent = _parent(images, rec)
    parent_doc = parent.config.raw
    effective = (rec.config or {}).get("effective") or {}
    config = apply_changes(run_config(parent_doc.get("config") or {}, effective),
                           list(changes))  # bad --change lines fail before any work
    pm = Manifest.parse(images.content.read_bytes(parent.manifest.digest, 4 << 20),
                        parent.manifest.media_type)
    docker = pm.media_type == media.DOCKER_MANIFEST
    write = layer_writer(images, rec, mounts,
                         mountpoints(rec.config or {}) if hide is None else hide)
    tracker = BlobTracker(images)
    try:
        digest, size, diff_id = write_layer_blob(images, tracker, write,
                                                 ref_prefix="commit")
        when = created or _now()
        history = [dict(h) for h in parent_doc.get("history") or []]
        entry = {"created": when, "created_by": " ".join(effective.get("Cmd") or [])}
        if author:
            entry["author"] = author
        if message:
            entry["comment"] = message
        history.append(entry)
        doc = copy.deepcopy(parent_doc)
        doc.update({"created": when, "config": config, "container": rec.id,
                    "history": history,
                    "rootfs": {"type": "layers",
                               "diff_ids": [str(d) for d in parent.config.diff_ids]
                               + [diff_id]}})
        if author:
            doc["author"] = author
        else:
            doc.pop("author", None)
        cfg_bytes = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        cfg = ImageConfig.parse(cfg_bytes)
        cfg_digest = tracker.put_bytes(cfg_bytes)
        layer = Descriptor(media.DOCKER_LAYER_GZIP if docker else media.OCI_LAYER_GZIP,
                           digest, size)
        manifest = Manifest(pm.media_type,
                            Descriptor(media.DOCKER_CONFIG if docker else media.OCI_CONFIG,
                                       cfg_digest, len(cfg_bytes)),
                            (*pm.layers, layer))
        body = json.dumps(manifest.to_dict(), separators=(",", ":")).encode()
        mdigest = tracker.put_bytes(body)
        plan = ImagePlan([canonical] if canonical else [], mdigest, pm.media_type,
                         len(body), [(mdigest, body, None)], manifest, mdigest, cfg)
        (loaded,) = commit_images(images, [plan], unpack=True)
        return loaded.id
    finally:
        tracker.finish()
