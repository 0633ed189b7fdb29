"""docker diff's change list (engine.changes) over in-memory trees and plain tmp dirs:
overlay upper directories (whiteouts, opaque directories, lower layers with their own
whiteouts), full-tree comparison (native/btrfs), docker's parents rule and the hiding of
runtime mount points; the layer write_tree_diff makes for two trees; and the pure
helpers of commit and cp (config merge, argument splitting, the volume rule)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from argparse import Namespace
from pathlib import Path

import pytest

from hutch.engine.changes import (
    DirTree,
    LowerView,
    Node,
    added_paths,
    changes,
    finish,
    mountpoints,
    overlay_changes,
    snapshot_diff,
    split_lowerdir,
    tree_changes,
)
from hutch.errors import InvalidArgument, NotFound, NotSupported
from hutch.mount import Mount

pytestmark = pytest.mark.unit

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o644


def d(**kw) -> Node:
    return Node(DIR, **kw)


def f(size: int = 1, mtime: int = 1, **kw) -> Node:
    return Node(FILE, st_size=size, st_mtime_ns=mtime, **kw)


def whiteout() -> Node:
    return Node(stat.S_IFCHR, st_rdev=0)


class FakeTree:
    """A tree as {relative path: Node}; parents must be listed too."""

    def __init__(self, entries: dict[str, Node]) -> None:
        self.entries = {"": d(), **entries}

    def stat(self, rel: str) -> Node | None:
        return self.entries.get(rel)

    def names(self, rel: str) -> list[str]:
        node = self.entries.get(rel)
        if node is None or not node.is_dir:
            return []
        prefix = rel + "/" if rel else ""
        return sorted(p[len(prefix):] for p in self.entries
                      if p and p.startswith(prefix) and "/" not in p[len(prefix):])


BASE = FakeTree({
    "etc": d(), "etc/passwd": f(), "etc/group": f(),
    "var": d(), "var/log": d(), "var/log/old": f(), "var/log/sub": d(),
    "var/log/sub/x": f(),
    "bin": d(), "bin/sh": Node(stat.S_IFLNK | 0o777, link="busybox"),
    "usr": d(), "usr/share": d(), "usr/share/doc": f(),
})


# -- overlay ---------------------------------------------------------------------------

def test_overlay_add_modify_delete_with_parents_listed_as_changed() -> None:
    upper = FakeTree({
        "etc": d(), "etc/passwd": f(size=2), "etc/new": f(), "etc/group": whiteout(),
        "tmp": d(), "tmp/a": d(), "tmp/a/b": f(),
    })
    got = finish(overlay_changes(upper, [BASE]))
    assert got == [("C", "/etc"), ("D", "/etc/group"), ("A", "/etc/new"),
                   ("C", "/etc/passwd"), ("A", "/tmp"), ("A", "/tmp/a"),
                   ("A", "/tmp/a/b")]


def test_overlay_copied_up_directories_are_not_changes_by_themselves() -> None:
    upper = FakeTree({"usr": d(), "usr/share": d()})  # copied up, nothing below
    assert finish(overlay_changes(upper, [BASE])) == []
    chmodded = FakeTree({"usr": Node(stat.S_IFDIR | 0o700)})
    assert finish(overlay_changes(chmodded, [BASE])) == [("C", "/usr")]


def test_overlay_opaque_directory_deletes_what_the_lower_layers_had() -> None:
    # rm -rf /var/log; mkdir /var/log; echo > /var/log/new; echo > /var/log/old
    upper = FakeTree({"var": d(), "var/log": d(opaque=True), "var/log/new": f(),
                      "var/log/old": f(size=9)})
    got = finish(overlay_changes(upper, [BASE]))
    assert got == [("C", "/var"), ("C", "/var/log"), ("A", "/var/log/new"),
                   ("C", "/var/log/old"), ("D", "/var/log/sub")]


def test_overlay_lower_layers_merge_with_their_own_whiteouts_and_opaque_dirs() -> None:
    middle = FakeTree({"etc": d(), "etc/passwd": whiteout(),
                       "var": d(), "var/log": d(opaque=True), "var/log/mid": f()})
    view = LowerView([middle, BASE])
    assert view.stat("etc/passwd") is None          # whited out in the middle layer
    assert view.stat("etc/group") is not None
    assert view.stat("var/log/old") is None         # hidden by the opaque dir
    assert view.names("var/log") == ["mid"]
    upper = FakeTree({"etc": d(), "etc/passwd": f(), "var": d(), "var/log": d(),
                      "var/log/mid": whiteout(), "var/log/old": f()})
    got = finish(overlay_changes(upper, [middle, BASE]))
    assert got == [("C", "/etc"), ("A", "/etc/passwd"), ("C", "/var"), ("C", "/var/log"),
                   ("D", "/var/log/mid"), ("A", "/var/log/old")]


def test_overlay_file_in_a_lower_layer_hides_the_directory_below_it() -> None:
    top = FakeTree({"usr": f()})  # a layer replaced /usr with a file
    assert LowerView([top, BASE]).stat("usr/share/doc") is None
    upper = FakeTree({"usr": d(), "usr/share": d()})
    assert finish(overlay_changes(upper, [top, BASE])) == [("C", "/usr"),
                                                           ("A", "/usr/share")]


def test_overlay_type_changes_are_changes() -> None:
    upper = FakeTree({"bin": d(), "bin/sh": f(), "etc": f()})
    assert finish(overlay_changes(upper, [BASE])) == [
        ("C", "/bin"), ("C", "/bin/sh"), ("C", "/etc")]


def test_overlay_redirect_dirs_are_refused() -> None:
    upper = FakeTree({"usr": d(unreadable="trusted.overlay.redirect")})
    with pytest.raises(NotSupported, match="redirect_dir"):
        overlay_changes(upper, [BASE])


# -- full trees ------------------------------------------------------------------------

def test_tree_changes_compare_like_continuity() -> None:
    new = FakeTree({
        "etc": d(), "etc/passwd": f(mtime=2), "etc/group": f(),
        "var": d(), "var/log": Node(DIR, st_uid=1000),
        "var/log/old": f(), "var/log/sub": d(), "var/log/sub/x": f(),
        "bin": d(), "bin/sh": Node(stat.S_IFLNK | 0o777, link="dash"),
        "usr": f(),
        "new": d(), "new/a": d(), "new/a/b": f(),
    })
    got = finish(tree_changes(BASE, new))
    assert got == [("C", "/bin"), ("C", "/bin/sh"), ("C", "/etc"), ("C", "/etc/passwd"),
                   ("A", "/new"), ("A", "/new/a"), ("A", "/new/a/b"), ("C", "/usr"),
                   ("C", "/var"), ("C", "/var/log")]


def test_tree_changes_list_a_removed_directory_once() -> None:
    new = FakeTree({k: v for k, v in BASE.entries.items()
                    if not k.startswith("var/log") and k})
    assert finish(tree_changes(BASE, new)) == [("C", "/var"), ("D", "/var/log")]


def test_dir_tree_reads_a_real_directory_without_following_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root\n")
    (root / "escape").symlink_to(tmp_path)
    (tmp_path / "outside").write_text("host\n")
    tree = DirTree(str(root))
    try:
        assert tree.stat("etc/passwd").st_size == 5
        assert tree.stat("escape").link == str(tmp_path)
        assert tree.stat("escape/outside") is None  # never through a symlink
        assert tree.names("escape") == []
        assert sorted(tree.names("")) == ["escape", "etc"]
    finally:
        tree.close()


def _tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "var" / "log" / "sub").mkdir(parents=True)
    (root / "var" / "log" / "old").write_text("old\n")
    (root / "bin").mkdir()
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "bin" / "busybox").write_bytes(b"\x7fELF")


def _change_tree(root: Path) -> None:
    with open(root / "etc" / "passwd", "a") as fh:
        fh.write("user:x:1000:1000\n")
    os.unlink(root / "etc" / "group")
    shutil.rmtree(root / "var" / "log")
    (root / "bin" / "sh").unlink()
    (root / "bin" / "sh").symlink_to("dash")
    os.chmod(root / "bin" / "busybox", 0o4755)
    (root / "home" / "user").mkdir(parents=True)
    (root / "home" / "user" / "notes").write_text("hello\n")


def test_tree_changes_on_real_directories(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _tree(old)
    shutil.copytree(old, new, symlinks=True)
    assert finish(tree_changes(DirTree(str(old)), DirTree(str(new)))) == []
    _change_tree(new)
    got = finish(tree_changes(DirTree(str(old)), DirTree(str(new))))
    assert got == [("C", "/bin"), ("C", "/bin/busybox"), ("C", "/bin/sh"), ("C", "/etc"),
                   ("D", "/etc/group"), ("C", "/etc/passwd"), ("A", "/home"),
                   ("A", "/home/user"), ("A", "/home/user/notes"), ("C", "/var"),
                   ("D", "/var/log")]


def test_write_tree_diff_applied_on_the_parent_reproduces_the_child(tmp_path: Path) -> None:
    from hutch.archive.apply import apply_layer
    from hutch.archive.diff import write_tree_diff

    old, new, ours = tmp_path / "old", tmp_path / "new", tmp_path / "ours"
    _tree(old)
    shutil.copytree(old, new, symlinks=True)
    _change_tree(new)
    out = io.BytesIO()
    write_tree_diff(old, new, out)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(out.getvalue()))]
    assert "etc/.wh.group" in names and "var/.wh.log" in names
    assert "etc/passwd" in names and "etc" in names  # the parent goes with the change
    assert not any(n.startswith("var/log/") for n in names)
    shutil.copytree(old, ours, symlinks=True)
    out.seek(0)
    apply_layer(out, ours, same_owner=False)
    assert _snapshot(ours) == _snapshot(new)


def test_write_tree_diff_of_identical_trees_is_an_empty_tar(tmp_path: Path) -> None:
    from hutch.archive.diff import write_tree_diff

    old = tmp_path / "old"
    _tree(old)
    shutil.copytree(old, tmp_path / "new", symlinks=True)
    out = io.BytesIO()
    write_tree_diff(old, tmp_path / "new", out, exclude=["etc"])
    assert tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames() == []


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            mtime = st.st_mtime_ns // 10**9 if data is not None else None
            out[os.path.relpath(p, root)] = (st.st_mode, data, link, mtime)
    return out


# -- the parents rule, hiding, snapshots -------------------------------------------------

def test_finish_hides_added_mount_points_only() -> None:
    found = {"proc": "A", "etc/hosts": "A", "etc/resolv.conf": "C", "data": "A",
             "data/x": "A", "root/.ash_history": "A"}
    got = finish(found, hide=["/proc", "/etc/hosts", "/etc/resolv.conf", "/data"])
    assert got == [("C", "/etc"), ("C", "/etc/resolv.conf"), ("C", "/root"),
                   ("A", "/root/.ash_history")]


def test_mountpoints_adds_the_container_mount_destinations() -> None:
    config = {"mounts": [{"destination": "/data/", "type": "bind", "source": "/v"},
                         {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}]}
    got = mountpoints(config)
    assert "/data" in got and "/run" in got and "/proc" in got and "/etc/hosts" in got
    assert mountpoints({}) == sorted(set(mountpoints({})))


def test_split_lowerdir_undoes_overlay_escaping() -> None:
    assert split_lowerdir("/a/1:/b\\:c/2:/d\\\\e") == ["/a/1", "/b:c/2", "/d\\e"]


class FakeSnapshotter:
    def __init__(self, mounts: dict[str, list[Mount]], parents: dict[str, str | None]
                 ) -> None:
        self._mounts = mounts
        self.parents = parents
        self.views: list[str] = []

    def mounts(self, key: str) -> list[Mount]:
        return self._mounts[key]

    def stat(self, key: str):
        return Namespace(parent=self.parents[key])

    def view(self, key: str, parent: str | None = None, labels=None) -> list[Mount]:
        self.views.append(key)
        return [Mount("bind", f"/snap/{parent}", ["ro", "rbind"])]

    def remove(self, key: str) -> None:
        self.views.remove(key)


def test_changes_reads_the_overlay_mount_of_the_snapshot() -> None:
    trees = {"/s/3/fs": FakeTree({"etc": d(), "etc/hosts": f(), "etc/passwd": f(size=3),
                                  "proc": d()}),
             "/s/2/fs": FakeTree({}), "/s/1:x/fs": BASE}
    snap = FakeSnapshotter({"c": [Mount("overlay", "overlay", [
        "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1\\:x/fs"])]},
        {"c": "top"})
    got = changes(snap, "c", hide=mountpoints({}), open_tree=trees.__getitem__)
    assert got == [("C", "/etc"), ("C", "/etc/passwd")]
    with snapshot_diff(snap, "c") as diff:
        assert added_paths(diff, ["/proc", "/etc/hosts", "/etc/passwd", "/nope"],
                           open_tree=trees.__getitem__) == ["/proc", "/etc/hosts"]


def test_changes_of_a_full_tree_snapshot_compare_with_a_view_of_its_parent() -> None:
    child = FakeTree({**{k: v for k, v in BASE.entries.items() if k}, "etc/new": f()})
    trees = {"/snap/layer": BASE, "/active/7": child}
    snap = FakeSnapshotter({"c": [Mount("bind", "/active/7", ["rw", "rbind"])]},
                           {"c": "layer"})
    assert changes(snap, "c", open_tree=trees.__getitem__) == [
        ("C", "/etc"), ("A", "/etc/new")]
    assert snap.views == []  # the temporary view is gone


def test_changes_of_a_snapshot_without_parent_are_all_additions() -> None:
    trees = {"/active/1": FakeTree({"a": d(), "a/b": f()})}
    snap = FakeSnapshotter({"c": [Mount("bind", "/active/1", ["rw", "rbind"])]},
                           {"c": None})
    assert changes(snap, "c", open_tree=trees.__getitem__) == [("A", "/a"), ("A", "/a/b")]


# -- pure helpers of commit and cp -------------------------------------------------------

def test_commit_config_takes_the_containers_settings_over_the_images() -> None:
    from hutch.engine.commit import run_config

    parent = {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Healthcheck": {"Test": ["NONE"]},
              "Labels": {"a": "1"}}
    effective = {"Env": ["PATH=/bin", "X=1"], "Cmd": ["top"], "Entrypoint": None,
                 "Labels": {}, "ExposedPorts": ["80/tcp"], "Volumes": {"/data": {}},
                 "Hostname": "abc", "StopSignal": "SIGTERM", "WorkingDir": ""}
    got = run_config(parent, effective)
    assert got == {"Env": ["PATH=/bin", "X=1"], "Cmd": ["top"],
                   "Healthcheck": {"Test": ["NONE"]}, "ExposedPorts": {"80/tcp": {}},
                   "Volumes": {"/data": {}}, "StopSignal": "SIGTERM"}
    assert parent["Labels"] == {"a": "1"}  # the parent's dict is not touched


def test_commit_pause_flag_reads_like_go_bool_flags() -> None:
    from hutch.cli.commit import _operands

    def ops(pause="true", container=None, repository=None):
        return _operands(Namespace(pause=pause, container=container, repository=repository))

    assert ops(container="c") == (True, "c", None)
    assert ops("false", "c", "r:t") == (False, "c", "r:t")
    assert ops("c", "r:t") == (True, "c", "r:t")      # hutch commit -p c r:t
    with pytest.raises(InvalidArgument, match="at least 1"):
        ops()
    with pytest.raises(InvalidArgument, match="at most 2"):
        ops("c", "r", "x")


def test_cp_arguments_split_like_docker() -> None:
    from hutch.cli.cp import split_cp_arg

    assert split_cp_arg("c1:/etc/passwd") == ("c1", "/etc/passwd")
    assert split_cp_arg("c1:rel:colon") == ("c1", "rel:colon")
    assert split_cp_arg("/abs/a:b") == ("", "/abs/a:b")
    assert split_cp_arg("./a:b") == ("", "./a:b")
    assert split_cp_arg("file") == ("", "file")
    assert split_cp_arg("-") == ("", "-")


def test_cp_paths_under_a_bind_mount_go_to_its_source(tmp_path: Path) -> None:
    from hutch.engine.copy import mount_for

    vol = tmp_path / "vol"
    vol.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    mounts = [{"destination": "/data", "type": "bind", "source": str(vol),
               "options": ["rbind", "rw"]},
              {"destination": "/data/ro", "type": "bind", "source": str(vol),
               "options": ["rbind", "ro"]},
              {"destination": "/etc/hosts", "type": "bind", "source": str(hosts)},
              {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}]
    assert mount_for("/rootfs", mounts, "/data/x/y").root == str(vol)
    assert mount_for("/rootfs", mounts, "/data/x/y").path == "/x/y"
    assert mount_for("/rootfs", mounts, "/data").path == "/"
    assert mount_for("/rootfs", mounts, "/data/ro/z").readonly
    assert mount_for("/rootfs", mounts, "/database").root == "/rootfs"
    assert mount_for("/rootfs", mounts, "/etc/hosts").path == "/hosts"
    with pytest.raises(NotFound):
        mount_for("/rootfs", mounts, "/etc/hosts/x")
    with pytest.raises(NotSupported, match="tmpfs"):
        mount_for("/rootfs", mounts, "/run/x")
