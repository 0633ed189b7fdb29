"""Image manifests, indexes, configs and descriptors, parsed from bytes and validated
(OCI image-spec manifest.md, image-index.md, config.md, descriptor.md; Docker schema 2).

Everything here comes from a registry or a tarball, so it is hostile until checked:
sizes are bounded before parsing, every digest is validated (digests become paths), a
bad document is one InvalidArgument line. Documents that could be read as both a manifest
and an index are refused (CVE-2021-41190, OCI image-spec 1.0.2).
"""

from __future__ import annotations

from hutch.errors import InvalidArgument, NotFound, NotSupported
from hutch.oci import media
from hutch.oci.digest import Digest
from hutch.oci.platform import Platform
from hutch.util import fastjson
from hutch.util.record import field, record

MAX_MANIFEST_SIZE = 4 << 20  # containerd and distribution's limit for manifests
MAX_CONFIG_SIZE = 16 << 20  # configs carry history; still bounded before json.loads
_MAX_SIZE_FIELD = (1 << 63) - 1
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})


def _load(data: bytes | str, what: str, limit: int) -> dict:
    if len(data) > limit:
        raise InvalidArgument(f"{what} is {len(data)} bytes, more than the {limit >> 20} MiB limit")
    try:
        doc = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidArgument(f"{what} is not valid JSON: {msg[:200]}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return doc


def _str(d: dict, key: str, what: str, *, required: bool = False) -> str:
    v = d.get(key)
    if v is None:
        if required:
            raise InvalidArgument(f"{what}: missing {key}")
        return ""
    if not isinstance(v, str):
        raise InvalidArgument(f"{what}: {key} must be a string")
    return v


def _annotations(d: dict, what: str) -> dict[str, str]:
    a = d.get("annotations")
    if a is None:
        return {}
    if not isinstance(a, dict) or not all(isinstance(v, str) for v in a.values()):
        raise InvalidArgument(f"{what}: annotations must map strings to strings")
    return dict(a)


@record(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: Platform | None = None
    artifact_type: str = ""

    @classmethod
    def from_dict(cls, d: object, what: str = "descriptor") -> Descriptor:
        if not isinstance(d, dict):
            raise InvalidArgument(f"{what}: not a JSON object")
        media_type = _str(d, "mediaType", what, required=True)
        try:
            digest = Digest(d.get("digest"))  # type: ignore[arg-type]
        except InvalidArgument as e:
            raise InvalidArgument(f"{what}: {e}") from None
        size = d.get("size")
        if type(size) is not int or not 0 <= size <= _MAX_SIZE_FIELD:
            raise InvalidArgument(f"{what}: size must be a non-negative integer")
        urls = d.get("urls")
        if urls is None:
            urls = []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidArgument(f"{what}: urls must be a list of strings")
        platform = None
        if d.get("platform") is not None:
            try:
                platform = Platform.from_dict(d["platform"])
            except InvalidArgument as e:
                raise InvalidArgument(f"{what}: {e}") from None
        return cls(media_type, digest, size, tuple(urls), _annotations(d, what), platform,
                   _str(d, "artifactType", what))

    def to_dict(self) -> dict:
        d: dict = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d


def _schema_version(doc: dict, what: str) -> None:
    v = doc.get("schemaVersion")
    if v == 1:
        raise NotSupported(f"{what}: Docker image manifest schema 1 is not supported",
                           hint="push the image again with a current client (schema 2/OCI)")
    if type(v) is not int or v != 2:
        raise InvalidArgument(f"{what}: schemaVersion must be 2")


def _media_type(doc: dict, declared: str | None, what: str) -> str:
    """The document's media type from its own mediaType field, the one it was served or
    described with, or (neither given) its shape; both given and different is an error."""
    own = _str(doc, "mediaType", what)
    declared = (declared or "").split(";")[0].strip().lower()
    if declared in _GENERIC_TYPES:
        declared = ""
    if own and declared and own != declared:
        raise InvalidArgument(f"{what}: mediaType {own!r} does not match {declared!r}")
    mt = own or declared
    if mt:
        return mt
    if doc.get("schemaVersion") == 1:
        return media.DOCKER_MANIFEST_V1
    if "manifests" in doc:
        return media.OCI_INDEX
    if "config" in doc or "layers" in doc:
        return media.OCI_MANIFEST
    raise InvalidArgument(f"{what}: cannot tell whether this is a manifest or an index")


@record(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    subject: Descriptor | None = None
    artifact_type: str = ""

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Manifest:
        doc = _load(data, "image manifest", MAX_MANIFEST_SIZE)
        mt = _media_type(doc, media_type, "image manifest")
        if mt in media.INDEX_TYPES:
            raise InvalidArgument(f"image manifest: expected a manifest, got an index ({mt})")
        return cls._from_doc(doc, mt)

    @classmethod
    def _from_doc(cls, doc: dict, mt: str) -> Manifest:
        what = "image manifest"
        _schema_version(doc, what)
        if mt not in media.MANIFEST_TYPES:
            if mt in (media.DOCKER_MANIFEST_V1, media.DOCKER_MANIFEST_V1_SIGNED):
                raise NotSupported(f"{what}: Docker image manifest schema 1 is not supported")
            raise InvalidArgument(f"{what}: unsupported mediaType {mt[:100]!r}")
        if "manifests" in doc:  # CVE-2021-41190: ambiguous manifest/index
            raise InvalidArgument(f"{what}: must not have a 'manifests' field")
        config = Descriptor.from_dict(doc.get("config"), f"{what}: config")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise InvalidArgument(f"{what}: layers must be a list")
        subject = None
        if doc.get("subject") is not None:
            subject = Descriptor.from_dict(doc["subject"], f"{what}: subject")
        return cls(mt, config,
                   tuple(Descriptor.from_dict(x, f"{what}: layer {i}")
                         for i, x in enumerate(layers)),
                   _annotations(doc, what), subject, _str(doc, "artifactType", what))

    def to_dict(self) -> dict:
        d: dict = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        d["config"] = self.config.to_dict()
        d["layers"] = [x.to_dict() for x in self.layers]
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@record(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    subject: Descriptor | None = None
    artifact_type: str = ""

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Index:
        doc = _load(data, "image index", MAX_MANIFEST_SIZE)
        mt = _media_type(doc, media_type, "image index")
        if mt in media.MANIFEST_TYPES:
            raise InvalidArgument(f"image index: expected an index, got a manifest ({mt})")
        return cls._from_doc(doc, mt)

    @classmethod
    def _from_doc(cls, doc: dict, mt: str) -> Index:
        what = "image index"
        _schema_version(doc, what)
        if mt not in media.INDEX_TYPES:
            raise InvalidArgument(f"{what}: unsupported mediaType {mt[:100]!r}")
        if "config" in doc or "layers" in doc:  # CVE-2021-41190
            raise InvalidArgument(f"{what}: must not have 'config' or 'layers' fields")
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidArgument(f"{what}: manifests must be a list")
        subject = None
        if doc.get("subject") is not None:
            subject = Descriptor.from_dict(doc["subject"], f"{what}: subject")
        return cls(mt, tuple(Descriptor.from_dict(x, f"{what}: manifest {i}")
                             for i, x in enumerate(manifests)),
                   _annotations(doc, what), subject, _str(doc, "artifactType", what))

    def to_dict(self) -> dict:
        d: dict = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        d["manifests"] = [x.to_dict() for x in self.manifests]
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """A manifest or an index, whichever `data` is (media_type: as served/described)."""
    doc = _load(data, "manifest", MAX_MANIFEST_SIZE)
    mt = _media_type(doc, media_type, "manifest")
    if mt in media.INDEX_TYPES:
        return Index._from_doc(doc, mt)
    return Manifest._from_doc(doc, mt)


def _str_list(v: object, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise InvalidArgument(f"{what} must be a list of strings")
    return tuple(v)


def _str_map(v: object, what: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(s, str) for s in v.values()):
        raise InvalidArgument(f"{what} must map strings to strings")
    return dict(v)


def _key_set(v: object, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise InvalidArgument(f"{what} must be an object")
    return tuple(v)


@record(frozen=True)
class ImageConfig:
    """The image config (config.md): platform, rootfs diff_ids and the run defaults."""

    architecture: str
    os: str
    diff_ids: tuple[Digest, ...]
    variant: str = ""
    os_version: str = ""
    created: str = ""
    author: str = ""
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    history: tuple[dict, ...] = field(default=(), compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        what = "image config"
        doc = _load(data, what, MAX_CONFIG_SIZE)
        rootfs = doc.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidArgument(f"{what}: rootfs.type must be 'layers'")
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            raise InvalidArgument(f"{what}: rootfs.diff_ids must be a list")
        try:
            ids = tuple(Digest(x) for x in diff_ids)
        except InvalidArgument as e:
            raise InvalidArgument(f"{what}: rootfs.diff_ids: {e}") from None
        c = doc.get("config")
        if c is None:
            c = {}
        if not isinstance(c, dict):
            raise InvalidArgument(f"{what}: config must be an object")
        history = doc.get("history")
        if history is None:
            history = []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise InvalidArgument(f"{what}: history must be a list of objects")
        entrypoint = c.get("Entrypoint")
        cmd = c.get("Cmd")
        return cls(
            architecture=_str(doc, "architecture", what, required=True),
            os=_str(doc, "os", what, required=True),
            diff_ids=ids,
            variant=_str(doc, "variant", what),
            os_version=_str(doc, "os.version", what),
            created=_str(doc, "created", what),
            author=_str(doc, "author", what),
            user=_str(c, "User", what + ": config"),
            env=_str_list(c.get("Env"), what + ": config.Env"),
            entrypoint=None if entrypoint is None else
            _str_list(entrypoint, what + ": config.Entrypoint"),
            cmd=None if cmd is None else _str_list(cmd, what + ": config.Cmd"),
            working_dir=_str(c, "WorkingDir", what + ": config"),
            labels=_str_map(c.get("Labels"), what + ": config.Labels"),
            exposed_ports=_key_set(c.get("ExposedPorts"), what + ": config.ExposedPorts"),
            volumes=_key_set(c.get("Volumes"), what + ": config.Volumes"),
            stop_signal=_str(c, "StopSignal", what + ": config"),
            history=tuple(history),
            raw=doc,
        )

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    def check_layers(self, manifest: Manifest) -> None:
        """A manifest's layers and its config's diff_ids pair up one to one."""
        if len(manifest.layers) != len(self.diff_ids):
            raise InvalidArgument(
                f"image has {len(manifest.layers)} layers but its config lists "
                f"{len(self.diff_ids)} diff_ids")


def select_manifest(index: Index, platform: Platform) -> Descriptor:
    """The index entry that best runs on `platform` (exact match before compatible
    variants, first in the index wins a tie). Entries without a platform rank last, as
    containerd keeps them; the caller checks the config's platform for those."""
    best: tuple[int, int] | None = None
    chosen: Descriptor | None = None
    for i, desc in enumerate(index.manifests):
        if desc.media_type not in media.MANIFEST_TYPES | media.INDEX_TYPES:
            continue
        if desc.platform is None:
            rank: int | None = 1000
        else:
            rank = platform.rank(desc.platform)
        if rank is None:
            continue
        if best is None or (rank, i) < best:
            best, chosen = (rank, i), desc
    if chosen is None:
        have = sorted({str(d.platform) for d in index.manifests if d.platform is not None})
        raise NotFound(f"no image for platform {platform} in the index",
                       hint="available: " + (", ".join(have) if have else "none"),
                       platform=str(platform))
    return chosen
