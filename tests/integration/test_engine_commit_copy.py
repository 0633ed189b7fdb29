"""diff, commit and cp on the real kernel.

Snapshots come from the real snapshotters in a tmp root: an overlay chain built through
overlay mounts (so whiteouts and opaque directories are the kernel's own) and a native
chain. changes() must list exactly what was done; the layers write_diff and
write_tree_diff make, applied on a copy of the parent, must reproduce the child.
commit() goes into a real ImageService (a busybox image imported first) and the image it
makes must unpack to the container's tree and carry the container's config. cp runs
against a root file system full of hostile symlinks (absolute, climbing, in a parent
component) and must leave a host sentinel untouched. The last test drives the installed
`hutch` on a running container. Every mount is removed in finally blocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bundles import BUSYBOX, build_busybox_rootfs
from loopfs import btrfs_loop

from hutch.archive.apply import apply_layer
from hutch.archive.diff import write_diff, write_tree_diff
from hutch.config import Settings
from hutch.engine.changes import changes, snapshot_diff
from hutch.engine.commit import commit
from hutch.engine.copy import copy_in, copy_out
from hutch.engine.store import ContainerRecord
from hutch.errors import InvalidArgument, NotFound, PermissionDenied
from hutch.image.importer import import_
from hutch.image.service import ImageService
from hutch.mount import mount_all, mounts_under, unmount, unmount_all
from hutch.snapshot import BtrfsSnapshotter, NativeSnapshotter, OverlaySnapshotter

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

HUTCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hutch")


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, with every mount under it removed at the end (and reported)."""
    try:
        yield tmp_path
    finally:
        left = [m.mountpoint for m in mounts_under(str(tmp_path))]
        unmount_all(str(tmp_path), detach=True)
        assert left == [], f"mounts left behind: {left}"


@contextmanager
def mounted(mounts, where: Path) -> Iterator[Path]:
    where.mkdir(exist_ok=True)
    mount_all(mounts, str(where))
    try:
        yield where
    finally:
        unmount(str(where))


def tree(path: Path, *, dir_mtimes: bool = False) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            mtime = st.st_mtime_ns // 10**9
            if stat.S_ISDIR(st.st_mode) and not dir_mtimes:
                mtime = None
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, data, link,
                                             mtime)
    return out


def build_base(root: Path) -> None:
    for d in ("bin", "etc", "var/log/sub", "usr/share/doc", "usr/share/man", "home/user"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "hostname").write_text("base\n")
    (root / "var" / "log" / "old").write_text("old log\n")
    (root / "var" / "log" / "sub" / "x").write_text("x\n")
    (root / "usr" / "share" / "doc" / "readme").write_text("doc\n")
    (root / "home" / "user" / "notes").write_text("notes\n")
    os.chown(root / "home" / "user", 1000, 1000)


def change_child(m: Path) -> None:
    """The container's work: every kind of change diff and commit must see."""
    with open(m / "etc" / "passwd", "a") as f:
        f.write("user:x:1000:1000::/home/user:/bin/sh\n")
    (m / "etc" / "new").write_text("added\n")
    (m / "etc" / "hostname").unlink()
    (m / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")  # whited out below
    shutil.rmtree(m / "usr" / "share")                 # then made again: opaque
    (m / "usr" / "share").mkdir()
    (m / "usr" / "share" / "x").write_text("x\n")
    (m / "srv" / "app").mkdir(parents=True)
    (m / "srv" / "app" / "file").write_text("app\n")
    os.chmod(m / "home" / "user", 0o700)
    (m / "var" / "log" / "mid").unlink()


EXPECTED = [
    ("C", "/etc"), ("A", "/etc/group"), ("D", "/etc/hostname"), ("A", "/etc/new"),
    ("C", "/etc/passwd"), ("C", "/home"), ("C", "/home/user"), ("A", "/srv"),
    ("A", "/srv/app"), ("A", "/srv/app/file"), ("C", "/usr"), ("C", "/usr/share"),
    ("D", "/usr/share/doc"), ("D", "/usr/share/man"), ("A", "/usr/share/x"),
    ("C", "/var"), ("C", "/var/log"), ("D", "/var/log/mid"),
]


def middle_layer(m: Path) -> None:
    """A layer between the base and the container: a whiteout and an opaque dir."""
    (m / "etc" / "group").unlink()
    shutil.rmtree(m / "var" / "log")
    (m / "var" / "log").mkdir()
    (m / "var" / "log" / "mid").write_text("mid\n")


# -- overlay ---------------------------------------------------------------------------

def test_overlay_changes_and_write_diff_reproduce_the_container(work: Path) -> None:
    snap = OverlaySnapshotter(str(work / "snap"))
    try:
        build_base(Path(snap.prepare("base-a")[0].source))
        snap.commit("base", "base-a")
        with mounted(snap.prepare("mid-a", "base"), work / "m"):
            middle_layer(work / "m")
        snap.commit("mid", "mid-a")
        with mounted(snap.prepare("ctr", "mid"), work / "m") as m:
            change_child(m)
            subprocess.run(["cp", "-a", f"{m}/.", str(work / "expected")], check=True)
        upper = snap.mounts("ctr")[0].option("upperdir")
        assert os.path.exists(os.path.join(upper, "etc", "hostname"))  # a whiteout
        assert changes(snap, "ctr") == EXPECTED

        with mounted(snap.view("mid-v", "mid"), work / "v") as v:
            subprocess.run(["cp", "-a", f"{v}/.", str(work / "ours")], check=True)
        snap.remove("mid-v")
        out = io.BytesIO()
        write_diff(upper, out)
        names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
        assert "etc/.wh.hostname" in names and "usr/share/.wh..wh..opq" in names
        out.seek(0)
        apply_layer(out, work / "ours")
        assert tree(work / "ours") == tree(work / "expected")
    finally:
        snap.close()


def test_overlay_diff_while_the_container_is_mounted_and_changing(work: Path) -> None:
    snap = OverlaySnapshotter(str(work / "snap"))
    try:
        build_base(Path(snap.prepare("base-a")[0].source))
        snap.commit("base", "base-a")
        with mounted(snap.prepare("ctr", "base"), work / "m") as m:
            assert changes(snap, "ctr") == []
            (m / "etc" / "passwd").unlink()
            assert changes(snap, "ctr") == [("C", "/etc"), ("D", "/etc/passwd")]
            (m / "proc").mkdir()
            (m / "etc" / "hosts").touch()
            assert changes(snap, "ctr", hide=["/proc", "/etc/hosts"]) == [
                ("C", "/etc"), ("D", "/etc/passwd")]
    finally:
        snap.close()


# -- native ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def btrfs_mount(tmp_path_factory) -> Iterator[Path]:
    with btrfs_loop(tmp_path_factory.mktemp("btrfs")) as mnt:
        yield mnt


@pytest.mark.parametrize("kind", ["native", "btrfs"])
def test_full_tree_changes_and_write_tree_diff_reproduce_the_container(
        work: Path, kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "btrfs":
        root = request.getfixturevalue("btrfs_mount") / uuid.uuid4().hex[:8]
        snap = BtrfsSnapshotter(str(root))
    else:
        snap = NativeSnapshotter(str(work / "snap"))
    try:
        build_base(Path(snap.prepare("base-a")[0].source))
        snap.commit("base", "base-a")
        mid = Path(snap.prepare("mid-a", "base")[0].source)
        middle_layer(mid)
        snap.commit("mid", "mid-a")
        child = Path(snap.prepare("ctr", "mid")[0].source)
        change_child(child)
        assert changes(snap, "ctr") == EXPECTED
        with snapshot_diff(snap, "ctr") as d:
            assert not d.overlay and d.upper == str(child)
            parent = d.parent
        assert tree(Path(parent)) != tree(child)
        subprocess.run(["cp", "-a", f"{parent}/.", str(work / "ours")], check=True)
        out = io.BytesIO()
        write_tree_diff(parent, child, out)
        names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
        assert "etc/.wh.hostname" in names and "usr/share/.wh.doc" in names
        out.seek(0)
        apply_layer(out, work / "ours")
        assert tree(work / "ours", dir_mtimes=True) == tree(child, dir_mtimes=True)
    finally:
        snap.close()


# -- commit ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def busybox_tree(tmp_path_factory) -> Path:
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")
    root = build_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")
    shutil.rmtree(root / "proc")  # so the runtime's mount point is "added" below
    return root


def effective() -> dict:
    return {"Cmd": ["/bin/sh", "-c", "echo hi > /hello"], "Entrypoint": None,
            "Env": ["PATH=/bin", "X=1"], "WorkingDir": "/srv", "User": "",
            "Labels": {"l": "v"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": None,
            "StopSignal": "SIGTERM", "Hostname": "abc", "Tty": False}


@pytest.mark.parametrize("kind", ["overlay", "native"])
def test_commit_makes_an_image_of_the_changes_with_the_containers_config(
        work: Path, busybox_tree: Path, kind: str) -> None:
    settings = Settings(root=str(work / "root"), run=str(work / "run"))
    cls = OverlaySnapshotter if kind == "overlay" else NativeSnapshotter
    snap = cls(str(work / "root" / "snapshots" / kind))
    with ImageService(settings, snapshotter=snap) as svc:
        import_(svc, str(busybox_tree), "base:1", changes=['CMD ["sh"]', "ENV PATH=/bin"])
        base = svc.lookup("base:1")
        key = "hutch-test-" + uuid.uuid4().hex[:8]
        mounts = snap.prepare(key, base.top_chain_id)
        try:
            with mounted(mounts, work / "m") as m:
                (m / "hello").write_text("hi\n")
                with open(m / "etc" / "passwd", "a") as f:
                    f.write("app:x:2000:2000::/:/bin/sh\n")
                (m / "etc" / "group").unlink()
                (m / "proc").mkdir()          # runtime mount points: left out
                (m / "etc" / "hosts").touch()
                (m / "data").mkdir()          # a volume's destination: left out
                rec = ContainerRecord(
                    name="c1", image="base:1", image_id=base.id, snapshot_key=key,
                    config={"effective": effective(), "mounts": [
                        {"destination": "/data", "type": "bind", "source": "/nowhere",
                         "options": ["rbind"]}]})
                # Committed while mounted (a running container): it must not notice.
                image_id = commit(svc, rec, snap.mounts(key), reference="committed:1",
                                  changes=["ENV Y=2", "LABEL m=n"], message="saved",
                                  author="me")
                (m / "after").write_text("still writable\n")
                expected = tree(m)
            ref = svc.lookup("committed:1")
            assert ref.id == image_id and image_id.startswith("sha256:")
            doc = ref.config.raw
            assert doc["config"] == {
                "Cmd": ["/bin/sh", "-c", "echo hi > /hello"], "Env": ["PATH=/bin", "X=1",
                                                                     "Y=2"],
                "WorkingDir": "/srv", "Labels": {"l": "v", "m": "n"},
                "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGTERM"}
            assert doc["container"] == rec.id and doc["author"] == "me"
            last = doc["history"][-1]
            assert {k: v for k, v in last.items() if k != "created"} == {
                "created_by": "/bin/sh -c echo hi > /hello", "author": "me",
                "comment": "saved"}
            assert len(doc["history"]) == 2
            assert [x.digest for x in ref.manifest.layers[:1]] == \
                [x.digest for x in base.manifest.layers]
            assert len(ref.manifest.layers) == 2
            with mounted(snap.view("check", ref.top_chain_id), work / "v") as v:
                got = tree(v)
            snap.remove("check")
            expected.pop("after")
            for gone in ("proc", "etc/hosts", "data"):
                expected.pop(gone)
            assert "etc/group" not in got
            assert got["hello"][3] == b"hi\n"
            assert {k: v[:5] for k, v in got.items()} == \
                {k: v[:5] for k, v in expected.items()}
        finally:
            snap.remove(key)


def test_commit_of_no_changes_still_adds_an_empty_layer(work: Path, busybox_tree: Path
                                                        ) -> None:
    settings = Settings(root=str(work / "root"), run=str(work / "run"))
    snap = OverlaySnapshotter(str(work / "root" / "snapshots" / "overlay"))
    with ImageService(settings, snapshotter=snap) as svc:
        import_(svc, str(busybox_tree), "base:1")
        base = svc.lookup("base:1")
        key = "hutch-test-" + uuid.uuid4().hex[:8]
        snap.prepare(key, base.top_chain_id)
        try:
            rec = ContainerRecord(name="c2", image="base:1", image_id=base.id,
                                  snapshot_key=key, config={"effective": effective()})
            with pytest.raises(InvalidArgument, match="not a valid change"):
                commit(svc, rec, snap.mounts(key), changes=["RUN true"])
            image_id = commit(svc, rec, snap.mounts(key))
            ref = svc.lookup(image_id)
            assert ref.name == "docker.io/library/" + image_id  # unnamed, like import
            empty = "sha256:" + hashlib.sha256(bytes(1024)).hexdigest()
            assert [str(d) for d in ref.config.diff_ids] == \
                [str(d) for d in base.config.diff_ids] + [empty]
        finally:
            snap.remove(key)


def test_commit_on_a_docker_schema2_image_makes_a_docker_schema2_image(
        work: Path, busybox_tree: Path) -> None:
    from hutch.oci import media
    from hutch.oci.digest import sha256_of

    settings = Settings(root=str(work / "root"), run=str(work / "run"))
    snap = OverlaySnapshotter(str(work / "root" / "snapshots" / "overlay"))
    with ImageService(settings, snapshotter=snap) as svc:
        import_(svc, str(busybox_tree), "base:1")
        oci = svc.lookup("base:1")
        doc = dict(oci.config.raw, config={"Labels": {"format": "docker"}})
        cfg = json.dumps(doc).encode()
        cfg_digest = sha256_of(cfg)
        svc.content.put_bytes(cfg_digest, cfg)
        (layer,) = oci.manifest.layers
        body = json.dumps({
            "schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST,
            "config": {"mediaType": media.DOCKER_CONFIG, "digest": cfg_digest,
                       "size": len(cfg)},
            "layers": [{"mediaType": media.DOCKER_LAYER_GZIP, "digest": layer.digest,
                        "size": layer.size}]}).encode()
        mdigest = sha256_of(body)
        svc.content.put_bytes(mdigest, body)
        svc.record("docker.io/library/dockerbase:1", target_digest=mdigest,
                   target_media_type=media.DOCKER_MANIFEST, target_size=len(body),
                   manifests=[(mdigest, body, None)])
        key = "hutch-test-" + uuid.uuid4().hex[:8]
        snap.prepare(key, oci.top_chain_id)
        try:
            rec = ContainerRecord(name="c3", image="dockerbase:1", image_id=cfg_digest,
                                  snapshot_key=key, config={"effective": effective()})
            ref = svc.lookup(commit(svc, rec, snap.mounts(key), reference="fromdocker:1"))
            raw = json.loads(svc.content.read_bytes(ref.manifest.digest))
            assert raw["mediaType"] == media.DOCKER_MANIFEST
            assert raw["config"]["mediaType"] == media.DOCKER_CONFIG
            assert [x["mediaType"] for x in raw["layers"]] == [media.DOCKER_LAYER_GZIP] * 2
        finally:
            snap.remove(key)


# -- cp ----------------------------------------------------------------------------------

@pytest.fixture
def hostile(work: Path) -> tuple[Path, Path]:
    """(rootfs, host sentinel dir): a container root whose symlinks all aim at the host."""
    host = work / "host"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    root = work / "rootfs"
    for d in ("etc", "tmp", "sub/dir", "data"):
        (root / d).mkdir(parents=True)
    (root / "etc" / "passwd").write_text("container passwd\n")
    (root / "abs").symlink_to("/etc/passwd")                       # absolute
    (root / "hostdir").symlink_to(host)                            # the host's path
    (root / "up").symlink_to("../../../../../../../../.." + str(host))  # climbing
    (root / "sub" / "parent").symlink_to("/")                      # a link as a parent
    (root / "tmplink").symlink_to("/tmp")
    (root / "sub" / "dir" / "f").write_text("f\n")
    (root / "sub" / ".wh.x").write_text("not a whiteout\n")
    return root, host


def host_untouched(host: Path) -> None:
    assert sorted(os.listdir(host)) == ["secret"]
    assert (host / "secret").read_text() == "host secret\n"


def test_cp_out_resolves_every_symlink_inside_the_container(
        work: Path, hostile: tuple[Path, Path]) -> None:
    root, host = hostile
    for path in ("/hostdir/secret", "/up/secret", "/sub/parent" + str(host) + "/secret"):
        with pytest.raises(NotFound, match=f"Could not find the file {path} in container c1"):
            copy_out(str(root), path, str(work / "out"), container="c1")
    copy_out(str(root), "/abs", str(work / "followed"), follow_link=True)
    assert (work / "followed").read_text() == "container passwd\n"
    copy_out(str(root), "/abs", str(work / "link"))
    assert os.readlink(work / "link") == "/etc/passwd"   # a link is copied as a link
    copy_out(str(root), "/sub/parent/etc/passwd", str(work / "via-parent"))
    assert (work / "via-parent").read_text() == "container passwd\n"
    result = copy_out(str(root), "/sub", str(work / "subcopy"))
    assert os.readlink(work / "subcopy" / "parent") == "/"
    assert not (work / "subcopy" / ".wh.x").exists()
    assert any(".wh.x" in w for w in result.warnings)
    buf = io.BytesIO()
    copy_out(str(root), "/", buf)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert "hostdir" in names and not any("secret" in n for n in names)
    host_untouched(host)


def test_cp_in_never_writes_through_a_container_symlink(
        work: Path, hostile: tuple[Path, Path]) -> None:
    root, host = hostile
    src = work / "payload"
    src.write_text("payload\n")
    for dest in ("/hostdir/x", "/up/x", "/hostdir/", "/up/",
                 "/sub/parent" + str(host) + "/x"):
        with pytest.raises(NotFound):
            copy_in(str(root), str(src), dest)
    copy_in(str(root), str(src), "/tmplink/")           # /tmp of the container
    assert (root / "tmp" / "payload").read_text() == "payload\n"
    copy_in(str(root), str(src), "/abs")                  # replaces the container's file
    assert (root / "etc" / "passwd").read_text() == "payload\n"
    # a tar from "-" with a symlink to the host and a file through it
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("esc")
        ti.type, ti.linkname = tarfile.SYMTYPE, str(host)
        tf.addfile(ti)
        data = b"pwned\n"
        ti = tarfile.TarInfo("esc/pwned")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    with pytest.raises(InvalidArgument, match="dangling symlink"):
        copy_in(str(root), buf, "/tmp")   # resolved inside: nothing there to write into
    assert (root / "tmp" / "esc").is_symlink()
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        tf.addfile(ti, io.BytesIO(b""))
    bad.seek(0)
    with pytest.raises(InvalidArgument, match=r"'\.\.'"):
        copy_in(str(root), bad, "/tmp")
    host_untouched(host)
    assert not (work / "escape").exists()


def test_cp_follows_dockers_rules_for_names(work: Path, hostile: tuple[Path, Path]
                                            ) -> None:
    root, _ = hostile
    copy_out(str(root), "/etc", str(work / "new"))              # dest created as src
    assert (work / "new" / "passwd").is_file()
    (work / "existing").mkdir()
    copy_out(str(root), "/etc", str(work / "existing"))         # into the directory
    assert (work / "existing" / "etc" / "passwd").is_file()
    (work / "contents").mkdir()
    copy_out(str(root), "/etc/.", str(work / "contents"))       # only the contents
    assert os.listdir(work / "contents") == ["passwd"]
    (work / "file").write_text("old\n")
    copy_out(str(root), "/etc/passwd", str(work / "file"))      # file onto file
    assert (work / "file").read_text() == "container passwd\n"
    with pytest.raises(NotFound, match="does not exist"):
        copy_out(str(root), "/etc/passwd", str(work / "missing") + "/")
    with pytest.raises(InvalidArgument, match="cannot copy directory"):
        copy_out(str(root), "/etc", str(work / "file"))
    with pytest.raises(NotFound, match="no such directory"):
        copy_out(str(root), "/etc/passwd", str(work / "nodir" / "x"))
    with pytest.raises(InvalidArgument, match="not a directory"):
        copy_out(str(root), "/etc/passwd/", str(work / "x"))
    (work / "clash" / "passwd").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        copy_out(str(root), "/etc/passwd", str(work / "clash"))
    buf = io.BytesIO()
    copy_out(str(root), "/sub/dir", buf)
    assert tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames() == ["dir", "dir/f"]

    srcdir = work / "srcdir"
    (srcdir / "inner").mkdir(parents=True)
    (srcdir / "inner" / "a").write_text("a\n")
    copy_in(str(root), str(srcdir), "/data")                    # into the directory
    assert (root / "data" / "srcdir" / "inner" / "a").is_file()
    copy_in(str(root), str(srcdir), "/renamed")                 # created as src
    assert (root / "renamed" / "inner" / "a").is_file()
    copy_in(str(root), str(srcdir) + "/.", "/data")             # contents
    assert (root / "data" / "inner" / "a").is_file()
    with pytest.raises(InvalidArgument, match="must be a directory"):
        copy_in(str(root), io.BytesIO(), "/etc/passwd", container="c1")
    with pytest.raises(NotFound, match="Could not find the file /nope in container c1"):
        copy_in(str(root), str(srcdir), "/nope/x", container="c1")


def test_cp_in_owner_is_root_unless_archive_mode(work: Path, hostile: tuple[Path, Path]
                                                 ) -> None:
    root, _ = hostile
    src = work / "owned"
    src.write_text("x\n")
    os.chown(src, 1234, 4321)
    copy_in(str(root), str(src), "/tmp/plain")
    assert (os.stat(root / "tmp" / "plain").st_uid, os.stat(root / "tmp" / "plain").st_gid) \
        == (0, 0)
    copy_in(str(root), str(src), "/tmp/kept", copy_uid_gid=True)
    assert (os.stat(root / "tmp" / "kept").st_uid, os.stat(root / "tmp" / "kept").st_gid) \
        == (1234, 4321)


def test_cp_paths_under_a_volume_go_to_its_source(work: Path, hostile: tuple[Path, Path]
                                                  ) -> None:
    root, _ = hostile
    vol = work / "vol"
    vol.mkdir()
    src = work / "payload"
    src.write_text("to the volume\n")
    mounts = [{"destination": "/data", "type": "bind", "source": str(vol),
               "options": ["rbind", "rw"]},
              {"destination": "/ro", "type": "bind", "source": str(vol),
               "options": ["rbind", "ro"]}]
    copy_in(str(root), str(src), "/data/", mounts=mounts)
    assert (vol / "payload").read_text() == "to the volume\n"
    assert not (root / "data" / "payload").exists()
    copy_out(str(root), "/data/payload", str(work / "back"), mounts=mounts)
    assert (work / "back").read_text() == "to the volume\n"
    with pytest.raises(PermissionDenied, match="read-only"):
        copy_in(str(root), str(src), "/ro/", mounts=mounts)
    with pytest.raises(PermissionDenied, match="rootfs is marked read-only"):
        copy_in(str(root), str(src), "/tmp/", mounts=mounts, readonly_rootfs=True)
    copy_in(str(root), str(src), "/data/again", mounts=mounts, readonly_rootfs=True)
    assert (vol / "again").is_file()


def test_cp_races_with_a_container_swapping_directories_for_host_links(
        work: Path, hostile: tuple[Path, Path]) -> None:
    """A running container flips /x between a directory and a link to the host while
    cp reads and writes through it: whatever cp does, it never sees or touches the
    host's side (the errors it may raise are fine)."""
    import threading
    import time

    root, host = hostile
    real = root / "x.d"
    real.mkdir()
    (real / "secret").write_text("container secret\n")
    (real / "deeper").mkdir()
    (real / "deeper" / "f").write_text("f\n")
    os.rename(real, root / "x")
    payload = work / "payload"
    payload.write_text("payload\n")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(root / "x", root / "x.d")
            os.symlink(host, root / "x.tmp")
            os.rename(root / "x.tmp", root / "x")
            os.unlink(root / "x")
            os.rename(root / "x.d", root / "x")

    t = threading.Thread(target=flip)
    t.start()
    copied = 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for src in ("/x", "/x/secret", "/x/deeper", "/"):
                buf = io.BytesIO()
                try:
                    copy_out(str(root), src, buf)
                except (NotFound, InvalidArgument, OSError):
                    continue
                copied += 1
                assert b"host secret" not in buf.getvalue()
            for dest in ("/x/", "/x/deeper/", "/x/new"):
                try:
                    copy_in(str(root), str(payload), dest)
                except (NotFound, InvalidArgument, OSError):
                    continue
    finally:
        stop.set()
        t.join()
    assert copied > 0
    host_untouched(host)


# -- the installed CLI on a running container ---------------------------------------------

def hutch(store: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([HUTCH, "--root", str(store / "root"), "--run", str(store / "run"),
                           *args], timeout=120, **kw)


def test_cli_diff_cp_commit_on_a_running_container(work: Path, busybox_tree: Path) -> None:
    store = work / "s"
    assert hutch(store, "import", str(busybox_tree), "bb:1").returncode == 0
    p = hutch(store, "run", "-d", "--name", "c1", "bb:1", "sh", "-c",
              "echo hi > /tmp/hello; rm /etc/group; exec sleep 300")
    assert p.returncode == 0, p.stderr
    try:
        for _ in range(100):
            if "A /tmp/hello" in hutch(store, "diff", "c1").stdout:
                break
            subprocess.run(["sleep", "0.1"])
        lines = hutch(store, "diff", "c1").stdout.splitlines()
        assert {"C /etc", "D /etc/group", "C /tmp", "A /tmp/hello"} <= set(lines)
        assert not any(x.endswith((" /proc", " /etc/hosts", " /etc/resolv.conf"))
                       for x in lines)
        (work / "f").write_text("from the host\n")
        assert hutch(store, "cp", str(work / "f"), "c1:/root/").returncode == 0
        p = hutch(store, "exec", "c1", "cat", "/root/f")
        assert p.stdout == "from the host\n", p.stderr
        assert hutch(store, "cp", "c1:/tmp/hello", str(work / "back")).returncode == 0
        assert (work / "back").read_text() == "hi\n"
        p = hutch(store, "commit", "-c", "RUN nope", "c1", "bad:1")
        assert p.returncode != 0 and "not a valid change" in p.stderr
        p = hutch(store, "commit", "-m", "snap", "-c", 'CMD ["cat", "/tmp/hello"]', "c1",
                  "snap:1")
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip().startswith("sha256:")
        state = json.loads(hutch(store, "inspect", "c1").stdout)[0]["State"]
        assert state["Status"] == "running"          # unpaused, also after the error
        p = hutch(store, "run", "--rm", "snap:1")
        assert p.returncode == 0 and p.stdout == "hi\n", p.stderr
        p = hutch(store, "cp", "c1:/nope", str(work / "x"))
        assert p.returncode == 1 and "Could not find the file /nope in container c1" \
            in p.stderr
    finally:
        hutch(store, "rm", "-f", "c1")
