"""`hutch import`: a root filesystem (a directory, or a tar that may be gzip or zstd
compressed, from a file or a stream) becomes a one-layer image, as `docker import` does.

The layer is written by us, never passed through: a directory goes through
hutch.archive.diff.write_tar (sorted, deterministic); a tarball is parsed with our tar
reader and re-emitted entry by entry with cleaned names ("./a" -> "a"; a ".." component
refuses the whole tarball; hard-link targets too). Symlinks stay as they are: an absolute
target is the image's own path, and unpacking (openat2 RESOLVE_IN_ROOT) keeps anything
written through one inside the rootfs. The gzip blob, its diff_id, an OCI config (host
platform, created, history, the --change lines) and an OCI manifest go into the store;
the image is unpacked, then named (by its id when no name is given: see archive_io).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from typing import BinaryIO

from hutch.errors import InvalidArgument, NotFound

_CHUNK = 1 << 20
CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER",
                       "VOLUME", "WORKDIR")


# -- --change ----------------------------------------------------------------------------

def apply_changes(config: dict, changes) -> dict:
    """Apply Dockerfile instructions (docker import --change's subset) to an image
    config's "config" object (Cmd, Entrypoint, Env, ...); returns it. No variable
    expansion is done (docker expands $VAR from the config's Env; use literal values)."""
    for line in changes:
        text = line.strip()
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in CHANGE_INSTRUCTIONS:
            raise InvalidArgument(f"{keyword or text!r} is not a valid change command",
                                  hint="supported: " + ", ".join(CHANGE_INSTRUCTIONS))
        if not rest:
            raise InvalidArgument(f"{keyword} needs an argument")
        if keyword in ("CMD", "ENTRYPOINT"):
            key = "Cmd" if keyword == "CMD" else "Entrypoint"
            config[key] = _exec_or_shell(rest, keyword)
        elif keyword == "ENV":
            env = list(config.get("Env") or [])
            for k, v in _pairs(rest, keyword):
                env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif keyword == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(rest, keyword))
            config["Labels"] = labels
        elif keyword == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for word in _words(rest, keyword):
                for port in _ports(word):
                    ports[port] = {}
            config["ExposedPorts"] = ports
        elif keyword == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            items = _json_list(rest, keyword) if rest.startswith("[") else _words(rest,
                                                                                   keyword)
            for v in items:
                if not v:
                    raise InvalidArgument("VOLUME specified can not be an empty string")
                volumes[v] = {}
            config["Volumes"] = volumes
        elif keyword == "WORKDIR":
            base = config.get("WorkingDir") or "/"
            config["WorkingDir"] = os.path.normpath(os.path.join(base, rest))
        elif keyword == "USER":
            config["User"] = rest
        elif keyword == "STOPSIGNAL":
            config["StopSignal"] = rest
    return config


def _exec_or_shell(rest: str, keyword: str) -> list[str]:
    if rest.startswith("["):
        try:
            return _json_list(rest, keyword)
        except InvalidArgument:
            pass  # docker falls back to the shell form for a malformed JSON array
    return ["/bin/sh", "-c", rest]


def _json_list(rest: str, keyword: str) -> list[str]:
    try:
        value = json.loads(rest)
    except ValueError:
        raise InvalidArgument(f"{keyword}: not a JSON array of strings: {rest[:100]}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{keyword}: not a JSON array of strings: {rest[:100]}")
    return value


def _words(rest: str, keyword: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as e:
        raise InvalidArgument(f"{keyword}: {e}") from None


def _pairs(rest: str, keyword: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"`, or the legacy `K the rest of the line`."""
    first = rest.split(None, 1)[0]
    if "=" not in first:
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    out = []
    for word in _words(rest, keyword):
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{keyword} names must be followed by '=': {word[:100]!r}")
        out.append((key, value))
    return out


def _ports(word: str) -> list[str]:
    port, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"EXPOSE: invalid protocol {proto!r}")
    low, _, high = port.partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise InvalidArgument(f"EXPOSE: invalid port {word!r}") from None
    if not 0 < start <= end <= 65535:
        raise InvalidArgument(f"EXPOSE: invalid port range {word!r}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


# -- the layer ---------------------------------------------------------------------------

def _clean(name: str, what: str) -> str:
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise InvalidArgument(f"rootfs tarball entry {what}{name[:200]!r} has a '..' "
                                  "component", hint="the tarball tries to write outside its "
                                  "root; nothing was imported")
        parts.append(p)
    return "/".join(parts)


def reemit_tar(stream: BinaryIO, out) -> None:
    """Parse the (possibly compressed) tar `stream` and write it again to `out` with
    clean names; a '..' in a name or a hard-link target refuses the tarball. The
    rootfs's own "./" is dropped (the snapshot directory is the root)."""
    from hutch.archive import tar
    from hutch.archive.compress import open_layer

    reader = tar.TarReader(open_layer(stream))
    for e in reader:
        name = _clean(e.name, "")
        if not name:
            if e.type != tar.DIRTYPE:
                raise InvalidArgument(f"rootfs tarball entry {e.name!r}: the root can "
                                      "only be a directory")
            continue
        e.name = name + "/" if e.type == tar.DIRTYPE else name
        if e.type == tar.LNKTYPE:
            e.linkname = _clean(e.linkname, "link target ")
            if not e.linkname:
                raise InvalidArgument(f"rootfs tarball entry {name!r}: hard link to the root")
        out.write(tar.encode_header(e))
        if e.type == tar.REGTYPE:
            left = e.size
            while left:
                chunk = reader.read(min(_CHUNK, left))
                out.write(chunk)
                left -= len(chunk)
            out.write(tar.padding(e.size))
    out.write(tar.end_of_archive())


def write_layer_blob(svc, tracker, produce: Callable[[BinaryIO], None], *,
                     ref_prefix: str) -> tuple[str, int, str]:
    """(blob digest, blob size, diff_id) of the gzip layer `produce` writes (an
    uncompressed tar, into a LayerWriter) to `svc`'s content store under a writer ref
    "{ref_prefix}-{random}". The blob is protected and recorded in `tracker` (a
    BlobTracker); the write is aborted if `produce` fails. Shared by import and commit."""
    from hutch.archive.compress import LayerWriter

    with svc.content.writer(f"{ref_prefix}-{uuid.uuid4().hex}", None) as w:
        try:
            lw = LayerWriter(w, "gzip")
            produce(lw)
            layer = lw.close()
            existed = svc.content.exists(w.digest())
            digest = w.commit()
        except BaseException:
            w.abort()
            raise
    tracker.protect(digest)
    tracker.added(digest, existed)
    return digest, layer.size, layer.diff_id


def _write_layer(svc, tracker, source) -> tuple[str, int, str]:
    """(blob digest, blob size, diff_id) of the gzip layer made from `source`."""
    from hutch.archive.diff import write_tar

    def produce(lw) -> None:
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            write_tar(source, lw)
        elif isinstance(source, (str, os.PathLike)):
            try:
                f = open(source, "rb")
            except FileNotFoundError:
                raise NotFound(f"open {os.fspath(source)}: no such file or "
                               "directory") from None
            with f:
                reemit_tar(f, lw)
        else:
            reemit_tar(source, lw)

    return write_layer_blob(svc, tracker, produce, ref_prefix="import")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def import_(svc, source, name: str | None = None, *, changes=(), message: str = "",
            unpack: bool = True, created: str | None = None):
    """Make a one-layer image of `source` (a directory, a tarball path, "-" for stdin, or
    a binary stream); name it `name` (or by its id), unpack it, return its LoadedImage."""
    from hutch.image._ingest import BlobTracker, ImagePlan, commit_images
    from hutch.oci import media
    from hutch.oci.image import Descriptor, ImageConfig, Manifest
    from hutch.oci.platform import Platform

    run_config = apply_changes({}, changes)  # bad --change lines fail before any work
    canonical = svc.normalize(name) if name else None
    label = "-" if source == "-" or not isinstance(source, (str, os.PathLike)) \
        else os.fspath(source)
    if source == "-":
        source = sys.stdin.buffer
    tracker = BlobTracker(svc)
    try:
        digest, size, diff_id = _write_layer(svc, tracker, source)
        when = created or _now()
        host = Platform.host()
        doc: dict = {"architecture": host.architecture, "os": host.os, "created": when,
                     "config": run_config,
                     "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                     "history": [{"created": when,
                                  "comment": message or f"Imported from {label}"}]}
        if host.variant:
            doc["variant"] = host.variant
        cfg_bytes = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        cfg = ImageConfig.parse(cfg_bytes)
        cfg_digest = tracker.put_bytes(cfg_bytes)
        manifest = Manifest(media.OCI_MANIFEST,
                            Descriptor(media.OCI_CONFIG, cfg_digest, len(cfg_bytes)),
                            (Descriptor(media.OCI_LAYER_GZIP, digest, size),))
        body = json.dumps(manifest.to_dict(), separators=(",", ":")).encode()
        mdigest = tracker.put_bytes(body)
        plan = ImagePlan([canonical] if canonical else [], mdigest, media.OCI_MANIFEST,
                         len(body), [(mdigest, body, None)], manifest, mdigest, cfg)
        (loaded,) = commit_images(svc, [plan], unpack=unpack)
        return loaded
    finally:
        tracker.finish()
