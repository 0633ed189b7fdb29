"""The layer tar parser, decompression limits and the tar writer, on crafted archives.

Well-formed tars are written with Python's tarfile (ustar, GNU and PAX formats); hostile
and truncated ones are crafted by hand, header byte by header byte.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import lzma
import os
import tarfile

import pytest
import zstandard

from hutch.archive import compress, tar
from hutch.archive.apply import xattr_skip_reason
from hutch.archive.diff import write_tar
from hutch.errors import InvalidArgument, NotSupported

pytestmark = pytest.mark.unit


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]],
             fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name: str, type_: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = type_
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def read_all(data: bytes, **kw: object) -> list[tuple[tar.TarEntry, bytes]]:
    reader = tar.TarReader(io.BytesIO(data), **kw)
    return [(e, reader.read()) for e in reader]


def header(name: bytes, *, size: int = 0, typeflag: bytes = b"0", mode: int = 0o644,
           uid_field: bytes | None = None, size_field: bytes | None = None,
           mtime_field: bytes | None = None, linkname: bytes = b"",
           magic: bytes = b"ustar\x0000", checksum: int | None = None) -> bytes:
    """One hand-made header block."""
    b = bytearray(512)
    b[0:len(name)] = name
    b[100:108] = b"%07o\0" % mode
    b[108:116] = uid_field if uid_field is not None else b"%07o\0" % 0
    b[116:124] = b"%07o\0" % 0
    b[124:136] = size_field if size_field is not None else b"%011o\0" % size
    b[136:148] = mtime_field if mtime_field is not None else b"%011o\0" % 1_700_000_000
    b[156:157] = typeflag
    b[157:157 + len(linkname)] = linkname
    b[257:265] = magic
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % (sum(b) if checksum is None else checksum)
    return bytes(b)


def pax_block(records: dict[str, bytes]) -> bytes:
    data = b"".join(tar._pax_record(k, v) for k, v in records.items())
    return header(b"PaxHeader", size=len(data), typeflag=b"x") + data + tar.padding(len(data))


# --- well-formed archives --------------------------------------------------------------

@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reads_every_entry_type_in_each_format(fmt: int) -> None:
    data = make_tar([
        (info("dir/", tarfile.DIRTYPE, mode=0o1777, uid=1, gid=2, mtime=1_600_000_000), None),
        (info("dir/file", mode=0o4755, uid=1000, gid=100, uname="u", gname="g"), b"hello"),
        (info("dir/sym", tarfile.SYMTYPE, linkname="../etc/x"), None),
        (info("dir/hard", tarfile.LNKTYPE, linkname="dir/file"), None),
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        (info("dev/loop0", tarfile.BLKTYPE, devmajor=7, devminor=0), None),
        (info("fifo", tarfile.FIFOTYPE), None),
    ], fmt)
    got = read_all(data)
    by_name = {e.name: (e, d) for e, d in got}
    assert [e.name for e, _ in got] == ["dir/", "dir/file", "dir/sym", "dir/hard", "dev/null",
                                        "dev/loop0", "fifo"]
    d, _ = by_name["dir/"]
    assert (d.type, d.mode, d.uid, d.gid, d.mtime_ns) == (tar.DIRTYPE, 0o1777, 1, 2,
                                                           1_600_000_000 * 10**9)
    f, body = by_name["dir/file"]
    assert (f.type, f.mode, f.uid, f.gid, f.size, body) == (tar.REGTYPE, 0o4755, 1000, 100,
                                                             5, b"hello")
    assert (f.uname, f.gname) == ("u", "g")
    assert by_name["dir/sym"][0].linkname == "../etc/x"
    assert by_name["dir/hard"][0].type == tar.LNKTYPE
    null = by_name["dev/null"][0]
    assert (null.type, null.devmajor, null.devminor) == (tar.CHRTYPE, 1, 3)
    assert by_name["dev/loop0"][0].devmajor == 7
    assert by_name["fifo"][0].type == tar.FIFOTYPE


def test_gnu_long_names_and_long_link_names() -> None:
    long_name = "d/" + "n" * 300
    long_link = "t/" + "l" * 300
    data = make_tar([(info(long_name), b"x"),
                     (info("ln", tarfile.SYMTYPE, linkname=long_link), None)],
                    tarfile.GNU_FORMAT)
    assert b"././@LongLink" in data
    got = read_all(data)
    assert got[0][0].name == long_name and got[0][1] == b"x"
    assert got[1][0].linkname == long_link


def test_pax_records_override_the_ustar_fields() -> None:
    ti = info("p" * 200 + "/file", uid=3_000_000_000, gid=5)
    ti.mtime = 1_700_000_000.25
    ti.pax_headers = {"SCHILY.xattr.user.comment": "hi",
                      "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
    data = make_tar([(ti, b"data")])
    (e, body), = read_all(data)
    assert e.name == "p" * 200 + "/file"
    assert e.uid == 3_000_000_000
    assert e.mtime_ns == 1_700_000_000_250_000_000
    assert e.xattrs == {"user.comment": b"hi", "security.capability": b"\x01\x00\x00\x02"}
    assert body == b"data"


def test_pax_mtime_keeps_nanoseconds_and_negative_times() -> None:
    for text, ns in ((b"1.000000001", 1_000_000_001), (b"-1.5", -1_500_000_000),
                     (b"42", 42 * 10**9)):
        data = pax_block({"mtime": text}) + header(b"f")
        (e, _), = read_all(data)
        assert e.mtime_ns == ns


def test_libarchive_xattrs_are_url_and_base64_decoded() -> None:
    value = b"\x00\xffbinary"
    data = pax_block({"LIBARCHIVE.xattr.user.a%20b": base64.b64encode(value)}) + header(b"f")
    (e, _), = read_all(data)
    assert e.xattrs == {"user.a b": value}


def test_base256_numbers_are_read() -> None:
    uid = b"\x80" + (2**40).to_bytes(7, "big")
    size = b"\x80" + (5).to_bytes(11, "big")
    mtime = b"\xff" * 11 + b"\xfe"  # -2 in two's complement
    data = header(b"big", uid_field=uid, size_field=size, mtime_field=mtime) + b"12345"
    data += bytes(507)
    with pytest.raises(InvalidArgument, match="uid/gid out of range"):
        read_all(data)
    data = header(b"big", size_field=size, mtime_field=mtime) + b"12345" + bytes(507)
    (e, body), = read_all(data)
    assert (e.size, e.mtime_ns, body) == (5, -2 * 10**9, b"12345")


def test_tarfile_gnu_base256_uid_is_read() -> None:
    data = make_tar([(info("f", uid=0o7777777 + 1), b"")], tarfile.GNU_FORMAT)
    (e, _), = read_all(data)
    assert e.uid == 0o7777777 + 1


def test_unread_data_is_skipped_and_partial_reads_work() -> None:
    data = make_tar([(info("a"), b"A" * 3000), (info("b"), b"B" * 10)])
    reader = tar.TarReader(io.BytesIO(data))
    a = reader.next()
    assert a.name == "a" and reader.read(7) == b"AAAAAAA"
    b = reader.next()
    assert b.name == "b" and reader.read() == b"B" * 10 and reader.read() == b""
    assert reader.next() is None and reader.ended


def test_header_only_types_ignore_their_size_field_like_go() -> None:
    data = header(b"d/", typeflag=b"5", size=100) + header(b"f", size=1) + b"x" + bytes(511)
    got = read_all(data)
    assert [(e.name, e.size, d) for e, d in got] == [("d/", 0, b""), ("f", 1, b"x")]


def test_old_style_directory_with_trailing_slash() -> None:
    (e, _), = read_all(header(b"olddir/", magic=bytes(8)))
    assert e.type == tar.DIRTYPE


def test_contiguous_type_is_a_regular_file() -> None:
    (e, d), = read_all(header(b"c", typeflag=b"7", size=2) + b"ok" + bytes(510))
    assert e.type == tar.REGTYPE and d == b"ok"


def test_global_pax_header_is_skipped() -> None:
    g = tar._pax_record("comment", b"git sha")
    data = header(b"g", typeflag=b"g", size=len(g)) + g + tar.padding(len(g)) + header(b"f")
    assert [e.name for e, _ in read_all(data)] == ["f"]


def test_hostile_names_are_parsed_verbatim_the_parser_only_parses() -> None:
    data = make_tar([(info("../../etc/passwd"), b"x"), (info("/abs/path"), b"y"),
                     (info("h", tarfile.LNKTYPE, linkname="/etc/shadow"), None)])
    assert [e.name for e, _ in read_all(data)] == ["../../etc/passwd", "/abs/path", "h"]


# --- umoci's truncated tars and truly truncated ones ---------------------------------

def without_end(data: bytes, last_size: int) -> bytes:
    """Cut the end-of-archive blocks and the last entry's padding (umoci 0.4.7)."""
    body = data.rstrip(b"\0")
    # rstrip may eat trailing NULs of the data itself; the test data never ends in NUL.
    assert len(body) % 512 == last_size % 512
    return body


def test_stream_ending_right_after_the_last_data_is_accepted() -> None:
    data = without_end(make_tar([(info("a"), b"A" * 700), (info("last"), b"xyz")]), 3)
    with pytest.raises(tarfile.ReadError):  # what Python's tarfile does with it
        list(tarfile.open(fileobj=io.BytesIO(data)))
    got = read_all(data)
    assert [(e.name, d) for e, d in got] == [("a", b"A" * 700), ("last", b"xyz")]


def test_stream_without_end_blocks_after_padding_is_accepted() -> None:
    data = make_tar([(info("a"), b"abc")])[:1024]
    assert [e.name for e, _ in read_all(data)] == ["a"]
    one_zero_block = make_tar([(info("a"), b"abc")])[:1536]
    assert [e.name for e, _ in read_all(one_zero_block)] == ["a"]


def test_truncated_entry_data_names_the_entry() -> None:
    data = make_tar([(info("victim"), b"v" * 1000)])[:512 + 600]
    with pytest.raises(tar.TarError, match="'victim' is truncated.*600 of 1000"):
        read_all(data)
    reader = tar.TarReader(io.BytesIO(data))
    reader.next()
    with pytest.raises(tar.TarError, match="victim"):
        reader.next()  # skipping the unread data hits the end too


def test_truncated_header_is_an_error() -> None:
    data = make_tar([(info("a"), b"abc")])[:1024] + b"\x01" * 100
    with pytest.raises(tar.TarError, match="truncated inside a header"):
        read_all(data)


def test_pax_header_without_entry_is_an_error() -> None:
    with pytest.raises(tar.TarError, match="extended header .* no entry"):
        read_all(pax_block({"path": b"x"}))


def test_checksum_mismatch_is_an_error() -> None:
    with pytest.raises(tar.TarError, match="checksum"):
        read_all(header(b"f", checksum=1))


def test_garbage_is_not_a_tar() -> None:
    with pytest.raises(tar.TarError):
        read_all(os.urandom(512))


# --- limits and refusals --------------------------------------------------------------

def test_gnu_sparse_entries_are_refused() -> None:
    with pytest.raises(NotSupported, match="sparse"):
        read_all(header(b"s", typeflag=b"S", magic=b"ustar  \0"))
    with pytest.raises(NotSupported, match="sparse"):
        read_all(pax_block({"GNU.sparse.major": b"1"}) + header(b"s"))


def test_unknown_entry_type_is_refused() -> None:
    with pytest.raises(tar.TarError, match="unsupported entry type 'Q'"):
        read_all(header(b"q", typeflag=b"Q"))


def test_header_count_limit() -> None:
    data = make_tar([(info(f"f{i}"), b"") for i in range(5)])
    with pytest.raises(tar.TarError, match="more than 3 headers"):
        read_all(data, limits=tar.Limits(max_entries=3))


def test_pax_header_size_limit_is_checked_before_reading() -> None:
    data = header(b"PaxHeader", typeflag=b"x", size=10**9)
    with pytest.raises(tar.TarError, match=r"PAX header .*\(limit 1048576\)"):
        read_all(data)


def test_name_length_limit() -> None:
    data = make_tar([(info("x" * 5000), b"")])
    with pytest.raises(tar.TarError, match="name longer than 4096"):
        read_all(data)
    long_gnu = header(b"././@LongLink", typeflag=b"L", size=10**6)
    with pytest.raises(tar.TarError, match=r"GNU long name .*\(limit"):
        read_all(long_gnu)


def test_xattr_limits() -> None:
    many = {f"SCHILY.xattr.user.{i}": b"v" for i in range(5)}
    with pytest.raises(tar.TarError, match="more than 4 xattrs"):
        read_all(pax_block(many) + header(b"f"), limits=tar.Limits(max_xattr_count=4))


@pytest.mark.parametrize("record", [b"99 path=x\n", b"5 p=x\n", b"x path=y\n", b"8 path\n",
                                    b"3 =\n"])
def test_malformed_pax_records_are_errors(record: bytes) -> None:
    data = header(b"PaxHeader", typeflag=b"x", size=len(record)) + record
    data += tar.padding(len(record)) + header(b"f")
    with pytest.raises(tar.TarError, match="PAX"):
        read_all(data)


def test_nul_in_a_pax_path_is_refused() -> None:
    with pytest.raises(tar.TarError, match="NUL"):
        read_all(pax_block({"path": b"a\0b"}) + header(b"f"))


# --- the writer ----------------------------------------------------------------------

def test_encode_header_round_trips_through_tarfile_and_our_reader() -> None:
    e = tar.TarEntry(name="a/" + "long" * 60 + "/f", type=tar.REGTYPE, mode=0o6755,
                     uid=4_000_000_000, gid=7, size=3, mtime_ns=1_700_000_000_123_000_000,
                     xattrs={"security.capability": b"\x01\x02\xff", "user.x": b"y"})
    link = tar.TarEntry(name="l", type=tar.SYMTYPE, linkname="t" * 150, mtime_ns=10**9)
    data = (tar.encode_header(e) + b"abc" + tar.padding(3) + tar.encode_header(link)
            + tar.end_of_archive())
    members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    assert members[0].name == e.name and members[0].uid == e.uid
    assert members[0].mode == 0o6755 and members[1].linkname == "t" * 150
    got = read_all(data)
    assert got[0][0].xattrs == e.xattrs and got[0][1] == b"abc"
    assert got[0][0].mtime_ns == e.mtime_ns and got[0][0].uid == e.uid
    assert got[1][0].linkname == link.linkname


def test_encode_header_uses_ustar_prefix_without_pax_when_it_fits() -> None:
    name = "d" * 120 + "/" + "f" * 90
    data = tar.encode_header(tar.TarEntry(name=name, type=tar.REGTYPE))
    assert len(data) == 512  # no PAX header
    (e, _), = read_all(data)
    assert e.name == name


def test_non_utf8_names_round_trip() -> None:
    name = os.fsdecode(b"caf\xe9")
    data = tar.encode_header(tar.TarEntry(name=name, type=tar.REGTYPE))
    (e, _), = read_all(data)
    assert os.fsencode(e.name) == b"caf\xe9"


def test_write_tar_is_deterministic_sorted_and_keeps_hardlinks(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "b").mkdir(parents=True)
    (root / "b" / "z").write_text("z")
    (root / "a").write_text("a")
    os.link(root / "a", root / "c")
    (root / "s").symlink_to("a")
    (root / "skip").mkdir()
    (root / "skip" / "x").write_text("x")
    os.setxattr(root / "a", "user.k", b"v")
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        write_tar(root, buf, exclude=["skip"])
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    got = read_all(outs[0])
    assert [e.name for e, _ in got] == ["a", "b/", "b/z", "c", "s"]
    assert got[0][0].xattrs == {"user.k": b"v"} and got[0][1] == b"a"
    assert got[3][0].type == tar.LNKTYPE and got[3][0].linkname == "a"
    assert got[4][0].type == tar.SYMTYPE


# --- decompression ---------------------------------------------------------------------

TAR = make_tar([(info("f"), b"payload" * 100)])
TAR_DIFF_ID = "sha256:" + hashlib.sha256(TAR).hexdigest()


@pytest.mark.parametrize("kind,blob", [
    ("none", TAR),
    ("gzip", gzip.compress(TAR)),
    ("gzip", gzip.compress(TAR[:1000]) + gzip.compress(TAR[1000:])),  # multi-member
    ("zstd", zstandard.ZstdCompressor().compress(TAR)),
    ("zstd", zstandard.ZstdCompressor().compress(TAR[:700])
     + zstandard.ZstdCompressor().compress(TAR[700:])),  # multi-frame
])
def test_open_layer_detects_compression_and_computes_the_diff_id(kind: str,
                                                                 blob: bytes) -> None:
    layer = compress.open_layer(io.BytesIO(blob))
    out = b""
    while chunk := layer.read(333):
        out += chunk
    assert layer.compression == kind
    assert out == TAR
    assert layer.diff_id == TAR_DIFF_ID and layer.size == len(TAR)
    assert layer.compressed_size == len(blob)


def test_other_compressions_are_refused_clearly() -> None:
    with pytest.raises(NotSupported, match="xz"):
        compress.open_layer(io.BytesIO(lzma.compress(TAR)))
    with pytest.raises(NotSupported, match="bzip2"):
        compress.open_layer(io.BytesIO(b"BZh91AY&SY"))


def test_truncated_and_corrupt_gzip_are_errors() -> None:
    blob = gzip.compress(TAR)
    with pytest.raises(InvalidArgument, match="truncated"):
        compress.open_layer(io.BytesIO(blob[:-20])).drain()
    with pytest.raises(InvalidArgument, match="gzip"):
        compress.open_layer(io.BytesIO(blob + b"garbage!")).drain()


def test_max_bytes_stops_a_decompression_bomb_early() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(32 << 20))
    layer = compress.open_layer(io.BytesIO(bomb), max_bytes=1 << 20)
    with pytest.raises(compress.LayerTooLarge, match="larger than 1048576"):
        layer.drain()
    assert layer.size <= (1 << 20) + (1 << 20)  # at most one chunk past the limit


def test_ratio_guard_stops_an_implausible_inflation() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(32 << 20))
    assert len(bomb) * 2000 < 32 << 20
    layer = compress.open_layer(io.BytesIO(bomb), ratio_floor=1 << 20)
    with pytest.raises(compress.LayerTooLarge, match="2000:1"):
        layer.drain()
    # gzip cannot go past ~1032:1, so the default guard never refuses a gzip layer.
    zeros = gzip.compress(bytes(8 << 20), 9)
    ok = compress.open_layer(io.BytesIO(zeros), ratio_floor=1 << 20)
    ok.drain()
    assert ok.size == 8 << 20


def test_zstd_window_over_the_limit_is_refused() -> None:
    # Streaming (unknown size) keeps the declared 256 MiB window in the frame header.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=28)
    c = zstandard.ZstdCompressor(compression_params=params).compressobj()
    blob = c.compress(os.urandom(1000)) + c.flush()
    with pytest.raises(InvalidArgument, match="zstd layer cannot be decoded.*memory"):
        compress.open_layer(io.BytesIO(blob)).drain()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_layer_writer_reports_blob_digest_size_and_diff_id(kind: str) -> None:
    out = io.BytesIO()
    result = compress.compress_layer(io.BytesIO(TAR), out, kind)
    blob = out.getvalue()
    assert result.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.size == len(blob)
    assert result.diff_id == TAR_DIFF_ID and result.uncompressed_size == len(TAR)
    layer = compress.open_layer(io.BytesIO(blob))
    layer.drain()
    assert layer.diff_id == TAR_DIFF_ID and layer.compression == kind


def test_gzip_output_is_deterministic() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    compress.compress_layer(io.BytesIO(TAR), a, "gzip")
    compress.compress_layer(io.BytesIO(TAR), b, "gzip")
    assert a.getvalue() == b.getvalue()


def test_unknown_compression_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="unknown compression"):
        compress.LayerWriter(io.BytesIO(), "brotli")


# --- xattr policy ---------------------------------------------------------------------

@pytest.mark.parametrize("name,kept", [
    ("user.mime_type", True), ("security.capability", True), ("security.ima", True),
    ("system.posix_acl_access", True), ("trusted.overlay.opaque", False),
    ("trusted.foo", False), ("user.overlay.redirect", False), ("security.selinux", False),
    ("weird.ns", False),
])
def test_xattr_policy(name: str, kept: bool) -> None:
    assert (xattr_skip_reason(name) is None) is kept
