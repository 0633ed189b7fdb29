"""A tar reader and header writer of our own: it only parses, it never touches a file.

Formats: ustar (POSIX.1-1988), GNU (long names 'L'/'K', base-256 numbers) and PAX
(POSIX.1-2001 extended headers) — what docker, containerd, buildkit, umoci, kaniko and
GNU tar write for image layers. GNU sparse files are refused clearly (no image builder
writes them).

Why not `tarfile`: it raises "unexpected end of data" on the layers umoci 0.4.7 writes
(no padding after the last entry, no end-of-archive blocks; Go's archive/tar reads them,
so they exist in the wild), and it has no limits against hostile headers. Every size a
header claims is checked against a limit before anything is read or allocated.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO

from hutch.errors import InvalidArgument, NotSupported
from hutch.util.record import field, record

BLOCK = 512

# Entry types (tar(5)). '7' (contiguous) is read as a regular file, as GNU tar does.
REGTYPE = "0"
LNKTYPE = "1"
SYMTYPE = "2"
CHRTYPE = "3"
BLKTYPE = "4"
DIRTYPE = "5"
FIFOTYPE = "6"
_CONTTYPE = "7"
_XHDTYPE = "x"          # PAX extended header for the next entry
_XGLTYPE = "g"          # PAX global header (git archive comments); ignored
_GNU_LONGNAME = "L"
_GNU_LONGLINK = "K"
_GNU_SPARSE = "S"
_GNU_VOLHDR = "V"
_FILE_TYPES = {REGTYPE, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE}

_SCHILY_XATTR = "SCHILY.xattr."
_LIBARCHIVE_XATTR = "LIBARCHIVE.xattr."


class TarError(InvalidArgument):
    """A layer tar is malformed, truncated or over a limit. The message names the entry
    (or the byte offset of the header) so a user can tell which layer is broken."""


@record(frozen=True)
class Limits:
    """Bounds against hostile archives. Defaults are far above any real image layer."""

    max_entries: int = 2_000_000
    max_name: int = 4096            # PATH_MAX: longer names cannot be created anyway
    max_pax_header: int = 1 << 20   # one extended header (all its records)
    max_xattr_count: int = 1024
    max_xattr_value: int = 64 << 10  # XATTR_SIZE_MAX
    max_entry_size: int = 1 << 40


@record
class TarEntry:
    """One member of a tar, after GNU long names and PAX records are folded in.

    `name` and `linkname` are decoded with os.fsdecode rules (UTF-8, surrogateescape),
    so any byte string round-trips through os.fsencode. `type` is one of the *TYPE
    constants. `mtime` is in nanoseconds since the epoch (PAX keeps fractions).
    """

    name: str
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    offset: int = 0  # byte offset of the entry's (first) header in the stream

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    def isreg(self) -> bool:
        return self.type == REGTYPE

    def isdir(self) -> bool:
        return self.type == DIRTYPE


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field_: bytes) -> bytes:
    end = field_.find(b"\0")
    return field_ if end < 0 else field_[:end]


def parse_number(field_: bytes, *, what: str, offset: int) -> int:
    """An octal number (NUL/space padded) or a GNU base-256 number (first byte 0x80 for
    positive, 0xff for negative: two's complement over the whole field)."""
    if field_ and field_[0] & 0x80:
        value = int.from_bytes(field_, "big", signed=False)
        if field_[0] == 0xFF:
            value -= 1 << (8 * len(field_))
        elif field_[0] == 0x80:
            value &= (1 << (8 * (len(field_) - 1))) - 1
        else:
            raise TarError(f"tar header at offset {offset}: bad base-256 {what}")
        return value
    text = field_.replace(b"\0", b" ").strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(
            f"tar header at offset {offset}: {what} is not an octal number: {text[:20]!r}"
        ) from None


def _parse_pax_time(value: str, *, entry: str) -> int:
    """'1700000000.123456789' (or negative) -> nanoseconds."""
    neg = value.startswith("-")
    body = value[1:] if neg else value
    whole, _, frac = body.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise TarError(f"tar entry {entry!r}: bad PAX mtime {value[:40]!r}")
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def parse_pax_records(data: bytes, *, offset: int) -> dict[str, bytes]:
    """PAX records "<len> <key>=<value>\\n", <len> counting the whole record. Values stay
    bytes: SCHILY.xattr values are binary (security.capability)."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding some writers leave after the last record
            if data[pos:].strip(b"\0"):
                raise TarError(f"PAX header at offset {offset}: garbage after NUL")
            break
        space = data.find(b" ", pos, pos + 20)
        if space < 0 or not data[pos:space].isdigit():
            raise TarError(f"PAX header at offset {offset}: bad record length")
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise TarError(f"PAX header at offset {offset}: record length out of bounds")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise TarError(f"PAX header at offset {offset}: record without key=value")
        records[_decode(key)] = value
        pos = end
    return records


class TarReader:
    """Iterate the entries of a tar stream; `read()` reads the current entry's data.

        reader = TarReader(stream)
        for entry in reader:
            if entry.isreg():
                while chunk := reader.read(1 << 20): ...

    Unread data is skipped when the next entry is requested. The stream may end right
    after the last entry's data (umoci 0.4.7 writes no padding and no end-of-archive
    blocks; Go accepts it); a stream that ends inside a header or inside an entry's data
    raises TarError naming the entry.
    """

    def __init__(self, stream: BinaryIO, *, limits: Limits | None = None) -> None:
        self._stream = stream
        self._limits = limits or Limits()
        self._pos = 0             # bytes consumed from the stream
        self._remaining = 0       # data bytes of the current entry not yet read
        self._padding = 0         # padding after the current entry's data
        self._current: TarEntry | None = None
        self._entries = 0
        self.ended = False        # True after the end-of-archive (or EOF) was seen

    # --- low-level reading -------------------------------------------------------
    def _read_exact(self, n: int) -> bytes:
        chunks = []
        want = n
        while want:
            chunk = self._stream.read(want)
            if not chunk:
                break
            chunks.append(chunk)
            want -= len(chunk)
        data = b"".join(chunks)
        self._pos += len(data)
        return data

    def _skip(self, n: int) -> int:
        skipped = 0
        while skipped < n:
            chunk = self._stream.read(min(n - skipped, 1 << 20))
            if not chunk:
                break
            skipped += len(chunk)
        self._pos += skipped
        return skipped

    def _finish_entry(self) -> None:
        entry = self._current
        if self._remaining:
            got = self._skip(self._remaining)
            if got < self._remaining:
                self._truncated(entry, got)
            self._remaining = 0
        if self._padding:
            # A missing final padding is tolerated (umoci); the next header read decides.
            self._skip(self._padding)
            self._padding = 0

    def _truncated(self, entry: TarEntry | None, got: int) -> None:
        name = entry.name if entry else "?"
        want = entry.size if entry else 0
        raise TarError(f"tar entry {name!r} is truncated: the stream ends inside its data "
                       f"({want - self._remaining + got} of {want} bytes)")

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all if n < 0) of the current entry's data; b'' at its end."""
        if self._remaining <= 0:
            return b""
        if n < 0 or n > self._remaining:
            n = self._remaining
        data = self._stream.read(n)
        if not data:
            self._truncated(self._current, 0)
        self._pos += len(data)
        self._remaining -= len(data)
        return data

    def _read_block(self) -> bytes | None:
        """The next header block, or None at end of stream / end-of-archive."""
        block = self._read_exact(BLOCK)
        if not block:
            return None  # EOF right after an entry: umoci's layers end like this
        if len(block) < BLOCK:
            raise TarError(f"tar stream is truncated inside a header at offset "
                           f"{self._pos - len(block)}")
        if block == bytes(BLOCK):
            return None  # end-of-archive marker; the second zero block is not required
        return block

    def _read_payload(self, size: int, limit: int, what: str, offset: int) -> bytes:
        if size > limit:
            raise TarError(f"{what} at offset {offset} is {size} bytes (limit {limit})")
        data = self._read_exact(size)
        if len(data) < size:
            raise TarError(f"tar stream is truncated inside a {what} at offset {offset}")
        pad = -size % BLOCK
        self._read_exact(pad)
        return data

    # --- headers -------------------------------------------------------------------
    def __iter__(self) -> Iterator[TarEntry]:
        while True:
            entry = self.next()
            if entry is None:
                return
            yield entry

    def next(self) -> TarEntry | None:
        if self.ended:
            return None
        self._finish_entry()
        self._current = None
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        first_offset: int | None = None
        lim = self._limits
        while True:
            offset = self._pos
            block = self._read_block()
            if block is None:
                if first_offset is not None:
                    raise TarError(f"tar stream ends after an extended header at offset "
                                   f"{first_offset} with no entry")
                self.ended = True
                return None
            if first_offset is None:
                first_offset = offset
            self._entries += 1
            if self._entries > lim.max_entries:
                raise TarError(f"tar has more than {lim.max_entries} headers")
            self._verify_checksum(block, offset)
            typeflag = chr(block[156]) if block[156] else REGTYPE
            size = parse_number(block[124:136], what="size", offset=offset)
            if size < 0:
                raise TarError(f"tar header at offset {offset}: negative size")
            if typeflag == _XHDTYPE:
                pax.update(parse_pax_records(
                    self._read_payload(size, lim.max_pax_header, "PAX header", offset),
                    offset=offset))
                continue
            if typeflag == _XGLTYPE:
                self._read_payload(size, lim.max_pax_header, "PAX global header", offset)
                continue
            if typeflag in (_GNU_LONGNAME, _GNU_LONGLINK):
                data = _cstr(self._read_payload(size, lim.max_name + 1, "GNU long name",
                                                offset))
                if typeflag == _GNU_LONGNAME:
                    long_name = data
                else:
                    long_link = data
                continue
            if typeflag == _GNU_VOLHDR:
                self._read_payload(size, lim.max_name, "GNU volume header", offset)
                continue
            entry = self._build(block, typeflag, size, offset, pax, long_name, long_link)
            entry.offset = first_offset
            self._current = entry
            # Hard links, symlinks, devices, dirs and fifos are header-only: Go's reader
            # (which wrote most layers) ignores their size field, so do we.
            if entry.type != REGTYPE:
                entry.size = 0
            self._remaining = entry.size
            self._padding = -entry.size % BLOCK
            return entry

    @staticmethod
    def _verify_checksum(block: bytes, offset: int) -> None:
        stored = parse_number(block[148:156], what="checksum", offset=offset)
        blanked = block[:148] + b" " * 8 + block[156:]
        if stored == sum(blanked):
            return
        # Some old writers summed signed chars; accept both like GNU tar and Go.
        if stored != sum(b - 256 if b > 127 else b for b in blanked):
            raise TarError(f"tar header at offset {offset}: checksum mismatch "
                           "(not a tar, or corrupt)")

    def _build(self, block: bytes, typeflag: str, size: int, offset: int,
               pax: dict[str, bytes], long_name: bytes | None,
               long_link: bytes | None) -> TarEntry:
        lim = self._limits
        magic = block[257:265]
        name = _cstr(block[0:100])
        if magic[:6] == b"ustar\0":  # POSIX ustar: prefix field; GNU uses it for times
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        linkname = _cstr(block[157:257])
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        num = parse_number
        e = TarEntry(
            name=_decode(name), type=typeflag,
            mode=num(block[100:108], what="mode", offset=offset) & 0o7777,
            uid=num(block[108:116], what="uid", offset=offset),
            gid=num(block[116:124], what="gid", offset=offset),
            size=size,
            mtime_ns=num(block[136:148], what="mtime", offset=offset) * 1_000_000_000,
            linkname=_decode(linkname),
            uname=_decode(_cstr(block[265:297])), gname=_decode(_cstr(block[297:329])),
        )
        if magic[:5] == b"ustar" and typeflag in (CHRTYPE, BLKTYPE):
            e.devmajor = num(block[329:337], what="devmajor", offset=offset)
            e.devminor = num(block[337:345], what="devminor", offset=offset)
        self._apply_pax(e, pax, offset)
        if e.type == _CONTTYPE:
            e.type = REGTYPE
        if e.type == _GNU_SPARSE or any(k.startswith("GNU.sparse.") for k in pax):
            raise NotSupported(f"tar entry {e.name!r}: GNU sparse files are not supported "
                               "in image layers", hint="rebuild the layer without --sparse")
        if e.type not in _FILE_TYPES:
            raise TarError(f"tar entry {e.name!r}: unsupported entry type {e.type!r}")
        if e.type == REGTYPE and e.name.endswith("/"):
            e.type = DIRTYPE  # pre-POSIX tars marked directories by a trailing slash
        if not e.name:
            raise TarError(f"tar header at offset {offset}: empty name")
        if "\0" in e.name or "\0" in e.linkname:
            raise TarError(f"tar entry {e.name[:80]!r}: NUL in a name")
        if len(e.name.encode("utf-8", "surrogateescape")) > lim.max_name or \
                len(e.linkname.encode("utf-8", "surrogateescape")) > lim.max_name:
            raise TarError(f"tar entry {e.name[:80]!r}...: name longer than {lim.max_name}")
        if e.uid < 0 or e.gid < 0 or e.uid > 0xFFFFFFFE or e.gid > 0xFFFFFFFE:
            raise TarError(f"tar entry {e.name!r}: uid/gid out of range")
        if e.size > lim.max_entry_size:
            raise TarError(f"tar entry {e.name!r}: size {e.size} over the limit")
        return e

    def _apply_pax(self, e: TarEntry, pax: dict[str, bytes], offset: int) -> None:
        lim = self._limits
        for key, raw in pax.items():
            if key == "path":
                e.name = _decode(raw)
            elif key == "linkpath":
                e.linkname = _decode(raw)
            elif key in ("size", "uid", "gid"):
                if not raw.isdigit():
                    raise TarError(f"tar entry {e.name!r}: bad PAX {key} {raw[:20]!r}")
                setattr(e, key, int(raw))
            elif key == "mtime":
                e.mtime_ns = _parse_pax_time(raw.decode("ascii", "replace"), entry=e.name)
            elif key == "uname":
                e.uname = _decode(raw)
            elif key == "gname":
                e.gname = _decode(raw)
            elif key == "SCHILY.devmajor" and raw.isdigit():
                e.devmajor = int(raw)
            elif key == "SCHILY.devminor" and raw.isdigit():
                e.devminor = int(raw)
            elif key.startswith(_SCHILY_XATTR):
                e.xattrs[key[len(_SCHILY_XATTR):]] = raw
            elif key.startswith(_LIBARCHIVE_XATTR):
                # libarchive: name URL-encoded, value base64 (bsdtar --xattrs).
                name = urllib.parse.unquote(key[len(_LIBARCHIVE_XATTR):])
                try:
                    e.xattrs[name] = base64.b64decode(raw, validate=True)
                except ValueError:
                    raise TarError(f"tar entry {e.name!r}: bad base64 in {key}") from None
        if len(e.xattrs) > lim.max_xattr_count:
            raise TarError(f"tar entry {e.name!r}: more than {lim.max_xattr_count} xattrs")
        for k, v in e.xattrs.items():
            if not k or len(v) > lim.max_xattr_value or len(k) > 255:
                raise TarError(f"tar entry {e.name!r}: xattr {k[:40]!r} is empty or too large")


# --- writing -----------------------------------------------------------------------

_USTAR_MAX_ID = 0o7777777
_USTAR_MAX_SIZE = 0o77777777777


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("utf-8", "surrogateescape") + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def _pax_time(ns: int) -> bytes:
    sign = "-" if ns < 0 else ""
    secs, frac = divmod(abs(ns), 1_000_000_000)
    text = f"{sign}{secs}.{frac:09d}".rstrip("0").rstrip(".")
    return text.encode()


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) fitting ustar's 155+100 bytes, or None if a PAX path is needed."""
    if len(name) <= 100:
        return b"", name
    for i in range(len(name) - 1, 0, -1):
        if name[i:i + 1] == b"/" and len(name) - i - 1 <= 100 and i <= 155:
            if len(name) - i - 1 > 0:
                return name[:i], name[i + 1:]
    return None


def _header_block(name: bytes, prefix: bytes, e: TarEntry, size: int, mtime: int,
                  linkname: bytes, typeflag: str) -> bytes:
    b = bytearray(BLOCK)
    b[0:len(name)] = name
    b[100:108] = _octal(e.mode & 0o7777, 8)
    b[108:116] = _octal(min(e.uid, _USTAR_MAX_ID), 8)
    b[116:124] = _octal(min(e.gid, _USTAR_MAX_ID), 8)
    b[124:136] = _octal(size, 12)
    b[136:148] = _octal(mtime, 12)
    b[148:156] = b" " * 8
    b[156] = ord(typeflag)
    b[157:157 + len(linkname)] = linkname
    b[257:265] = b"ustar\x0000"
    uname = e.uname.encode("utf-8", "surrogateescape")[:32]
    gname = e.gname.encode("utf-8", "surrogateescape")[:32]
    b[265:265 + len(uname)] = uname
    b[297:297 + len(gname)] = gname
    b[329:337] = _octal(e.devmajor, 8)
    b[337:345] = _octal(e.devminor, 8)
    b[345:345 + len(prefix)] = prefix
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)


def encode_header(e: TarEntry) -> bytes:
    """The header block(s) of `e`: ustar, preceded by a PAX header when a name, a number
    or an xattr does not fit ustar (the PAX format docker and containerd write). mtime is
    written in whole seconds unless it has a fraction (then PAX keeps it exactly)."""
    name = e.name.encode("utf-8", "surrogateescape")
    link = e.linkname.encode("utf-8", "surrogateescape")
    records: list[bytes] = []
    split = _split_ustar(name)
    if split is None:
        records.append(_pax_record("path", name))
        split = (b"", name[:100])
    if len(link) > 100:
        records.append(_pax_record("linkpath", link))
        link = link[:100]
    size = e.size if e.type == REGTYPE else 0
    for key, value in (("uid", e.uid), ("gid", e.gid)):
        if value > _USTAR_MAX_ID:
            records.append(_pax_record(key, str(value).encode()))
    if size > _USTAR_MAX_SIZE:
        records.append(_pax_record("size", str(size).encode()))
    secs, frac = divmod(e.mtime_ns, 1_000_000_000)
    if frac or secs < 0 or secs > _USTAR_MAX_SIZE:
        records.append(_pax_record("mtime", _pax_time(e.mtime_ns)))
    for key in sorted(e.xattrs):
        records.append(_pax_record(_SCHILY_XATTR + key, e.xattrs[key]))
    out = b""
    if records:
        data = b"".join(records)
        pax_entry = TarEntry(name="././@PaxHeader", type=_XHDTYPE, mode=0o644)
        out = _header_block(b"././@PaxHeader", b"", pax_entry, len(data),
                            max(0, min(secs, _USTAR_MAX_SIZE)), b"", _XHDTYPE)
        out += data + bytes(-len(data) % BLOCK)
    return out + _header_block(split[1], split[0], e, min(size, _USTAR_MAX_SIZE),
                               max(0, min(secs, _USTAR_MAX_SIZE)), link, e.type)


def end_of_archive() -> bytes:
    return bytes(2 * BLOCK)


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)
