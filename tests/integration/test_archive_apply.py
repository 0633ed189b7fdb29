"""apply_layer against umoci (the reference unpacker), and the diff writers.

Images are built with umoci from trees made here (busybox-static, and a debootstrap-like
tree with devices, hard links, symlinks, xattrs, setuid files and a sparse big file);
`umoci unpack` gives the reference rootfs, apply_layer our own, and the two are compared
file by file: type, mode, owner, size, content hash, link target, device numbers, xattrs,
mtime and hard-link groups. umoci 0.4.7 writes layer tars without padding and
end-of-archive blocks: the tests check that Python's tarfile refuses them and we do not.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bundles import build_busybox_rootfs

from hutch.archive.apply import apply_layer
from hutch.archive.compress import LayerWriter, open_layer
from hutch.archive.diff import write_diff, write_tar
from hutch.errors import InvalidArgument

pytestmark = pytest.mark.integration

UMOCI = shutil.which("umoci")
CAP_NET_RAW = (b"\x01\x00\x00\x02" + (1 << 13).to_bytes(4, "little") + bytes(4)
               + bytes(8))  # vfs_cap_data v2, permitted=CAP_NET_RAW, effective


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    yield tmp_path


def need_umoci() -> str:
    if not UMOCI:
        pytest.skip("needs umoci (apt-get install umoci)")
    return UMOCI


# --- trees ----------------------------------------------------------------------------

def build_debootstrap_like(root: Path) -> Path:
    """What a distribution rootfs holds that a layer must carry exactly."""
    for d in ("bin", "dev", "etc/ssl", "tmp", "usr/bin", "usr/lib/x86_64", "var/log",
              "root", "home/user"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "lib").symlink_to("usr/lib")             # merged-/usr style
    (root / "etc" / "mtab").symlink_to("/proc/self/mounts")  # absolute, dangling here
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chown(root / "etc" / "shadow", 0, 42)
    os.chmod(root / "etc" / "shadow", 0o640)
    # hard links: three names, one inode
    (root / "usr" / "bin" / "perl").write_bytes(b"#!perl\n" * 100)
    os.link(root / "usr" / "bin" / "perl", root / "usr" / "bin" / "perl5.36")
    os.link(root / "usr" / "bin" / "perl", root / "usr" / "bin" / "perl-again")
    # setuid/setgid after a chown (chown clears them), file capabilities, user xattrs
    su = root / "usr" / "bin" / "su"
    su.write_bytes(b"\x7fELF-su")
    os.chown(su, 0, 0)
    os.chmod(su, 0o4755)
    wall = root / "usr" / "bin" / "wall"
    wall.write_bytes(b"\x7fELF-wall")
    os.chown(wall, 0, 5)
    os.chmod(wall, 0o2755)
    ping = root / "bin" / "ping"
    ping.write_bytes(b"\x7fELF-ping")
    os.setxattr(ping, "security.capability", CAP_NET_RAW)
    os.setxattr(root / "etc" / "passwd", "user.comment", b"hello \x00\xff binary")
    # owners other than root
    os.chown(root / "home" / "user", 1000, 1000)
    (root / "home" / "user" / ".profile").write_text("PS1=$ \n")
    os.chown(root / "home" / "user" / ".profile", 1000, 1000)
    os.lchown(root / "lib", 7, 8)
    # devices and a fifo
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev" / "loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.chown(root / "dev" / "loop0", 0, 6)
    os.mkfifo(root / "dev" / "initctl", 0o600)
    # a sparse-ish big file, an empty file, odd sizes, long and odd names
    with open(root / "var" / "log" / "lastlog", "wb") as f:
        f.truncate(24 << 20)
        f.seek(5 << 20)
        f.write(b"data in the middle")
    (root / "var" / "log" / "empty").write_bytes(b"")
    deep = root / "usr" / "lib" / "x86_64" / ("d" * 90) / ("e" * 90) / ("f" * 90)
    deep.mkdir(parents=True)
    (deep / ("n" * 150)).write_bytes(os.urandom(1234))
    (root / "etc" / "ssl" / "ünïcode name").write_text("u")
    (root / "etc" / "ssl" / "with space").write_text("s")
    # an odd-sized regular file last, so umoci's missing padding shows
    (root / "zzz-last").write_bytes(b"xyz")
    # mtimes on files, symlinks and directories (children first); whole seconds, as
    # umoci rounds them (fractions are covered by the parser's tests)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(1_600_000_123 * 10**9,) * 2,
                     follow_symlinks=False)
    os.utime(root, ns=(1_600_000_000 * 10**9,) * 2)
    return root


# --- comparison -----------------------------------------------------------------------

def snapshot(root: Path, *, mtime_dirs: bool = True) -> dict[str, tuple]:
    """path -> everything a container could observe about it."""
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISREG(kind):
                with open(path, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(kind):
                extra = os.readlink(path)
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            xattrs = {}
            for x in sorted(os.listxattr(path, follow_symlinks=False)):
                xattrs[x] = os.getxattr(path, x, follow_symlinks=False)
            link_group = None
            if stat.S_ISREG(kind) and st.st_nlink > 1:
                link_group = inodes.setdefault((st.st_dev, st.st_ino), rel)
            mtime = st.st_mtime_ns // 10**9  # tars hold seconds unless PAX says more
            if stat.S_ISDIR(kind) and not mtime_dirs:
                mtime = None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_size if stat.S_ISREG(kind) else None, extra,
                        tuple(xattrs.items()), mtime, link_group)
    return out


def assert_same_tree(ours: Path, reference: Path, **kw: bool) -> None:
    a, b = snapshot(ours, **kw), snapshot(reference, **kw)
    assert sorted(a) == sorted(b)
    diffs = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diffs, f"{len(diffs)} entries differ (ours, umoci): {diffs}"


# --- umoci ----------------------------------------------------------------------------

def umoci(*args: str | Path) -> None:
    subprocess.run([need_umoci(), *map(str, args)], check=True, capture_output=True)


class Image:
    """An OCI layout with one tag, built layer by layer with umoci."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ref = f"{path}:t"
        umoci("init", "--layout", path)
        umoci("new", "--image", self.ref)

    def layers(self) -> list[Path]:
        index = json.loads((self.path / "index.json").read_text())
        manifest = self.blob(index["manifests"][0]["digest"])
        return [self.blob_path(layer["digest"])
                for layer in json.loads(manifest)["layers"]]

    def diff_ids(self) -> list[str]:
        index = json.loads((self.path / "index.json").read_text())
        manifest = json.loads(self.blob(index["manifests"][0]["digest"]))
        return json.loads(self.blob(manifest["config"]["digest"]))["rootfs"]["diff_ids"]

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def unpack(self, dest: Path) -> Path:
        umoci("unpack", "--image", self.ref, dest)
        return dest / "rootfs"

    def apply_all(self, root: Path) -> list:
        root.mkdir(exist_ok=True)
        results = []
        for layer in self.layers():
            with open(layer, "rb") as f:
                results.append(apply_layer(f, root))
        assert [r.diff_id for r in results] == self.diff_ids()
        return results


# --- tests ----------------------------------------------------------------------------

def test_busybox_layer_unpacks_like_umoci(work: Path) -> None:
    tree = build_busybox_rootfs(work / "tree")
    img = Image(work / "oci")
    umoci("insert", "--image", img.ref, tree, "/")
    reference = img.unpack(work / "bundle")
    (result,) = img.apply_all(work / "ours")
    assert result.warnings == []
    assert result.entries > 250
    assert_same_tree(work / "ours", reference)


def test_debootstrap_like_layer_unpacks_like_umoci_and_umoci_tars_are_accepted(
        work: Path) -> None:
    tree = build_debootstrap_like(work / "tree")
    img = Image(work / "oci")
    umoci("insert", "--image", img.ref, tree, "/")
    (layer,) = img.layers()
    raw = gzip.decompress(layer.read_bytes())
    assert raw[-1024:] != bytes(1024), "umoci wrote end-of-archive blocks after all?"
    with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
        list(tarfile.open(fileobj=io.BytesIO(raw)))
    reference = img.unpack(work / "bundle")
    (result,) = img.apply_all(work / "ours")
    assert result.size == len(raw)
    assert_same_tree(work / "ours", reference)
    # and the tree itself survived the round trip through umoci and us
    assert_same_tree(work / "ours", tree)
    # the sparse file stayed sparse
    st = os.stat(work / "ours" / "var" / "log" / "lastlog")
    assert st.st_size == 24 << 20 and st.st_blocks * 512 < 1 << 20


def test_whiteouts_and_opaque_dirs_across_layers_match_umoci(work: Path) -> None:
    tree = build_debootstrap_like(work / "tree")
    img = Image(work / "oci")
    umoci("insert", "--image", img.ref, tree, "/")
    umoci("insert", "--image", img.ref, "--whiteout", "/etc/passwd")
    umoci("insert", "--image", img.ref, "--whiteout", "/usr/lib/x86_64")
    newlog = work / "newlog"
    newlog.mkdir()
    (newlog / "fresh").write_text("only this\n")
    umoci("insert", "--image", img.ref, "--opaque", newlog, "/var/log")
    # umoci repack: a layer computed from a changed rootfs (whiteouts + changes)
    bundle = work / "edit"
    rootfs = img.unpack(bundle)
    shutil.rmtree(rootfs / "home" / "user")
    (rootfs / "bin" / "ping").unlink()
    (rootfs / "bin" / "ping").mkdir()  # file -> directory
    (rootfs / "etc" / "ssl" / "with space").unlink()
    (rootfs / "etc" / "ssl" / "with space").symlink_to("ünïcode name")
    (rootfs / "new-file").write_text("added\n")
    umoci("repack", "--image", img.ref, bundle)
    reference = img.unpack(work / "bundle")
    assert not (reference / "etc" / "passwd").exists()
    assert sorted(os.listdir(reference / "var" / "log")) == ["fresh"]
    results = img.apply_all(work / "ours")
    assert len(results) == 5
    # umoci repack touches directory mtimes it walked; compare those too
    assert_same_tree(work / "ours", reference)


def make_tar(members: list[tuple[str, bytes, str | bytes | None]]) -> bytes:
    """(name, type, data or link target) -> a plain tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, type_, payload in members:
            ti = tarfile.TarInfo(name)
            ti.type = type_
            ti.mtime = 1_700_000_000
            ti.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
            if type_ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = payload
                tf.addfile(ti)
            elif type_ == tarfile.REGTYPE:
                data = payload or b""
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                if type_ == tarfile.CHRTYPE:
                    ti.devmajor, ti.devminor = 1, 3  # 0:0 needs no CAP_MKNOD
                tf.addfile(ti)
    return buf.getvalue()


def apply_bytes(data: bytes, root: Path, **kw: object):
    return apply_layer(io.BytesIO(data), root, **kw)


def test_a_whiteout_never_hides_what_its_own_layer_adds(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    apply_bytes(make_tar([("d/", tarfile.DIRTYPE, None), ("d/old", tarfile.REGTYPE, b"o"),
                          ("d/keep", tarfile.REGTYPE, b"k"),
                          ("e/", tarfile.DIRTYPE, None), ("e/sub/", tarfile.DIRTYPE, None),
                          ("e/sub/lower", tarfile.REGTYPE, b"l")]), root)
    # Opaque marker after the layer's own entries, whiteout after re-adding the name.
    apply_bytes(make_tar([("d/new", tarfile.REGTYPE, b"n"),
                          ("d/.wh..wh..opq", tarfile.REGTYPE, b""),
                          ("e/sub/", tarfile.DIRTYPE, None),
                          ("e/sub/mine", tarfile.REGTYPE, b"m"),
                          ("e/.wh..wh..opq", tarfile.REGTYPE, b""),
                          ("x", tarfile.REGTYPE, b"x"),
                          (".wh.x", tarfile.REGTYPE, b"")]), root)
    assert sorted(os.listdir(root / "d")) == ["new"]
    assert sorted(os.listdir(root / "e")) == ["sub"]
    assert sorted(os.listdir(root / "e" / "sub")) == ["mine"]  # lower content still hidden
    assert (root / "x").read_bytes() == b"x"
    assert not any(n.startswith(".wh.") for _, ds, fs in os.walk(root) for n in ds + fs)


def test_entries_replace_lower_entries_of_another_type(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    apply_bytes(make_tar([("a/", tarfile.DIRTYPE, None), ("a/child", tarfile.REGTYPE, b"c"),
                          ("b", tarfile.REGTYPE, b"file"), ("c", tarfile.SYMTYPE, "b"),
                          ("d/", tarfile.DIRTYPE, None), ("d/keep", tarfile.REGTYPE, b"k"),
                          ("f", tarfile.FIFOTYPE, None)]), root)
    apply_bytes(make_tar([("a", tarfile.SYMTYPE, "b"), ("b/", tarfile.DIRTYPE, None),
                          ("c", tarfile.REGTYPE, b"now a file"),
                          ("d/", tarfile.DIRTYPE, None), ("f", tarfile.REGTYPE, b"F")]), root)
    assert os.readlink(root / "a") == "b"
    assert (root / "b").is_dir() and not (root / "b").is_symlink()
    assert (root / "c").read_bytes() == b"now a file" and not (root / "c").is_symlink()
    assert (root / "d" / "keep").read_bytes() == b"k"  # directories merge
    assert (root / "f").read_bytes() == b"F"


def test_hard_links_within_a_layer_and_to_a_lower_layer(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    apply_bytes(make_tar([("lower", tarfile.REGTYPE, b"L")]), root)
    apply_bytes(make_tar([("upper", tarfile.REGTYPE, b"U"),
                          ("l1", tarfile.LNKTYPE, "upper"),
                          ("l2", tarfile.LNKTYPE, "/lower"),    # absolute: inside root
                          ("l2", tarfile.LNKTYPE, "lower"),     # again: no-op
                          ("sym", tarfile.SYMTYPE, "upper"),
                          ("l3", tarfile.LNKTYPE, "sym")]), root)  # links the symlink
    assert os.stat(root / "l1").st_ino == os.stat(root / "upper").st_ino
    assert os.stat(root / "l2").st_ino == os.stat(root / "lower").st_ino
    assert os.readlink(root / "l3") == "upper"


def test_missing_parents_are_created_and_entries_go_through_inner_symlinks(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    apply_bytes(make_tar([("usr/lib/", tarfile.DIRTYPE, None),
                          ("lib", tarfile.SYMTYPE, "/usr/lib"),
                          ("lib/libc.so", tarfile.REGTYPE, b"libc"),
                          ("deep/er/file", tarfile.REGTYPE, b"x")]), root)
    assert (root / "usr" / "lib" / "libc.so").read_bytes() == b"libc"
    assert stat.S_IMODE(os.stat(root / "deep" / "er").st_mode) == 0o755


def test_same_owner_false_leaves_ownership_to_the_caller(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("f")
        ti.uid, ti.gid, ti.mode = 1234, 5678, 0o4755
        tf.addfile(ti, io.BytesIO(b""))
    apply_bytes(buf.getvalue(), root, same_owner=False)
    st = os.stat(root / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o4755)
    apply_bytes(buf.getvalue(), root)
    st = os.stat(root / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)


def test_without_cap_mknod_devices_are_skipped_with_warnings(work: Path) -> None:
    """As in a user namespace: mknod fails with EPERM, the layer still applies."""
    layer = work / "layer.tar"
    layer.write_bytes(make_tar([("dev/", tarfile.DIRTYPE, None),
                                ("dev/null", tarfile.CHRTYPE, None),
                                ("dev/fifo", tarfile.FIFOTYPE, None),
                                ("etc", tarfile.REGTYPE, b"file")]))
    root = work / "root"
    root.mkdir()
    script = ("import json, sys; from hutch.archive.apply import apply_layer; "
              "r = apply_layer(open(sys.argv[1], 'rb'), sys.argv[2]); "
              "print(json.dumps(r.warnings))")
    out = subprocess.run(["setpriv", "--bounding-set", "-mknod", sys.executable, "-c",
                          script, str(layer), str(root)],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == ["dev/null: device node skipped (no CAP_MKNOD)"]
    assert sorted(os.listdir(root / "dev")) == ["fifo"]
    assert (root / "etc").read_bytes() == b"file"


def test_xattrs_overlay_may_misread_are_skipped_with_a_warning(work: Path) -> None:
    root = work / "root"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("d")
        ti.type = tarfile.DIRTYPE
        ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y",
                          "SCHILY.xattr.user.ok": "fine"}
        tf.addfile(ti)
    result = apply_bytes(buf.getvalue(), root)
    assert os.listxattr(root / "d") == ["user.ok"]
    assert any("trusted.overlay.opaque" in w for w in result.warnings)


def test_zstd_layer_with_trailing_zero_blocks_has_the_full_diff_id(work: Path) -> None:
    tree = build_busybox_rootfs(work / "tree")
    out = io.BytesIO()
    w = LayerWriter(out, "zstd")
    write_tar(tree, w)
    w.write(bytes(10240))  # some writers pad to a 10 KiB record
    layer = w.close()
    out.seek(0)
    (work / "ours").mkdir()
    result = apply_layer(out, work / "ours")
    assert (result.diff_id, result.size) == (layer.diff_id, layer.uncompressed_size)
    assert_same_tree(work / "ours", tree)


def test_write_tar_round_trips_a_tree_exactly(work: Path) -> None:
    tree = build_debootstrap_like(work / "tree")
    blobs = []
    for _ in range(2):
        out = io.BytesIO()
        w = LayerWriter(out, "gzip")
        write_tar(tree, w)
        blobs.append(w.close())
        out.seek(0)
    assert blobs[0] == blobs[1]  # deterministic: same tree, same digest
    (work / "ours").mkdir()
    out.seek(0)
    apply_layer(out, work / "ours")
    assert_same_tree(work / "ours", tree)
    layer = open_layer(io.BytesIO(out.getvalue()))
    layer.drain()
    assert layer.diff_id == blobs[0].diff_id


def test_write_diff_turns_an_overlay_upper_dir_into_an_oci_layer(work: Path) -> None:
    lower, upper, wd, merged = (work / n for n in ("lower", "upper", "work", "merged"))
    build_debootstrap_like(lower)
    for d in (upper, wd, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={wd},"
                    "redirect_dir=off,metacopy=off,index=off", str(merged)], check=True)
    try:
        (merged / "etc" / "passwd").unlink()                       # whiteout device
        shutil.rmtree(merged / "var" / "log")                       # then re-create:
        (merged / "var" / "log").mkdir()                            # opaque directory
        (merged / "var" / "log" / "new").write_text("new log\n")
        (merged / "usr" / "bin" / "su").write_bytes(b"patched su")  # copy-up, keeps mode
        os.chmod(merged / "usr" / "bin" / "su", 0o4755)
        (merged / "added").mkdir()
        (merged / "added" / "file").write_text("a")
        expected = work / "expected"
        subprocess.run(["cp", "-a", f"{merged}/.", str(expected)], check=True)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    out = io.BytesIO()
    write_diff(upper, out)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(out.getvalue()))]
    assert "etc/.wh.passwd" in names and "var/log/.wh..wh..opq" in names
    ours = work / "ours"
    subprocess.run(["cp", "-a", str(lower), str(ours)], check=True)
    out.seek(0)
    apply_layer(out, ours)
    # overlay's copy-up changes directory mtimes; files, owners, modes, xattrs must match
    assert_same_tree(ours, expected, mtime_dirs=False)


def test_a_wrong_diff_id_is_an_error_after_unpacking(work: Path) -> None:
    data = make_tar([("f", tarfile.REGTYPE, b"x")])
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    root = work / "root"
    root.mkdir()
    assert apply_bytes(data, root, diff_id=good).diff_id == good
    with pytest.raises(InvalidArgument, match="diff_id mismatch"):
        apply_bytes(data, root, diff_id="sha256:" + "0" * 64)


def test_root_entries_are_ignored_and_the_last_directory_entry_sets_the_mtime(
        work: Path) -> None:
    root = work / "root"
    root.mkdir()
    os.chmod(root, 0o711)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, mtime in (("./", 5), ("d/", 10), ("d/f", 20), ("d/", 30)):
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.REGTYPE if name == "d/f" else tarfile.DIRTYPE
            ti.mtime, ti.mode = mtime, 0o777
            tf.addfile(ti, io.BytesIO(b"") if name == "d/f" else None)
    apply_bytes(buf.getvalue(), root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711
    assert os.stat(root / "d").st_mtime == 30
