"""Small pure helpers for the distribution API's wire format: hosts, error bodies,
Retry-After, Content-Range, and the chunking of upload bodies. No httpx."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from hutch.errors import InvalidArgument
from hutch.oci.digest import Hasher
from hutch.oci.reference import DOCKER_DOMAIN, LEGACY_DOCKER_DOMAIN

DOCKER_ENDPOINT = "registry-1.docker.io"
DEFAULT_CHUNK = 1 << 20


def is_local_host(host: str) -> bool:
    """localhost or a loopback address, with or without a port ("[::1]:5000")."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def endpoint_for(host: str) -> str:
    """The host actually contacted: docker.io is served by registry-1.docker.io."""
    return DOCKER_ENDPOINT if host in (DOCKER_DOMAIN, LEGACY_DOCKER_DOMAIN) else host

def error_detail(body: bytes) -> str:
    from hutch.util import fastjson

    try:
        doc = fastjson.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for e in errors[:3]:
        if isinstance(e, dict):
            code, message = e.get("code", ""), e.get("message", "")
            parts.append(": ".join(str(x) for x in (code, message) if x))
    return one_line("; ".join(parts))[:300]


def one_line(e: object) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def transport_hint(e: Exception) -> str | None:
    text = str(e).lower()
    if "ssl" in text or "certificate" in text or "wrong version" in text:
        return "if this registry serves plain http, mark it insecure"
    return None


def retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(30.0, float(value.strip()))
    return None


def range_start(content_range: str) -> int:
    # "bytes 100-199/200"
    try:
        unit, _, rest = content_range.strip().partition(" ")
        return int(rest.partition("-")[0]) if unit == "bytes" else -1
    except ValueError:
        return -1


def iter_chunks(data: bytes | Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
        return
    read = getattr(data, "read", None)
    if read is not None:
        while chunk := read(DEFAULT_CHUNK):
            yield chunk
        return
    for chunk in data:  # type: ignore[union-attr]
        if chunk:
            yield bytes(chunk)


def hash_through(chunks: Iterator[bytes], hasher: Hasher) -> Iterator[bytes]:
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk


def rechunk(chunks: Iterator[bytes], size: int) -> Iterator[tuple[int, bytes]]:
    if size <= 0:
        raise InvalidArgument("chunk_size must be positive")
    buf = bytearray()
    offset = 0
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            piece = bytes(buf[:size])
            del buf[:size]
            yield offset, piece
            offset += len(piece)
    if buf:
        yield offset, bytes(buf)
