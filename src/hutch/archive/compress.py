"""Layer (de)compression: gzip, zstd or plain tar, told apart by magic bytes.

Reading: `open_layer(stream)` returns a file-like LayerStream of the uncompressed tar that
hashes what it yields (the diff_id, image-spec config.md "rootfs.diff_ids") and stops with
an error past `max_bytes` or when the output grows more than `max_ratio` times the input
(decompression bombs: memory stays bounded by the chunk size and zstd's window limit, disk
by max_bytes). Writing: `LayerWriter` compresses a tar written into it and returns the
compressed digest and size and the diff_id, in one pass.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO

import zstandard

from hutch.errors import InvalidArgument, NotSupported
from hutch.util.record import record

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGICS = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}

DEFAULT_MAX_BYTES = 64 << 30
# gzip cannot exceed ~1032:1 (deflate's limit), so 2000 never trips on a real gzip layer;
# zstd can reach far higher ratios, which is exactly what a bomb uses.
DEFAULT_MAX_RATIO = 2000
RATIO_FLOOR = 64 << 20        # never judge the ratio before this many output bytes
MAX_ZSTD_WINDOW = 1 << 27     # 128 MiB, zstd's --long=27; larger windows are refused
_CHUNK = 1 << 20


class LayerTooLarge(InvalidArgument):
    """The uncompressed layer is over max_bytes, or inflates suspiciously (ratio)."""


class _Counting:
    """Counts the compressed bytes the decompressor pulls."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        self._raw = raw
        self._head = head
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            if 0 <= n < len(data):
                data, self._head = data[:n], data[n:]
        else:
            data = self._raw.read(n if n >= 0 else _CHUNK)
        self.count += len(data)
        return data


class _Gunzip:
    """Streaming gzip, multi-member (pigz and concatenated gzips are valid layers)."""

    def __init__(self, src: _Counting) -> None:
        self._src = src
        self._d = zlib.decompressobj(wbits=31)
        self._in = b""

    def read(self, n: int) -> bytes:
        while True:
            if self._d.eof:
                rest = self._d.unused_data or self._src.read(_CHUNK)
                if not rest:
                    return b""
                # Another member follows; garbage instead fails its header check.
                self._d = zlib.decompressobj(wbits=31)
                self._in = rest
            if not self._in:
                self._in = self._src.read(_CHUNK)
                if not self._in:
                    raise InvalidArgument("gzip layer is truncated")
            out = self._d.decompress(self._in, n)
            self._in = self._d.unconsumed_tail
            if out:
                return out


class LayerStream:
    """The uncompressed tar of a layer, read like a file. After reading to the end,
    `diff_id` is "sha256:<hex>" of every byte and `size` their count."""

    def __init__(self, raw: BinaryIO, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_ratio: float | None = DEFAULT_MAX_RATIO,
                 ratio_floor: int = RATIO_FLOOR) -> None:
        head = b""
        while len(head) < 6:
            chunk = raw.read(6 - len(head))
            if not chunk:
                break
            head += chunk
        self._src = _Counting(raw, head)
        self.compression = detect(head)
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._ratio_floor = ratio_floor
        self._hash = hashlib.sha256()
        self.size = 0
        self._eof = False
        if self.compression == "gzip":
            self._reader = _Gunzip(self._src)
        elif self.compression == "zstd":
            try:
                self._reader = zstandard.ZstdDecompressor(
                    max_window_size=MAX_ZSTD_WINDOW
                ).stream_reader(self._src, read_size=_CHUNK, read_across_frames=True)
            except zstandard.ZstdError as e:
                raise InvalidArgument(f"zstd layer: {e}") from None
        else:
            self._reader = self._src

    def read(self, n: int = -1) -> bytes:
        if self._eof:
            return b""
        if n < 0:
            n = _CHUNK
        try:
            data = self._reader.read(n)
        except zstandard.ZstdError as e:
            raise InvalidArgument(f"zstd layer cannot be decoded: {e}") from None
        except zlib.error as e:
            raise InvalidArgument(f"gzip layer is corrupt: {e}") from None
        if not data:
            self._eof = True
            return b""
        self.size += len(data)
        if self.size > self._max_bytes:
            raise LayerTooLarge(f"layer is larger than {self._max_bytes} bytes uncompressed")
        if (self._max_ratio and self.compression != "none" and self.size > self._ratio_floor
                and self.size > self._max_ratio * max(1, self._src.count)):
            raise LayerTooLarge(f"layer inflates more than {self._max_ratio}:1 "
                                "(decompression bomb?)")
        self._hash.update(data)
        return data

    def drain(self) -> None:
        """Read (and hash) what is left, e.g. the zero blocks after end-of-archive."""
        while self.read(_CHUNK):
            pass

    @property
    def compressed_size(self) -> int:
        return self._src.count

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def detect(head: bytes) -> str:
    """'gzip', 'zstd' or 'none' from the first bytes; other compressions are refused."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    for magic, name in _OTHER_MAGICS.items():
        if head.startswith(magic):
            raise NotSupported(f"{name}-compressed layers are not supported",
                               hint="OCI layers are tar, tar+gzip or tar+zstd")
    return "none"


def open_layer(stream: BinaryIO, *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_ratio: float | None = DEFAULT_MAX_RATIO,
               ratio_floor: int = RATIO_FLOOR) -> LayerStream:
    """The uncompressed tar of a (possibly compressed) layer stream. Reading past
    `max_bytes`, or past `max_ratio` times the compressed bytes once `ratio_floor` bytes
    came out, raises LayerTooLarge. max_ratio=None disables the ratio guard."""
    return LayerStream(stream, max_bytes=max_bytes, max_ratio=max_ratio,
                       ratio_floor=ratio_floor)


@record(frozen=True)
class CompressedLayer:
    digest: str     # "sha256:..." of the bytes written to `out` (the blob digest)
    size: int       # their count
    diff_id: str    # "sha256:..." of the uncompressed tar
    uncompressed_size: int


class LayerWriter:
    """A file-like sink: write a tar into it, `close()` returns a CompressedLayer.

    gzip output is deterministic (zlib's gzip wrapper writes mtime 0, no file name), so
    the same tree gives the same blob digest.
    """

    def __init__(self, out: BinaryIO, compression: str = "gzip", *, level: int | None = None
                 ) -> None:
        self._out = out
        self._tar_hash = hashlib.sha256()
        self._blob_hash = hashlib.sha256()
        self._tar_size = 0
        self._blob_size = 0
        self.compression = compression
        if compression == "gzip":
            self._c = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        elif compression == "zstd":
            self._c = zstandard.ZstdCompressor(level=3 if level is None else level,
                                               write_content_size=False).compressobj()
        elif compression == "none":
            self._c = None
        else:
            raise InvalidArgument(f"unknown compression {compression!r}",
                                  hint="use gzip, zstd or none")

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._blob_hash.update(data)
            self._blob_size += len(data)

    def write(self, data: bytes) -> int:
        self._tar_hash.update(data)
        self._tar_size += len(data)
        self._emit(self._c.compress(data) if self._c is not None else bytes(data))
        return len(data)

    def close(self) -> CompressedLayer:
        if self._c is not None:
            self._emit(self._c.flush())
            self._c = None
        return CompressedLayer("sha256:" + self._blob_hash.hexdigest(), self._blob_size,
                               "sha256:" + self._tar_hash.hexdigest(), self._tar_size)


def compress_layer(src: BinaryIO, out: BinaryIO, compression: str = "gzip", *,
                   level: int | None = None) -> CompressedLayer:
    """Compress the tar read from `src` into `out`."""
    w = LayerWriter(out, compression, level=level)
    while chunk := src.read(_CHUNK):
        w.write(chunk)
    return w.close()
