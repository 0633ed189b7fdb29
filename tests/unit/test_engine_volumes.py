"""Volumes: the store (layout, docker's names, filters, in-use rules, prune, races between
processes), the -v / --mount / --tmpfs parsers (docker's rules and messages), mount
resolution with image VOLUMEs, copy-up from a hostile rootfs, and the `volume` verbs.
No root needed: everything lives in tmp dirs."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from hutch.cli.main import main
from hutch.config import Settings
from hutch.engine import volumes
from hutch.engine.copyup import copy_up
from hutch.engine.mountspec import (
    TMPFS_DEFAULTS,
    MountSpec,
    Resolved,
    clean_path,
    merge_tmpfs_options,
    parse_mount_flag,
    parse_tmpfs_flag,
    parse_volume_flag,
    ram_in_bytes,
    resolve_mounts,
    tmpfs_mount,
)
from hutch.engine.store import ContainerRecord, ContainerStore
from hutch.engine.volumes import (
    ANONYMOUS_LABEL,
    Volume,
    VolumeStore,
    check_volume_name,
    containers_in_use,
    disk_usage,
    in_use,
)
from hutch.errors import FailedPrecondition, InvalidArgument, NotFound, NotSupported

pytestmark = pytest.mark.unit

CTX = multiprocessing.get_context("fork")
ROOT = os.geteuid() == 0
CID = "c" * 64


@pytest.fixture
def store(tmp_path: Path) -> VolumeStore:
    return VolumeStore(str(tmp_path / "volumes"), clock=lambda: 1_700_000_000.0)


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- the store ----------------------------------------------------------------------------

def test_a_named_volume_is_a_data_dir_and_metadata(store):
    vol = store.create("data", labels={"a": "b"})
    assert vol == Volume(name="data", mountpoint=os.path.join(store.root, "data", "_data"),
                         created=vol.created, labels={"a": "b"}, anonymous=False)
    assert os.path.isdir(vol.mountpoint) and os.listdir(vol.mountpoint) == []
    assert mode_of(vol.mountpoint) == 0o755
    assert mode_of(store.root) == 0o701
    meta = json.loads(Path(store.root, "data", "meta.json").read_text())
    assert meta["name"] == "data" and meta["labels"] == {"a": "b"}
    assert meta["driver"] == "local" and meta["anonymous"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", meta["created"])
    assert store.get("data") == vol
    assert not [n for n in os.listdir(store.root) if n.startswith(".tmp-")]


def test_to_docker_is_volume_inspect(store):
    vol = store.create("data", labels={"a": "b"})
    assert vol.to_docker() == {
        "CreatedAt": vol.created, "Driver": "local", "Labels": {"a": "b"},
        "Mountpoint": vol.mountpoint, "Name": "data", "Options": {}, "Scope": "local"}


def test_without_a_name_the_volume_is_anonymous_with_64_hex(store):
    vol = store.create()
    assert re.fullmatch(r"[0-9a-f]{64}", vol.name) and vol.anonymous
    assert vol.to_docker()["Labels"] == {ANONYMOUS_LABEL: ""}
    assert store.create().name != vol.name


def test_creating_an_existing_name_returns_it_as_is(store):
    first = store.create("data", labels={"a": "1"})
    Path(first.mountpoint, "f").write_text("keep")
    again = store.create("data", labels={"b": "2"})
    assert again == first and Path(again.mountpoint, "f").read_text() == "keep"


@pytest.mark.parametrize("bad", ["", "-x", ".x", "..", "x/y", "a b", "x:y", "é1", "_x"])
def test_invalid_names_are_refused_with_dockers_message(store, bad):
    with pytest.raises(InvalidArgument, match="includes invalid characters for a local "
                       r"volume name, only \"\[a-zA-Z0-9\]\[a-zA-Z0-9_.-\]\" are allowed"):
        store.create(bad)
    assert not os.path.exists(os.path.join(store.root, bad or "x", "_data"))


def test_a_one_character_name_is_too_short():
    with pytest.raises(InvalidArgument, match="create a: volume name is too short, names "
                       "should be at least two alphanumeric characters"):
        check_volume_name("a")
    assert check_volume_name("ab.c-d_1") == "ab.c-d_1"


def test_get_of_a_missing_or_invalid_name_is_not_found(store):
    for name in ("nope", "../etc", "a"):
        with pytest.raises(NotFound, match=f"no such volume: {re.escape(name)}"):
            store.get(name)


def test_damaged_metadata_still_names_a_volume(store):
    vol = store.create("data")
    Path(store.root, "data", "meta.json").write_text("{not json")
    got = store.get("data")
    assert got.name == "data" and got.mountpoint == vol.mountpoint and got.created
    os.unlink(os.path.join(store.root, "data", "meta.json"))
    assert store.get("data").name == "data"


def test_list_is_sorted_and_skips_leftovers(store):
    for name in ("zz", "aa", "mm"):
        store.create(name)
    os.mkdir(os.path.join(store.root, ".tmp-123"))
    os.mkdir(os.path.join(store.root, ".trash-123"))
    assert [v.name for v in store.list()] == ["aa", "mm", "zz"]
    assert VolumeStore(os.path.join(store.root, "missing")).list() == []


def test_list_filters(store):
    store.create("web-data", labels={"app": "web", "tier": "front"})
    store.create("sql-data", labels={"app": "sql"})
    anon = store.create()
    users = {"sql-data": [CID]}

    def names(**filters):
        return [v.name for v in store.list(filters, in_use=users)]

    assert names(dangling="true") == sorted([anon.name, "web-data"])
    assert names(dangling=["false"]) == ["sql-data"]
    assert names(dangling=["1", "0"]) == sorted([anon.name, "sql-data", "web-data"])
    assert names(name="web") == ["web-data"]
    assert names(name="^s.*ta$") == ["sql-data"]
    assert names(name=["web", "sql"]) == ["sql-data", "web-data"]
    assert names(label="app") == ["sql-data", "web-data"]
    assert names(label="app=web") == ["web-data"]
    assert names(label=["app", "tier=front"]) == ["web-data"]  # labels AND, as docker
    assert names(label=ANONYMOUS_LABEL) == [anon.name]
    assert names(**{"label!": "app"}) == [anon.name]
    assert names(driver="local", name="sql") == ["sql-data"]
    assert names(driver="nfs") == []
    with pytest.raises(InvalidArgument, match="invalid filter 'bogus'"):
        store.list({"bogus": "1"})
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        store.list({"dangling": "maybe"})


def test_remove_refuses_a_used_volume_with_dockers_message(store):
    store.create("data")
    ids = ["a" * 64, "b" * 64]
    with pytest.raises(FailedPrecondition, match=re.escape(
            f"remove data: volume is in use - [{ids[0]}, {ids[1]}]")):
        store.remove("data", in_use={"data": ids})
    with pytest.raises(FailedPrecondition, match="volume is in use"):
        store.remove("data", in_use={"data"}, force=True)  # -f never removes a used one
    store.remove("data", in_use={"other": ids})
    assert store.list() == [] and os.listdir(store.root) == [".lock"]


def test_remove_of_a_missing_volume_is_not_found_unless_forced(store):
    with pytest.raises(NotFound, match="no such volume: nope"):
        store.remove("nope", in_use={})
    store.remove("nope", in_use={}, force=True)


def test_prune_takes_only_unused_anonymous_volumes_unless_all(store):
    named = store.create("named")
    used = store.create()
    unused = store.create()
    Path(unused.mountpoint, "f").write_bytes(b"x" * 1000)
    Path(unused.mountpoint, "sub").mkdir()
    Path(unused.mountpoint, "sub", "g").write_bytes(b"y" * 24)
    os.link(Path(unused.mountpoint, "f"), Path(unused.mountpoint, "hard"))  # counted once
    users = {used.name: [CID]}
    assert store.prune(users) == ([unused.name], 1024)
    assert {v.name for v in store.list()} == {named.name, used.name}
    assert store.prune(users, all=True) == (["named"], 0)
    assert [v.name for v in store.list()] == [used.name]
    assert store.prune(set(), all=True) == ([used.name], 0)


def test_prune_label_filters_and_sweeps_leftovers(store):
    store.create("keep", labels={"keep": ""})
    store.create("drop")
    trash = os.path.join(store.root, ".trash-old")
    os.makedirs(os.path.join(trash, "_data"))
    assert store.prune({}, all=True, filters={"label!": ["keep"]}) == (["drop"], 0)
    assert not os.path.exists(trash)
    assert store.prune({}, all=True, filters={"label": "keep"}) == (["keep"], 0)


def test_disk_usage_counts_apparent_sizes_once(tmp_path):
    Path(tmp_path, "a").write_bytes(b"1" * 10)
    os.link(tmp_path / "a", tmp_path / "b")
    os.symlink("a", tmp_path / "l")
    assert disk_usage(str(tmp_path)) == 10 + 1  # the link's own size is its target's length


def _create_same(root: str, barrier, queue) -> None:
    barrier.wait()
    try:
        vol = VolumeStore(root).create("shared", labels={"pid": str(os.getpid())})
        queue.put(("ok", vol.name, vol.created, tuple(vol.labels.items())))
    except Exception as e:  # noqa: BLE001 - report to the parent
        queue.put(("error", repr(e)))


def test_two_processes_creating_one_name_both_get_the_same_volume(tmp_path):
    for round_ in range(10):
        root = str(tmp_path / f"r{round_}")
        barrier, queue = CTX.Barrier(3), CTX.Queue()
        procs = [CTX.Process(target=_create_same, args=(root, barrier, queue))
                 for _ in range(3)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert all(r[0] == "ok" for r in results), results
        assert len({r[1:] for r in results}) == 1  # one winner, the others adopted it
        assert sorted(os.listdir(root)) == ["shared"]
        assert sorted(os.listdir(os.path.join(root, "shared"))) == ["_data", "meta.json"]


def _try_lock(path: str, queue) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        queue.put("got it")
    except BlockingIOError:
        queue.put("blocked")
    finally:
        os.close(fd)


def test_lock_is_reentrant_and_excludes_other_processes(store):
    def other() -> str:
        queue = CTX.Queue()
        p = CTX.Process(target=_try_lock, args=(os.path.join(store.root, ".lock"), queue))
        p.start()
        p.join(timeout=30)
        return queue.get(timeout=5)

    with store.lock():
        with store.lock():
            store.remove("nope", in_use={}, force=True)  # takes the lock again inside
        assert other() == "blocked"
    assert other() == "got it"


def test_in_use_maps_volumes_to_container_ids():
    a = ContainerRecord(name="a", config={"volumes": ["v1", "v2"]})
    b = ContainerRecord(name="b", config={"volumes": ["v2", "v2"]})
    c = ContainerRecord(name="c")
    assert in_use([a, b, c]) == {"v1": [a.id], "v2": [a.id, b.id]}


def test_containers_in_use_reads_the_container_database(tmp_path):
    settings = Settings(root=str(tmp_path), run=str(tmp_path / "run"))
    assert containers_in_use(settings) == {}
    assert not os.path.exists(tmp_path / "containers.db")  # reading made nothing
    with ContainerStore(str(tmp_path / "containers.db")) as db:
        rec = db.create(ContainerRecord(name="web", image="busybox",
                                        config={"volumes": ["data"]}))
        db.update(rec.id, state="exited")  # stopped containers still hold their volumes
    assert containers_in_use(settings) == {"data": [rec.id]}


# --- -v -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("/host:/ctr", dict(type="bind", source="/host", target="/ctr")),
    ("/host:/ctr:ro", dict(type="bind", source="/host", target="/ctr", readonly=True)),
    ("/host:/ctr:rw", dict(type="bind", source="/host", target="/ctr")),
    ("/host:/ctr:ro,Z", dict(type="bind", source="/host", target="/ctr", readonly=True)),
    ("/host:/ctr:z,rshared", dict(type="bind", source="/host", target="/ctr",
                                  propagation="rshared")),
    ("/host:/ctr:slave,cached", dict(type="bind", source="/host", target="/ctr",
                                     propagation="slave")),
    ("/h//x/../y/:/a/./b/../c/", dict(type="bind", source="/h/y", target="/a/c")),
    ("/host://ctr", dict(type="bind", source="/host", target="/ctr")),
    ("data:/ctr", dict(type="volume", source="data", target="/ctr")),
    ("data:/ctr:ro,nocopy", dict(type="volume", source="data", target="/ctr",
                                 readonly=True, nocopy=True)),
    ("my_vol.1-x:/ctr:Z", dict(type="volume", source="my_vol.1-x", target="/ctr")),
    ("/ctr", dict(type="volume", source="", target="/ctr")),
    ("/ctr/", dict(type="volume", source="", target="/ctr")),
])
def test_volume_flag_accepts_dockers_forms(text, want):
    spec = parse_volume_flag(text)
    assert spec == MountSpec(flag="-v", raw=text, **want)


def test_volume_flag_makes_dot_slash_sources_absolute(tmp_path):
    assert parse_volume_flag("./data:/x", cwd=str(tmp_path)).source == str(tmp_path / "data")
    assert parse_volume_flag(".:/x", cwd=str(tmp_path)).source == str(tmp_path)
    assert parse_volume_flag("./a/../b:/x", cwd="/w").source == "/w/b"


@pytest.mark.parametrize("text, message", [
    ("", "invalid volume specification: ''"),
    (":/x", "invalid volume specification: ':/x'"),
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    ("/a:/b:ro:extra", "invalid volume specification: '/a:/b:ro:extra'"),
    ("/ctr:ro", "invalid volume specification: '/ctr:ro'"),
    ("/ctr:rw,nocopy", "invalid volume specification: '/ctr:rw,nocopy'"),
    ("/a:", "invalid volume specification: '/a:'"),
    ("/a:/b:foo", "invalid mode: foo"),
    ("/a:/b:ro,rw", "invalid mode: ro,rw"),
    ("/a:/b:ro,ro", "invalid mode: ro,ro"),
    ("/a:/b:shared,private", "invalid mode: shared,private"),
    ("/a:/b:z,Z", "invalid mode: z,Z"),
    ("/a:/b:nocopy,nocopy", "invalid mode: nocopy,nocopy"),
    ("/a:/b:ro,", "invalid mode: ro,"),
    ("/a:/b:RO", "invalid mode: RO"),
    ("/a:/b:nocopy", "invalid volume specification: '/a:/b:nocopy': invalid mount config "
                     'for type "bind": field VolumeOptions must not be specified'),
    ("vol:/b:shared", "invalid volume specification: 'vol:/b:shared': invalid mount config "
                      'for type "volume": field BindOptions must not be specified'),
    ("/a:rel", "invalid volume specification: '/a:rel': invalid mount config for type "
               "\"bind\": invalid mount path: 'rel' mount path must be absolute"),
    ("rel", "invalid mount path: 'rel' mount path must be absolute"),
    ("/a:/", "invalid volume specification: '/a:/': invalid mount config for type \"bind\": "
             "invalid specification: destination can't be '/'"),
    ("vol:/..", "destination can't be '/'"),
    ("/", "destination can't be '/'"),
    ("foo/bar:/x", 'create foo/bar: "foo/bar" includes invalid characters'),
    ("~:/x", "create ~: volume name is too short"),
    ("../up:/x", "includes invalid characters"),
])
def test_volume_flag_refuses_what_docker_refuses(text, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_volume_flag(text)


# --- --mount ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("type=bind,source=/a,target=/b", dict(type="bind", source="/a", target="/b")),
    ("type=bind,src=/a,dst=/b,readonly", dict(type="bind", source="/a", target="/b",
                                              readonly=True)),
    ("type=bind,src=/a,destination=/b/,ro=true,bind-propagation=RShared",
     dict(type="bind", source="/a", target="/b", readonly=True, propagation="rshared")),
    ("type=bind,src=/a,dst=/b,ro=0,bind-nonrecursive",
     dict(type="bind", source="/a", target="/b", nonrecursive=True)),
    ("TYPE=BIND,Src=/a,dst=/b,consistency=cached", dict(type="bind", source="/a",
                                                       target="/b")),
    ('type=bind,"src=/a,b",dst=/x', dict(type="bind", source="/a,b", target="/x")),
    ("target=/x", dict(type="volume", source="", target="/x")),
    ("type=volume,src=vol,dst=/x,volume-nocopy", dict(type="volume", source="vol",
                                                      target="/x", nocopy=True)),
    ("type=volume,src=vol,dst=/x,volume-nocopy=false,volume-driver=local",
     dict(type="volume", source="vol", target="/x")),
    ("src=vol,dst=/x,volume-label=a=b,volume-label=c,volume-label==d",
     dict(type="volume", source="vol", target="/x", labels={"a": "b", "c": ""})),
    ("type=tmpfs,dst=/t", dict(type="tmpfs", target="/t")),
    ("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1777",
     dict(type="tmpfs", target="/t", tmpfs_options=("mode=1777", "size=64m"))),
    ("type=tmpfs,dst=/t,tmpfs-size=1000,readonly",
     dict(type="tmpfs", target="/t", readonly=True, tmpfs_options=("ro", "size=1000"))),
    ("type=tmpfs,dst=/t,tmpfs-size=2g,tmpfs-mode=700",
     dict(type="tmpfs", target="/t", tmpfs_options=("mode=700", "size=2g"))),
])
def test_mount_flag_accepts_dockers_forms(text, want):
    assert parse_mount_flag(text) == MountSpec(flag="--mount", raw=text, **want)


def test_mount_flag_makes_dot_sources_absolute(tmp_path):
    spec = parse_mount_flag("type=bind,src=./d,dst=/x", cwd=str(tmp_path))
    assert spec.source == str(tmp_path / "d")


@pytest.mark.parametrize("text, message", [
    ("src=/a", 'invalid argument "src=/a" for "--mount" flag: target is required'),
    ("type=,dst=/x", "type is required"),
    ("foo,dst=/x", "invalid field 'foo' must be a key=value pair"),
    ("bogus=1,dst=/x", "unexpected key 'bogus' in 'bogus=1'"),
    ("type=bind,src=/a,dst=/x,readonly=maybe", "invalid value for readonly: maybe"),
    ("type=volume,dst=/x,volume-nocopy=2", "invalid value for volume-nocopy: 2"),
    ("type=tmpfs,dst=/x,tmpfs-size=lots", "invalid value for tmpfs-size: lots"),
    ("type=tmpfs,dst=/x,tmpfs-mode=999", "invalid value for tmpfs-mode: 999"),
    ("type=bind,src=/a,dst=/x,volume-nocopy",
     "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=volume,dst=/x,bind-propagation=shared",
     "cannot mix 'bind-*' options with mount type 'volume'"),
    ("type=bind,src=/a,dst=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type "
                                              "'bind'"),
    ("type=bind,dst=/x", 'invalid mount config for type "bind": field Source must not be '
                         "empty"),
    ("type=bind,src=rel,dst=/x", "invalid mount path: 'rel' mount path must be absolute"),
    ("type=bind,src=/a,dst=rel", "invalid mount path: 'rel' mount path must be absolute"),
    ("type=bind,src=/a,dst=/", "destination can't be '/'"),
    ("type=bind,src=/a,dst=/x,bind-propagation=bogus", "invalid propagation mode: bogus"),
    ("type=foo,dst=/x", 'invalid mount config for type "foo": mount type unknown'),
    ("type=tmpfs,src=/a,dst=/x", 'for type "tmpfs": field Source must not be specified'),
    ("type=volume,dst=/x,readonly", "must not set ReadOnly mode when using anonymous volumes"),
    ("type=volume,src=a/b,dst=/x", "includes invalid characters"),
])
def test_mount_flag_refuses_what_docker_refuses(text, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_mount_flag(text)


@pytest.mark.parametrize("text", ["type=volume,dst=/x,volume-driver=nfs",
                                  "type=volume,dst=/x,volume-opt=type=nfs",
                                  "type=volume,src=v,dst=/x,volume-subpath=a"])
def test_mount_flag_volume_driver_options_are_not_supported(text):
    with pytest.raises(NotSupported):
        parse_mount_flag(text)


# --- --tmpfs ------------------------------------------------------------------------------

def test_tmpfs_flag_passes_options_through():
    assert parse_tmpfs_flag("/run") == MountSpec(type="tmpfs", target="/run", flag="--tmpfs",
                                                 raw="/run")
    spec = parse_tmpfs_flag("/run/:size=64m,mode=1777,exec")
    assert spec.target == "/run" and spec.tmpfs_options == ("size=64m", "mode=1777", "exec")


@pytest.mark.parametrize("text, message", [
    ("run", "invalid mount path: 'run' mount path must be absolute"),
    ("/", "invalid specification: destination can't be '/'"),
    ("/x:bogus", 'invalid tmpfs option "bogus"'),
    ("/x:foo=1", 'invalid tmpfs option "foo=1"'),
    ("/x:size", 'invalid tmpfs option "size"'),
])
def test_tmpfs_flag_refuses_bad_paths_and_options(text, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_tmpfs_flag(text)


def test_tmpfs_options_merge_like_moby():
    assert TMPFS_DEFAULTS == ("noexec", "nosuid", "nodev", "rprivate")
    assert tmpfs_mount("/t/") == {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                  "options": ["noexec", "nosuid", "nodev", "rprivate"]}
    assert tmpfs_mount("/t", ["exec", "size=64m"])["options"] == [
        "nosuid", "nodev", "rprivate", "exec", "size=64m"]
    assert merge_tmpfs_options(["size=1m", "ro", "defaults", "rw", "size=2m", "shared"]) == [
        "rw", "size=2m", "shared"]
    assert merge_tmpfs_options(["suid", "nosuid", "mode=700", "uid=1", "gid=2"]) == [
        "nosuid", "mode=700", "uid=1", "gid=2"]


def test_ram_in_bytes_and_clean_path():
    assert ram_in_bytes("64m") == 64 << 20
    assert ram_in_bytes("1g") == ram_in_bytes("1GiB") == ram_in_bytes("1gb") == 1 << 30
    assert ram_in_bytes("512") == 512 and ram_in_bytes("1.5k") == 1536
    with pytest.raises(ValueError):
        ram_in_bytes("1x")
    assert clean_path("//x//y/../z/") == "/x/z" and clean_path("/..") == "/"


# --- resolve_mounts -----------------------------------------------------------------------

def bind(dest, source, *opts):
    return {"destination": dest, "type": "bind", "source": source, "options": list(opts)}


def test_image_volumes_become_anonymous_volumes_with_copy_up(store):
    res = resolve_mounts([], ["/data", "/var/log/", "data"], store, container_id=CID)
    assert isinstance(res, Resolved)
    assert len(res.anonymous) == 2 and res.volumes == res.anonymous
    vols = [store.get(n) for n in res.anonymous]
    assert all(v.anonymous for v in vols)
    assert res.mounts == [bind("/data", vols[0].mountpoint, "rbind", "rw", "rprivate"),
                          bind("/var/log", vols[1].mountpoint, "rbind", "rw", "rprivate")]
    assert res.copy_up == [(vols[0].mountpoint, "/data"), (vols[1].mountpoint, "/var/log")]
    meta = json.loads(Path(store.root, vols[0].name, "meta.json").read_text())
    assert meta["created_for"] == CID


def test_user_mounts_cover_image_volumes_at_the_same_place(store, tmp_path):
    specs = [parse_volume_flag("named:/data"),
             parse_volume_flag(f"{tmp_path}:/logs:ro"),
             parse_tmpfs_flag("/cache"),
             parse_volume_flag("/data"),  # docker: Config.Volumes, covered by named:/data
             parse_volume_flag("/extra")]
    res = resolve_mounts(specs, ["/data", "/logs", "/cache", "/other", "/extra"], store,
                         container_id=CID)
    named = store.get("named")
    assert len(res.anonymous) == 2  # /extra (-v /extra and the image's, one volume), /other
    extra, other = (store.get(n) for n in res.anonymous)
    assert res.volumes == ["named", *res.anonymous]
    assert res.mounts == [
        bind("/data", named.mountpoint, "rbind", "rw", "rprivate"),
        bind("/logs", str(tmp_path), "rbind", "ro", "rprivate"),
        {"destination": "/cache", "type": "tmpfs", "source": "tmpfs",
         "options": ["noexec", "nosuid", "nodev", "rprivate"]},
        bind("/extra", extra.mountpoint, "rbind", "rw", "rprivate"),
        bind("/other", other.mountpoint, "rbind", "rw", "rprivate"),
    ]
    assert res.copy_up == [(named.mountpoint, "/data"), (extra.mountpoint, "/extra"),
                           (other.mountpoint, "/other")]


def test_mount_options_propagation_readonly_nocopy_and_labels(store, tmp_path):
    specs = [parse_mount_flag(f"type=bind,src={tmp_path},dst=/a,bind-propagation=rslave,"
                              "bind-nonrecursive"),
             parse_volume_flag(f"{tmp_path}:/b:shared"),
             parse_mount_flag("type=volume,src=vol,dst=/c,readonly,volume-nocopy,"
                              "volume-label=k=v"),
             parse_volume_flag("vol:/d"),
             parse_mount_flag("type=volume,dst=/e"),
             parse_mount_flag("type=tmpfs,dst=/f,tmpfs-size=1m,tmpfs-mode=1777,readonly")]
    res = resolve_mounts(specs, [], store, container_id=CID)
    vol = store.get("vol")
    assert vol.labels == {"k": "v"} and not vol.anonymous
    (anon,) = res.anonymous
    assert res.volumes == ["vol", anon]
    assert res.mounts[:4] == [
        bind("/a", str(tmp_path), "bind", "rw", "rslave"),
        bind("/b", str(tmp_path), "rbind", "rw", "shared"),
        bind("/c", vol.mountpoint, "rbind", "ro", "rprivate"),
        bind("/d", vol.mountpoint, "rbind", "rw", "rprivate"),
    ]
    assert res.mounts[5] == {"destination": "/f", "type": "tmpfs", "source": "tmpfs",
                             "options": ["noexec", "nosuid", "nodev", "rprivate", "ro",
                                         "mode=1777", "size=1m"]}
    # nocopy at /c; the same volume at /d copies (copy_up skips a volume with content)
    assert res.copy_up == [(vol.mountpoint, "/d"), (store.get(anon).mountpoint, "/e")]


@pytest.mark.parametrize("flags", [
    ["-v", "/a:/x", "-v", "vol:/x/"],
    ["-v", "/a:/x", "--mount", "type=bind,src=/,dst=/x"],
    ["--tmpfs", "/x", "-v", "vol:/x"],
    ["--mount", "type=volume,dst=/x", "--mount", "type=tmpfs,dst=//x"],
])
def test_two_user_mounts_at_one_place_are_a_duplicate_mount_point(store, flags):
    parse = {"-v": parse_volume_flag, "--mount": parse_mount_flag,
             "--tmpfs": parse_tmpfs_flag}
    specs = [parse[flags[i]](flags[i + 1]) for i in range(0, len(flags), 2)]
    with pytest.raises(InvalidArgument, match="^Duplicate mount point: /x$"):
        resolve_mounts(specs, ["/img"], store, container_id=CID)
    assert store.list() == []  # checked before anything was created


def test_bind_sources_mount_needs_it_volume_flag_creates_it(store, tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(InvalidArgument, match=re.escape(
            f'invalid mount config for type "bind": bind source path does not exist: '
            f"{missing}")):
        resolve_mounts([parse_mount_flag(f"type=bind,src={missing},dst=/x")], ["/img"],
                       store, container_id=CID)
    assert store.list() == [] and not missing.exists()
    res = resolve_mounts([parse_volume_flag(f"{missing}/deep:/x")], [], store,
                         container_id=CID)
    assert (missing / "deep").is_dir() and mode_of(missing / "deep") & 0o755 == 0o755
    assert res.mounts == [bind("/x", f"{missing}/deep", "rbind", "rw", "rprivate")]


def test_a_failure_midway_removes_the_anonymous_volumes_it_created(store):
    class Failing(VolumeStore):
        calls = 0

        def create(self, name=None, **kw):
            Failing.calls += 1
            if Failing.calls == 2:
                raise OSError(28, "No space left on device")
            return super().create(name, **kw)

    failing = Failing(store.root)
    with pytest.raises(OSError, match="No space"):
        resolve_mounts([], ["/a", "/b"], failing, container_id=CID)
    assert store.list() == []


def test_an_image_volume_on_root_is_refused(store):
    with pytest.raises(InvalidArgument, match="cannot be mounted on '/'"):
        resolve_mounts([], ["/"], store, container_id=CID)


# --- copy_up ------------------------------------------------------------------------------

@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    data = root / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "file").write_text("hello")
    (data / "sub" / "deeper" / "f2").write_bytes(os.urandom(3 << 20))  # > one chunk
    (data / "exec").write_text("#!/bin/sh\n")
    os.chmod(data / "exec", 0o4755)
    os.chmod(data / "sub", 0o750)
    os.link(data / "file", data / "sub" / "hardlink")
    os.symlink("/etc/passwd", data / "abs-link")
    os.symlink("../../../../../../etc", data / "rel-link")
    os.symlink("file", data / "plain-link")
    os.mkfifo(data / "fifo", 0o640)
    os.utime(data / "file", ns=(1_000_000_000, 2_000_000_000))
    os.utime(data / "sub", ns=(3_000_000_000, 4_000_000_000))
    os.chmod(data, 0o710)
    return root


def snapshot(path: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = os.lstat(p)
            info = [stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                info.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                info += [p.read_bytes(), st.st_mtime_ns]
            out[str(p.relative_to(path))] = info
    return out


def test_copy_up_copies_the_tree_as_is(store, rootfs):
    vol = store.create("data")
    assert copy_up(vol.mountpoint, str(rootfs), "/data") is True
    assert snapshot(Path(vol.mountpoint)) == snapshot(rootfs / "data")
    dst = Path(vol.mountpoint)
    assert mode_of(dst) == 0o710  # the volume's root takes the target's mode, like docker
    assert os.readlink(dst / "abs-link") == "/etc/passwd"  # links stay links
    assert os.lstat(dst / "file").st_ino == os.lstat(dst / "sub" / "hardlink").st_ino
    assert os.stat(dst / "sub").st_mtime_ns == 4_000_000_000
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)


@pytest.mark.skipif(not ROOT, reason="chown to another user needs root")
def test_copy_up_keeps_owners(store, rootfs):
    os.chown(rootfs / "data" / "file", 1234, 5678)
    os.chown(rootfs / "data" / "abs-link", 42, 43, follow_symlinks=False)
    os.chown(rootfs / "data", 7, 8)
    vol = store.create("data")
    copy_up(vol.mountpoint, str(rootfs), "/data")
    st = os.lstat(Path(vol.mountpoint, "file"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    st = os.lstat(Path(vol.mountpoint, "abs-link"))
    assert (st.st_uid, st.st_gid) == (42, 43)
    assert (os.stat(vol.mountpoint).st_uid, os.stat(vol.mountpoint).st_gid) == (7, 8)
    assert mode_of(Path(vol.mountpoint, "exec")) == 0o4755  # set-id survives the chown


def test_copy_up_keeps_user_xattrs(store, rootfs):
    try:
        os.setxattr(rootfs / "data" / "file", "user.note", b"kept")
        os.setxattr(rootfs / "data" / "file", "trusted.overlay.opaque", b"y")
    except OSError as e:
        if e.errno not in (95, 1):  # ENOTSUP, EPERM (trusted.* without root)
            raise
    if b"kept" != _getxattr(rootfs / "data" / "file", "user.note"):
        pytest.skip("no user xattrs on this filesystem")
    vol = store.create("data")
    copy_up(vol.mountpoint, str(rootfs), "/data")
    assert _getxattr(Path(vol.mountpoint, "file"), "user.note") == b"kept"
    assert _getxattr(Path(vol.mountpoint, "file"), "trusted.overlay.opaque") is None


def _getxattr(path, name):
    try:
        return os.getxattr(path, name)
    except OSError:
        return None


def test_copy_up_skips_a_volume_with_content_or_a_missing_target(store, rootfs):
    vol = store.create("data")
    Path(vol.mountpoint, "mine").write_text("x")
    assert copy_up(vol.mountpoint, str(rootfs), "/data") is False
    assert os.listdir(vol.mountpoint) == ["mine"]
    empty = store.create("empty")
    assert copy_up(empty.mountpoint, str(rootfs), "/nothing/here") is False
    assert copy_up(empty.mountpoint, str(rootfs), "/data/file") is False  # not a directory
    assert os.listdir(empty.mountpoint) == []


@pytest.fixture
def hostile(tmp_path: Path):
    """A rootfs whose paths point at a host directory with a secret, absolutely and
    with "..", and a host directory that must stay untouched."""
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "shadow").write_text("SECRET")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "inside").write_text("image etc")
    (root / "real").mkdir()
    (root / "real" / "f").write_text("real")
    os.symlink(str(secret), root / "abs")  # host path: resolves to rootfs/<that path>
    os.symlink("/etc", root / "etc-link")  # to the image's /etc, never the host's
    os.symlink("../../../../../../../../", root / "up")  # clamps at the rootfs
    os.symlink(f"../../../../../../../..{secret}", root / "up-secret")
    os.symlink("/", root / "slash")
    (root / "dir").mkdir()
    os.symlink(str(secret), root / "dir" / "escape")  # inside the copied tree
    os.symlink("/proc/self/root", root / "magic")
    return root, secret


def secret_leaked(path: str) -> bool:
    for dirpath, _dirnames, filenames in os.walk(path):  # os.walk never follows links
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p) and Path(p).read_bytes() == b"SECRET":
                return True
    return False


@pytest.mark.parametrize("target, copied", [
    ("/abs", None), ("/up-secret", None), ("/magic", None),
    ("/etc-link", ["inside"]),
    ("/up/etc", ["inside"]),
    ("/slash/real", ["f"]),
    ("/../../real", ["f"]),
    ("/dir", ["escape"]),
])
def test_copy_up_never_leaves_the_rootfs(store, hostile, target, copied):
    root, secret = hostile
    vol = store.create("data")
    try:
        done = copy_up(vol.mountpoint, str(root), target)
    except OSError:
        done = False  # e.g. ELOOP for a magic link: refusing is fine, leaking is not
    assert done is (copied is not None)
    assert sorted(os.listdir(vol.mountpoint)) == (copied or [])
    assert not secret_leaked(vol.mountpoint)
    assert os.listdir(secret) == ["shadow"]  # nothing written on the host side
    if copied == ["escape"]:
        assert os.readlink(Path(vol.mountpoint, "escape")) == str(secret)


def test_copy_up_of_the_whole_root_through_dotdot_stays_inside(store, hostile):
    root, secret = hostile
    vol = store.create("data")
    assert copy_up(vol.mountpoint, str(root), "/up") is True
    assert sorted(os.listdir(vol.mountpoint)) == sorted(os.listdir(root))
    assert not secret_leaked(vol.mountpoint)
    assert Path(vol.mountpoint, "etc", "inside").read_text() == "image etc"


def test_copy_up_refuses_a_volume_dir_that_is_a_symlink(store, tmp_path, rootfs):
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.symlink(other, tmp_path / "link")
    with pytest.raises(OSError):
        copy_up(str(tmp_path / "link"), str(rootfs), "/data")
    assert os.listdir(other) == []


def _copy_up_child(volume: str, rootfs: str, barrier, queue) -> None:
    barrier.wait()
    try:
        queue.put(copy_up(volume, rootfs, "/data"))
    except Exception as e:  # noqa: BLE001 - report to the parent
        queue.put(repr(e))


def test_two_containers_copying_into_one_volume_copy_once(store, rootfs):
    vol = store.create("data")
    barrier, queue = CTX.Barrier(2), CTX.Queue()
    procs = [CTX.Process(target=_copy_up_child, args=(vol.mountpoint, str(rootfs), barrier,
                                                      queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert results == [False, True]
    assert snapshot(Path(vol.mountpoint)) == snapshot(rootfs / "data")


def test_deep_trees_do_not_hit_the_recursion_limit(store, tmp_path):
    root = tmp_path / "rootfs"
    deep = root / "data"
    deep.mkdir(parents=True)
    path = deep
    for _ in range(300):  # 2 fds a level: stays under the usual 1024 fd limit
        path = path / "d"
        path.mkdir()
    (path / "leaf").write_text("deep")
    vol = store.create("data")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        assert copy_up(vol.mountpoint, str(root), "/data")
    finally:
        sys.setrecursionlimit(old)
    assert Path(vol.mountpoint, *(["d"] * 300), "leaf").read_text() == "deep"


# --- the volume verbs ---------------------------------------------------------------------

@pytest.fixture
def hutch(tmp_path, capsys, monkeypatch):
    base = ["--root", str(tmp_path / "root"), "--run", str(tmp_path / "run")]

    def call(*argv, stdin: str = ""):
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main([*base, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_volume_create_ls_inspect(hutch, tmp_path):
    assert hutch("volume", "create", "--label", "a=b", "--label", "flag", "web") == (
        0, "web\n", "")
    code, out, _ = hutch("volume", "create")
    anon = out.strip()
    assert code == 0 and re.fullmatch(r"[0-9a-f]{64}", anon)
    code, out, _ = hutch("volume", "ls")
    assert out.splitlines() == ["DRIVER    VOLUME NAME", f"local     {anon}", "local     web"]
    assert hutch("volume", "ls", "-q", "--filter", "label=a=b")[1] == "web\n"
    assert hutch("volume", "ls", "--format", "{{.Name}} {{.Labels}}", "-f", "name=we")[1] == (
        "web a=b,flag=\n")
    code, out, _ = hutch("volume", "ls", "--format", "json", "--filter", "name=web")
    line = json.loads(out)
    assert line["Name"] == "web" and line["Driver"] == "local" and line["Scope"] == "local"
    assert line["Mountpoint"] == str(tmp_path / "root" / "volumes" / "web" / "_data")
    code, out, _ = hutch("volume", "ls", "--format", "table {{.Name}}\\t{{.Scope}}")
    assert out.splitlines()[0] == "VOLUME NAME" + " " * 56 + "SCOPE"
    code, out, err = hutch("volume", "inspect", "web", "nope")
    assert code == 1 and err == "Error: no such volume: nope\n"
    (info,) = json.loads(out)
    assert info["Name"] == "web" and info["Labels"] == {"a": "b", "flag": ""}
    assert out.startswith('[\n    {\n        "CreatedAt"')
    assert hutch("volume", "inspect", "-f", "{{.Name}}:{{json .Labels}}", "web")[1] == (
        'web:{"a":"b","flag":""}\n')


def test_volume_create_refuses_other_drivers_and_bad_names(hutch):
    assert hutch("volume", "create", "-d", "nfs", "x1")[0] == 1
    assert hutch("volume", "create", "-o", "type=tmpfs", "x1")[0] == 1
    code, _, err = hutch("volume", "create", "a/b")
    assert code == 1 and "includes invalid characters" in err
    assert hutch("volume", "ls", "-q") == (0, "", "")


def test_volume_rm_and_in_use(hutch, tmp_path):
    hutch("volume", "create", "used")
    hutch("volume", "create", "free")
    with ContainerStore(str(tmp_path / "root" / "containers.db")) as db:
        rec = db.create(ContainerRecord(name="c1", image="busybox",
                                        config={"volumes": ["used"]}))
    code, out, err = hutch("volume", "rm", "used", "free", "nope")
    assert code == 1 and out == "free\n"
    assert f"Error: remove used: volume is in use - [{rec.id}]\n" in err
    assert "Error: no such volume: nope\n" in err
    assert hutch("volume", "rm", "-f", "nope") == (0, "nope\n", "")
    assert hutch("volume", "ls", "-q", "--filter", "dangling=false")[1] == "used\n"
    assert hutch("volume", "ls", "-q", "--filter", "dangling=true")[1] == ""


def test_volume_prune_asks_and_reports(hutch, tmp_path):
    hutch("volume", "create", "named")
    anon = hutch("volume", "create")[1].strip()
    Path(tmp_path, "root", "volumes", anon, "_data", "f").write_bytes(b"z" * 1500)
    code, out, _ = hutch("volume", "prune")  # no answer: no
    assert code == 0 and "Are you sure you want to continue? [y/N] \n" in out
    assert out.endswith("Total reclaimed space: 0B\n")
    assert len(hutch("volume", "ls", "-q")[1].split()) == 2
    code, out, _ = hutch("volume", "prune", stdin="y\n")
    assert out.split("[y/N] ")[1] == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 1.5kB\n"
    assert hutch("volume", "prune", "-f") == (0, "Total reclaimed space: 0B\n", "")
    assert hutch("volume", "prune", "-a", "-f")[1] == (
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n")
    assert hutch("volume", "prune", "-f", "--filter", "dangling=true")[0] == 1


def test_volumes_reexports_moved_names():
    """The engine uses `volumes.parse_volume_flag` etc.: the split must not break that."""
    from hutch.engine import copyup, mountspec

    for name in ("MountSpec", "Resolved", "parse_volume_flag", "parse_mount_flag",
                 "parse_tmpfs_flag", "resolve_mounts", "tmpfs_mount", "merge_tmpfs_options",
                 "clean_path", "ram_in_bytes", "TMPFS_DEFAULTS", "PROPAGATIONS",
                 "DEFAULT_PROPAGATION"):
        assert getattr(volumes, name) is getattr(mountspec, name)
    assert volumes.copy_up is copyup.copy_up
    assert set(volumes.__all__) <= set(dir(volumes))
