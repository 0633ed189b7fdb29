"""Image references ("busybox", "localhost:5000/a/b:tag", "name@sha256:..."), normalised
the way docker's distribution/reference package does (ParseNormalizedNamed):

- The first path component is a registry domain when it contains "." or ":", is
  "localhost", or has an uppercase letter; otherwise the domain is docker.io.
  "index.docker.io" is docker.io. On docker.io a single component gets "library/".
- Path components are lowercase alphanumerics joined by ".", "_", "__" or dashes, split by
  "/"; the whole name (domain/path) is at most 255 characters.
- A tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; with neither tag nor digest the tag is
  "latest". A digest is a hutch.oci.digest.Digest (sha256 or sha512).
- A bare 64-hex string is an image id, not a name, and is refused here.
"""

from __future__ import annotations

import re

from hutch.errors import InvalidArgument
from hutch.oci.digest import Digest
from hutch.util.record import record

DOCKER_DOMAIN = "docker.io"
LEGACY_DOCKER_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# Compiled on first use (each costs ~0.2 ms at start-up, and `run bb` needs neither).
_COMPONENT_RE = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z"
_DOMAIN_RE = (
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?\Z")
_compiled: dict[str, re.Pattern] = {}
_LOWER_HEX = frozenset("0123456789abcdef")
_ALNUM_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TAG_REST = _TAG_FIRST | frozenset(".-")


def _match(pattern: str, text: str) -> bool:
    compiled = _compiled.get(pattern)
    if compiled is None:
        compiled = _compiled[pattern] = re.compile(pattern)
    return compiled.match(text) is not None


def _is_image_id(text: str) -> bool:
    """[a-f0-9]{64}, the whole text."""
    return len(text) == 64 and _LOWER_HEX.issuperset(text)


def _is_tag(tag: str) -> bool:
    """[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, the whole tag."""
    return 0 < len(tag) <= 128 and tag[0] in _TAG_FIRST and _TAG_REST.issuperset(tag)


def _is_component(component: str) -> bool:
    # Plain lowercase letters and digits, the common case, need no pattern.
    return bool(component) and _ALNUM_LOWER.issuperset(component) or _match(
        _COMPONENT_RE, component)


@record(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise a reference; InvalidArgument with the reason otherwise."""
        if not isinstance(text, str) or not text:
            raise InvalidArgument("invalid reference format: empty reference")
        shown = repr(text if len(text) <= 300 else text[:297] + "...")
        if _is_image_id(text):
            raise InvalidArgument(
                f"invalid reference {shown}: cannot specify 64-byte hexadecimal strings",
                hint="this looks like an image id, not a name")
        if any(c.isspace() for c in text):
            raise InvalidArgument(f"invalid reference {shown}: contains whitespace")

        rest, at, digest_text = text.partition("@")
        digest = None
        if at:
            try:
                digest = Digest(digest_text)
            except InvalidArgument as e:
                raise InvalidArgument(f"invalid reference {shown}: {e}") from None
        # The tag follows the last ":" after the last "/" (a ":" before it is a port).
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1:]
            if not _is_tag(tag):
                raise InvalidArgument(
                    f"invalid reference {shown}: invalid tag {tag[:140]!r}",
                    hint="a tag is up to 128 letters, digits, '_', '.', '-', "
                         "not starting with '.' or '-'")
        domain, path = _split_domain(rest)
        if not path:
            raise InvalidArgument(f"invalid reference {shown}: empty repository name")
        if domain and not _match(_DOMAIN_RE, domain):
            raise InvalidArgument(f"invalid reference {shown}: invalid registry {domain[:140]!r}")
        for component in path.split("/"):
            if _is_component(component):
                continue
            if component.lower() != component:
                raise InvalidArgument(
                    f"invalid reference {shown}: repository name must be lowercase")
            raise InvalidArgument(
                f"invalid reference {shown}: invalid repository name component "
                f"{component[:140]!r}",
                hint="components are lowercase letters and digits separated by "
                     "'.', '_', '__' or '-'")
        if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidArgument(
                f"invalid reference {shown}: repository name must not be more than "
                f"{NAME_TOTAL_LENGTH_MAX} characters")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def name(self) -> str:
        """domain/path, e.g. "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    repository = name

    @property
    def locator(self) -> str:
        """What the registry is asked for: the digest when there is one, else the tag."""
        return str(self.digest) if self.digest else (self.tag or DEFAULT_TAG)

    def with_tag(self, tag: str) -> Reference:
        return Reference.parse(f"{self.name}:{tag}")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, Digest(digest))

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar_name(self) -> str:
        if self.domain != DOCKER_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX):]:
            path = path[len(OFFICIAL_PREFIX):]
        return path

    def familiar(self) -> str:
        """The short form docker prints: "busybox:latest", "localhost:5000/a@sha256:..."."""
        s = self.familiar_name()
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, remainder = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"
                     and first.lower() == first):
        domain, remainder = DOCKER_DOMAIN, name
    else:
        domain = first
    if domain == LEGACY_DOCKER_DOMAIN:
        domain = DOCKER_DOMAIN
    if domain == DOCKER_DOMAIN and remainder and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(text: str) -> Reference:
    return Reference.parse(text)
