"""Content digests: "algorithm:encoded", as the OCI image spec's descriptor.md defines them.

A `Digest` is a `str` (so it is a dict key, a JSON value and a file name as is) that was
validated once. Only sha256 (the default everywhere) and sha512 are registered algorithms;
their encoded part must be lowercase hex of the exact length (descriptor.md, "Registered
algorithms") — anything else is refused, because digests end up in paths and URLs.
"""

from __future__ import annotations

from hutch.errors import FailedPrecondition, InvalidArgument

# algorithm -> length of the lowercase-hex encoded part
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"
_HEX = frozenset("0123456789abcdef")


class DigestMismatch(FailedPrecondition):
    """Content did not hash (or size up) to what its descriptor promised."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "",
                 **context: object) -> None:
        super().__init__(message, expected=expected, actual=actual, **context)
        self.expected = expected
        self.actual = actual


class Digest(str):
    """A validated digest string, e.g. "sha256:e3b0...". `Digest(s)` validates."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidArgument(f"invalid digest {value!r}: not a string")
        algorithm, sep, encoded = value.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid digest {_show(value)}: expected algorithm:hex")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidArgument(
                f"invalid digest {_show(value)}: unsupported algorithm {algorithm[:20]!r}",
                hint="supported: " + ", ".join(ALGORITHMS))
        if len(encoded) != length or not _HEX.issuperset(encoded):
            raise InvalidArgument(
                f"invalid digest {_show(value)}: {algorithm} needs {length} lowercase hex digits")
        return str.__new__(cls, value)

    @classmethod
    def parse(cls, value: str) -> Digest:
        return cls(value)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        h = Hasher(algorithm)
        h.update(data)
        return h.digest()

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def encoded(self) -> str:
        return self.partition(":")[2]

    hex = encoded

    def hasher(self) -> Hasher:
        """A fresh hasher of this digest's algorithm."""
        return Hasher(self.algorithm)

    def verify(self, data: bytes) -> None:
        """Raise DigestMismatch unless `data` hashes to this digest."""
        actual = Digest.from_bytes(data, self.algorithm)
        if actual != self:
            raise DigestMismatch(f"content digest {actual} does not match expected {self}",
                                 expected=str(self), actual=str(actual))

    def __repr__(self) -> str:
        return f"Digest({str.__repr__(self)})"


def _show(value: str) -> str:
    return repr(value if len(value) <= 140 else value[:137] + "...")


def sha256_of(data: bytes) -> Digest:
    import hashlib  # here, not at import: OpenSSL's init costs ~3 ms per command

    return Digest(CANONICAL + ":" + hashlib.sha256(data).hexdigest())


class Hasher:
    """Streaming digest: update() with chunks, digest() at the end; `size` counts bytes."""

    __slots__ = ("algorithm", "size", "_h")

    def __init__(self, algorithm: str = CANONICAL) -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"unsupported digest algorithm {algorithm[:20]!r}",
                                  hint="supported: " + ", ".join(ALGORITHMS))
        self.algorithm = algorithm
        self.size = 0
        import hashlib

        self._h = hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm + ":" + self._h.hexdigest())

    def copy(self) -> Hasher:
        other = Hasher.__new__(Hasher)
        other.algorithm, other.size, other._h = self.algorithm, self.size, self._h.copy()
        return other


def _sha256_hex(data: bytes) -> str:
    # CPython's own sha256 (no OpenSSL): hashlib's import initialises OpenSSL, ~2 ms on
    # every `hutch run`, for a few dozen bytes of chain ids.
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:  # 3.12+: _sha2
        from hashlib import sha256
    return sha256(data).hexdigest()


def chain_ids(diff_ids) -> list[str]:
    """image-spec config.md: ChainID(L0) = DiffID(L0);
    ChainID(L0|..|Ln) = sha256(ChainID(L0|..|Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out
                   else "sha256:" + _sha256_hex(f"{out[-1]} {diff_id}".encode()))
    return out
