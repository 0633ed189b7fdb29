"""Digest strings as the content store needs them: validate, split, hash.

A small local helper so the store does not wait on hutch.oci.digest; it accepts exactly
the registered algorithms of the OCI image spec (descriptor.md, "Registered algorithms"):
sha256 (64 lowercase hex) and sha512 (128 lowercase hex).
"""

from __future__ import annotations

from hutch.errors import InvalidArgument

# image-spec descriptor.md: encoded portion of sha256/sha512 MUST match /[a-f0-9]{64}/ resp.
# /[a-f0-9]{128}/. Upper case is not allowed, so a digest has one spelling and one path.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")
ALGORITHMS = tuple(_HEX_LENGTH)


def split_digest(digest: object) -> tuple[str, str]:
    """`"sha256:ab.."` -> `("sha256", "ab..")`; InvalidArgument for anything else."""
    if not isinstance(digest, str):
        raise InvalidArgument(f"invalid digest {digest!r}: not a string", digest=digest)
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not is_hex_for(algorithm, encoded):
        raise InvalidArgument(
            f"invalid digest {digest[:100]!r}: want sha256:<64 hex> or sha512:<128 hex>",
            digest=digest,
        )
    return algorithm, encoded


def is_hex_for(algorithm: str, name: str) -> bool:
    """True if `name` is a well-formed encoded digest for `algorithm` (a blob file name)."""
    length = _HEX_LENGTH.get(algorithm)
    # `re` would cost ~5 ms of start-up (it pulls in enum); a set test is as clear.
    return length is not None and len(name) == length and _HEX.issuperset(name)


TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    import hashlib


def new_hasher(algorithm: str) -> hashlib._Hash:
    import hashlib  # OpenSSL's start-up costs ~2 ms: only when something is hashed

    return hashlib.new(algorithm)
