"""Hostile layers: whatever the tar says, nothing outside the root is written, chmodded,
chowned, linked or deleted.

Each case unpacks into tmp/root next to tmp/outside, a directory holding a sentinel
file (and the case may plant decoys in the root first). Every case must either place its
entries safely inside the root or fail with one InvalidArgument naming the entry; after
it, `outside` must be exactly as before (names, contents, modes, owners, mtimes, link
counts) and nothing new may appear next to the root.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from hutch.archive.apply import apply_layer
from hutch.archive.compress import LayerTooLarge
from hutch.archive.tar import _pax_record
from hutch.errors import InvalidArgument

pytestmark = pytest.mark.integration


class Layout:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.outside = base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        self.sentinel = self.outside / "secret"
        self.sentinel.write_text("do not touch\n")
        os.chmod(self.sentinel, 0o600)
        os.utime(self.sentinel, ns=(10**18, 10**18))
        os.utime(self.outside, ns=(10**18, 10**18))
        self.before = self.state()

    def state(self) -> dict[str, tuple]:
        out = {"base": tuple(sorted(os.listdir(self.base)))}
        for dirpath, dirnames, filenames in os.walk(self.outside):
            for name in [".", *dirnames, *filenames]:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                digest = None
                if stat.S_ISREG(st.st_mode):
                    digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink,
                          st.st_size, digest, tuple(os.listxattr(p, follow_symlinks=False)))
        return out

    def assert_host_untouched(self) -> None:
        assert self.state() == self.before


@pytest.fixture
def lay(tmp_path: Path) -> Iterator[Layout]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    layout = Layout(tmp_path)
    yield layout
    layout.assert_host_untouched()


def tar_of(*members: tuple) -> bytes:
    """(name, type[, payload][, dict of TarInfo attributes]) -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            name, type_ = m[0], m[1]
            payload = m[2] if len(m) > 2 else None
            attrs = m[3] if len(m) > 3 else {}
            ti = tarfile.TarInfo(name)
            ti.type = type_
            ti.mode = 0o777
            for k, v in attrs.items():
                setattr(ti, k, v)
            if type_ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = payload
                tf.addfile(ti)
            elif type_ == tarfile.REGTYPE:
                data = payload or b""
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def apply(lay: Layout, data: bytes, **kw: object):
    return apply_layer(io.BytesIO(data), lay.root, **kw)


REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
CHR, FIFO = tarfile.CHRTYPE, tarfile.FIFOTYPE


def test_dotdot_names_are_refused_naming_the_entry(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match=r"'\.\./outside/secret'.*'\.\.'"):
        apply(lay, tar_of(("../outside/secret", REG, b"pwned")))
    with pytest.raises(InvalidArgument, match="'a/../../x'"):
        apply(lay, tar_of(("a/../../x", REG, b"pwned")))


def test_absolute_names_land_inside_the_root(lay: Layout) -> None:
    apply(lay, tar_of((str(lay.sentinel), REG, b"inside")))
    inside = lay.root / str(lay.sentinel).lstrip("/")
    assert inside.read_bytes() == b"inside"


def test_entry_through_an_absolute_symlink_stays_inside(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="'link/secret'.*dangling symlink"):
        apply(lay, tar_of(("link", SYM, str(lay.outside)), ("link/secret", REG, b"pwned")))


def test_entry_through_a_relative_escaping_symlink_stays_inside(lay: Layout) -> None:
    up = "../" * 20 + str(lay.outside).lstrip("/")
    # The target exists inside the root too: the entry goes there.
    (lay.root / str(lay.outside).lstrip("/")).mkdir(parents=True)
    apply(lay, tar_of(("link", SYM, up), ("link/secret", REG, b"inside")))
    assert (lay.root / str(lay.sentinel).lstrip("/")).read_bytes() == b"inside"


def test_symlink_to_root_then_entries_through_it(lay: Layout) -> None:
    apply(lay, tar_of(("up", SYM, "/"), ("up/etc/", DIR), ("up/etc/passwd", REG, b"x"),
                      ("up/up/up/f", REG, b"y")))
    assert (lay.root / "etc" / "passwd").read_bytes() == b"x"
    assert (lay.root / "f").read_bytes() == b"y"


def test_file_entry_replaces_a_symlink_instead_of_writing_through_it(lay: Layout) -> None:
    apply(lay, tar_of(("s", SYM, str(lay.sentinel))))
    apply(lay, tar_of(("s", REG, b"replaced", {"mode": 0o777, "uid": 4242})))
    assert not (lay.root / "s").is_symlink()
    assert (lay.root / "s").read_bytes() == b"replaced"


def test_dir_entry_replaces_a_symlink_instead_of_chmodding_its_target(lay: Layout) -> None:
    apply(lay, tar_of(("d", SYM, str(lay.outside)),
                      ("d", DIR, None, {"mode": 0o777, "uid": 4242, "gid": 4242})))
    assert (lay.root / "d").is_dir() and not (lay.root / "d").is_symlink()


def test_device_and_fifo_entries_replace_symlinks(lay: Layout) -> None:
    apply(lay, tar_of(("n", SYM, str(lay.sentinel)), ("f", SYM, str(lay.sentinel)),
                      ("n", CHR, None, {"devmajor": 1, "devminor": 3}), ("f", FIFO)))
    assert stat.S_ISCHR(os.lstat(lay.root / "n").st_mode)
    assert stat.S_ISFIFO(os.lstat(lay.root / "f").st_mode)


def test_device_through_a_symlinked_dir_stays_inside(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="'dev/null'"):
        apply(lay, tar_of(("dev", SYM, str(lay.outside)),
                          ("dev/null", CHR, None, {"devmajor": 1, "devminor": 3})))


def test_hardlink_to_a_host_path_is_refused(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="'h'.*does not exist"):
        apply(lay, tar_of(("h", LNK, str(lay.sentinel))))
    with pytest.raises(InvalidArgument, match="'h2'.*'\\.\\.'"):
        apply(lay, tar_of(("h2", LNK, "../outside/secret")))


def test_hardlink_to_a_host_path_links_the_roots_copy_if_any(lay: Layout) -> None:
    decoy = lay.root / str(lay.sentinel).lstrip("/")
    decoy.parent.mkdir(parents=True)
    decoy.write_text("decoy")
    apply(lay, tar_of(("h", LNK, str(lay.sentinel))))
    assert os.stat(lay.root / "h").st_ino == os.stat(decoy).st_ino


def test_hardlink_through_a_symlink_is_resolved_inside(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="'h'.*does not exist"):
        apply(lay, tar_of(("s", SYM, str(lay.outside)), ("h", LNK, "s/secret")))


def test_hardlink_to_a_symlink_links_the_symlink_not_its_target(lay: Layout) -> None:
    apply(lay, tar_of(("s", SYM, str(lay.sentinel)), ("h", LNK, "s"),
                      ("h", REG, b"overwrite", {"mode": 0o4777})))
    assert os.readlink(lay.root / "s") == str(lay.sentinel)
    assert (lay.root / "h").read_bytes() == b"overwrite"


def test_whiteouts_cannot_reach_outside(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="'\\.\\./outside/\\.wh\\.secret'"):
        apply(lay, tar_of(("../outside/.wh.secret", REG, b"")))
    apply(lay, tar_of(("link", SYM, str(lay.outside)),
                      ("link/.wh.secret", REG, b""),
                      ("link/.wh..wh..opq", REG, b""),
                      ("abs", SYM, "/"), ("abs/.wh.root", REG, b"")))
    assert (lay.root / "link").is_symlink()
    with pytest.raises(InvalidArgument, match="invalid whiteout"):
        apply(lay, tar_of((".wh..", REG, b"")))


def test_opaque_dir_through_a_symlink_only_clears_inside(lay: Layout) -> None:
    inner = lay.root / str(lay.outside).lstrip("/")
    inner.mkdir(parents=True)
    (inner / "lower").write_text("l")
    apply(lay, tar_of(("o", SYM, str(lay.outside)), ("o/.wh..wh..opq", REG, b"")))
    assert list(inner.iterdir()) == []


def test_symlink_loops_are_refused(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="'a/x'"):
        apply(lay, tar_of(("a", SYM, "b"), ("b", SYM, "a"), ("a/x", REG, b"")))


def test_root_cannot_be_replaced_by_a_symlink(lay: Layout) -> None:
    with pytest.raises(InvalidArgument, match="root can only be a directory"):
        apply(lay, tar_of((".", SYM, str(lay.outside))))
    assert lay.root.is_dir() and not lay.root.is_symlink()


def test_overlay_xattrs_in_a_layer_are_not_applied(lay: Layout) -> None:
    result = apply(lay, tar_of(("d", DIR, None, {"pax_headers": {
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
        "SCHILY.xattr.user.overlay.opaque": "y"}})))
    assert os.listxattr(lay.root / "d") == []
    assert len(result.warnings) == 2


def test_decompression_bomb_stops_at_max_bytes(lay: Layout) -> None:
    body = tar_of(("zeros", REG, bytes(40 << 20)))
    bomb = zstandard.ZstdCompressor(level=3).compress(body)
    with pytest.raises(LayerTooLarge):
        apply_layer(io.BytesIO(bomb), lay.root, max_bytes=8 << 20)
    written = os.stat(lay.root / "zeros").st_size
    assert written <= 9 << 20


def test_truncated_layer_is_an_error_naming_the_entry(lay: Layout) -> None:
    data = tar_of(("big", REG, os.urandom(5000)))[:512 + 3000]
    with pytest.raises(InvalidArgument, match="'big' is truncated"):
        apply(lay, data)


def test_hostile_names_in_headers_crafted_by_hand(lay: Layout) -> None:
    """A header tarfile would refuse to write: NUL inside the PAX path."""
    rec = _pax_record("path", b"ok\x00../../outside/secret")
    hdr = bytearray(512)
    hdr[0:9] = b"PaxHeader"
    hdr[100:108] = b"0000644\0"
    hdr[124:136] = b"%011o\0" % len(rec)
    hdr[136:148] = b"%011o\0" % 0
    hdr[156:157] = b"x"
    hdr[257:265] = b"ustar\x0000"
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    data = bytes(hdr) + rec + bytes(-len(rec) % 512) + tar_of(("f", REG, b"x"))
    with pytest.raises(InvalidArgument, match="NUL"):
        apply(lay, data)
