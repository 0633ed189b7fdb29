"""hutch import: a rootfs directory, its `tar -c .` and a gzipped tar from stdin become
one-layer images whose unpacked rootfs equals the source tree (modes with setuid and
sticky bits, owners, hard and symbolic links, a fifo, a device, xattrs); --change lines
land in the image config; a tarball that climbs out with '..' is refused and one that
writes through an absolute symlink stays inside the rootfs. The installed `hutch` runs as
a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

HUTCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hutch")
BUSYBOX = Path("/bin/busybox")


def hutch(store: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    return subprocess.run([HUTCH, "--root", str(store / "root"), "--run", str(store / "run"),
                           *args], timeout=120, **kw)


def tree(path: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else None
            data = xattrs = None
            if os.path.isfile(p) and not os.path.islink(p):
                data = Path(p).read_bytes()
                xattrs = {k: os.getxattr(p, k) for k in os.listxattr(p)
                          if k.startswith("user.")}
            mtime = int(st.st_mtime) if data is not None else None
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, link, data,
                                             st.st_rdev, st.st_nlink if data else None,
                                             xattrs, mtime)
    return out


def unpacked_tree(store: Path, name: str, where: Path) -> dict[str, tuple]:
    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.mount import mount_all, unmount

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        img = svc.lookup(name)
        mounts = svc.snapshotter.view("check", img.top_chain_id)
        where.mkdir()
        try:
            mount_all(mounts, str(where))
            try:
                return tree(where)
            finally:
                unmount(str(where))
        finally:
            svc.snapshotter.remove("check")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("src") / "rootfs"
    for d in ("bin", "etc", "tmp", "dev", "home/user", "var/empty"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    os.symlink("/etc/passwd", root / "etc" / "passwd-abs")
    (root / "etc" / "shadow").write_text("root:*:19000::::::\n")
    os.chmod(root / "etc" / "shadow", 0o600)
    (root / "bin" / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin" / "suid", 0o4755)
    os.link(root / "bin" / "suid", root / "bin" / "suid-hardlink")
    (root / "home" / "user" / "notes").write_text("mine\n")
    os.chown(root / "home" / "user", 1000, 1000)
    os.chown(root / "home" / "user" / "notes", 1000, 100)
    os.setxattr(root / "home" / "user" / "notes", "user.comment", b"kept")
    os.chmod(root / "tmp", 0o1777)
    os.mkfifo(root / "tmp" / "fifo")
    os.mknod(root / "dev" / "null", 0o20666, os.makedev(1, 3))
    os.chmod(root / "dev" / "null", 0o666)
    (root / "empty-file").touch()
    return root


def test_a_directory_becomes_an_image_whose_rootfs_is_the_same_tree(rootfs, tmp_path):
    store = tmp_path / "s"
    p = hutch(store, "import", str(rootfs), "example.com/base:1", text=True)
    assert p.returncode == 0, p.stderr
    image_id = p.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    (info,) = json.loads(hutch(store, "image", "inspect", "example.com/base:1").stdout)
    assert info["Id"] == image_id
    assert info["Os"] == "linux" and info["Architecture"]
    assert unpacked_tree(store, "example.com/base:1", tmp_path / "m") == tree(rootfs)


@pytest.mark.parametrize("how", ["tar-file", "gzip-stdin"])
def test_a_tarball_of_the_tree_imports_to_the_same_rootfs(rootfs, tmp_path, how):
    store = tmp_path / "s"
    archive = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", "-C", str(rootfs), "-cf",
                    str(archive), "."], check=True)
    if how == "tar-file":
        p = hutch(store, "import", str(archive), "fromtar", text=True)
    else:
        gz = subprocess.run(["gzip", "-c", str(archive)], check=True,
                            capture_output=True).stdout
        p = hutch(store, "import", "-", "fromtar", input=gz)
    assert p.returncode == 0, p.stderr
    assert unpacked_tree(store, "fromtar", tmp_path / "m") == tree(rootfs)


def test_change_lines_and_the_message_end_up_in_the_config(tmp_path):
    src = tmp_path / "tiny"
    src.mkdir()
    (src / "hello").write_text("hi\n")
    store = tmp_path / "s"
    p = hutch(store, "import", "-m", "tiny rootfs", "-c", 'CMD ["/hello"]',
              "-c", "ENTRYPOINT /bin/sh -c", "-c", "ENV PATH=/bin GREETING=hi",
              "-c", "WORKDIR /srv", "-c", "USER 1000:1000", "-c", "EXPOSE 8080/tcp",
              "-c", 'LABEL org.opencontainers.image.title="tiny image"',
              "-c", "VOLUME /data", "-c", "STOPSIGNAL SIGQUIT", str(src), "tiny:1", text=True)
    assert p.returncode == 0, p.stderr
    (info,) = json.loads(hutch(store, "image", "inspect", "tiny:1").stdout)
    assert info["Config"] == {
        "Cmd": ["/hello"], "Entrypoint": ["/bin/sh", "-c", "/bin/sh -c"],
        "Env": ["PATH=/bin", "GREETING=hi"], "WorkingDir": "/srv", "User": "1000:1000",
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "tiny image"},
        "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT"}
    p = hutch(store, "import", "-c", "RUN rm -rf /", str(src), "bad:1", text=True)
    assert p.returncode == 1 and "not a valid change command" in p.stderr


def test_without_a_name_the_image_is_kept_by_id(tmp_path):
    src = tmp_path / "tiny"
    src.mkdir()
    (src / "x").write_text("x")
    store = tmp_path / "s"
    p = hutch(store, "import", str(src), text=True)
    assert p.returncode == 0, p.stderr
    image_id = p.stdout.strip()
    (info,) = json.loads(hutch(store, "image", "inspect", image_id[7:19]).stdout)
    assert info["Id"] == image_id


def test_a_tarball_with_dotdot_is_refused_and_changes_nothing(tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("./etc/../../escaped")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"x\n"))
    store = tmp_path / "s"
    p = hutch(store, "import", "-", "evil:1", input=buf.getvalue())
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith("Error: ") and "'..'" in err
    assert "Traceback" not in err
    assert json.loads(hutch(store, "images", "--format", "json").stdout) == []
    assert os.listdir(store / "root" / "content" / "blobs" / "sha256") == []


def test_writing_through_an_absolute_symlink_stays_inside_the_rootfs(tmp_path):
    import io
    import tarfile

    outside = Path("/tmp") / f"hutch-import-escape-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            # The same directory exists in the image: the symlink resolves, inside.
            ti = tarfile.TarInfo(str(outside.relative_to("/")))
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
            ti = tarfile.TarInfo("escape")
            ti.type, ti.linkname = tarfile.SYMTYPE, str(outside)
            t.addfile(ti)
            ti = tarfile.TarInfo("escape/pwned")
            ti.size = 2
            t.addfile(ti, io.BytesIO(b"x\n"))
        store = tmp_path / "s"
        p = hutch(store, "import", "-", "contained:1", input=buf.getvalue())
        assert not (outside / "pwned").exists()
        assert p.returncode == 0, p.stderr
        inside = unpacked_tree(store, "contained:1", tmp_path / "m")
        assert inside["escape"][3] == str(outside)
        assert str(outside.relative_to("/")) + "/pwned" in inside
    finally:
        shutil.rmtree(outside)
