"""save/load/import without root: archives built here with tarfile, a real content store
and metadata database in a temp dir, unpacking turned off (unpack=False). What is
checked: formats written, formats read, names, digests kept, hostile archives refused
with one message and no trace left in the store, --change parsing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from hutch.config import Settings
from hutch.errors import InvalidArgument, NotFound
from hutch.image._ingest import id_name
from hutch.image.archive_io import load
from hutch.image.importer import apply_changes, import_
from hutch.image.save import save
from hutch.image.service import ImageService

pytestmark = pytest.mark.unit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes], *, extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            t.addfile(ti, io.BytesIO(data))
        for ti in extra:
            t.addfile(ti)
    return buf.getvalue()


def tar_of(members: dict[str, bytes], *, links: dict[str, str] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        for name, target in dict(links).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)
    return buf.getvalue()


class Image:
    def __init__(self, n_layers: int = 1, tag: str = "latest", seed: str = "") -> None:
        self.tars = [layer_tar({f"f{i}": f"layer {i}{seed}".encode() * 100})
                     for i in range(n_layers)]
        self.layers = [gzip.compress(t, mtime=0) for t in self.tars]
        self.config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in self.tars]},
        }, sort_keys=True).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha(x), "size": len(x)}
                       for x in self.layers]}).encode()
        self.tag = tag

    def blobs(self) -> dict[str, bytes]:
        return {f"blobs/sha256/{sha(b)[7:]}": b
                for b in [*self.layers, self.config, self.manifest]}

    def oci_archive(self, name: str | None = None) -> bytes:
        ann = {"org.opencontainers.image.ref.name": self.tag}
        if name:
            ann["io.containerd.image.name"] = name
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha(self.manifest),
             "size": len(self.manifest), "annotations": ann}]}
        return tar_of({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                       "index.json": json.dumps(index).encode(), **self.blobs()})

    def docker_archive(self, tags=("busybox:latest",)) -> bytes:
        """skopeo's layout: <hex>.tar, <hex>.json, <id>/layer.tar -> ../<hex>.tar."""
        members = {f"{sha(self.config)[7:]}.json": self.config}
        links = {}
        for i, t in enumerate(self.tars):
            members[f"{sha(t)[7:]}.tar"] = t
            links[f"id{i}/layer.tar"] = f"../{sha(t)[7:]}.tar"
        members["manifest.json"] = json.dumps([{
            "Config": f"{sha(self.config)[7:]}.json", "RepoTags": list(tags),
            "Layers": [f"id{i}/layer.tar" for i in range(len(self.tars))]}]).encode()
        return tar_of(members, links=links)


@pytest.fixture
def svc(tmp_path: Path):
    s = ImageService(Settings(root=str(tmp_path / "root"), run=str(tmp_path / "run")))
    yield s
    s.close()


def state(svc) -> tuple:
    return (sorted((r.name, r.target) for r in svc.meta.list_images()),
            sorted(svc.content.walk()))


# -- load --------------------------------------------------------------------------------

def test_load_of_an_oci_archive_keeps_its_digests_and_names_it(svc):
    img = Image(2)
    (loaded,) = load(svc, io.BytesIO(img.oci_archive("example.com/a/b:1")), unpack=False)
    assert loaded.name == "example.com/a/b:1" and loaded.tagged
    assert loaded.id == sha(img.config)
    ref = svc.lookup("example.com/a/b:1")
    assert ref.record.target == sha(img.manifest)
    assert [x.digest for x in ref.manifest.layers] == [sha(x) for x in img.layers]


def test_an_oci_archive_with_only_a_tag_is_kept_under_its_id(svc):
    img = Image()
    (loaded,) = load(svc, io.BytesIO(img.oci_archive()), unpack=False)
    assert not loaded.tagged and loaded.name == id_name(sha(img.config))
    assert svc.lookup(sha(img.config)[7:19]).id == sha(img.config)


def test_load_of_a_gzipped_archive_and_of_a_layout_directory(svc, tmp_path):
    img = Image()
    load(svc, io.BytesIO(gzip.compress(img.oci_archive("x:1"))), unpack=False)
    d = tmp_path / "layout"
    with tarfile.open(fileobj=io.BytesIO(img.oci_archive("y:2"))) as t:
        t.extractall(d)
    (loaded,) = load(svc, str(d), unpack=False)
    assert loaded.name == "docker.io/library/y:2"


def test_load_of_a_skopeo_docker_archive_gzips_layers_and_keeps_the_config(svc):
    img = Image(2)
    (loaded,) = load(svc, io.BytesIO(img.docker_archive()), unpack=False)
    assert loaded.name == "docker.io/library/busybox:latest"
    ref = svc.lookup("busybox")
    assert ref.id == sha(img.config)
    assert ref.manifest.diff_ids == [sha(t) for t in img.tars]
    for layer, t in zip(ref.manifest.layers, img.tars, strict=True):
        assert layer.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        with svc.content.open(layer.digest) as f:
            assert gzip.decompress(f.read()) == t
    # Only what the image uses is left: no plain copies of the layers.
    assert len(list(svc.content.walk())) == 2 + 2


def test_loading_the_same_docker_archive_twice_gives_the_same_manifest(svc):
    img = Image()
    load(svc, io.BytesIO(img.docker_archive()), unpack=False)
    first = svc.lookup("busybox").record.target
    load(svc, io.BytesIO(img.docker_archive(tags=("other:1",))), unpack=False)
    assert svc.lookup("other:1").record.target == first


@pytest.mark.parametrize("case", [
    "dotdot-entry", "link-escape", "missing-layer", "corrupt-blob", "diff-id-mismatch",
    "huge-declared-size", "not-an-archive", "empty", "bad-manifest-json", "truncated",
])
def test_a_hostile_archive_is_refused_and_leaves_the_store_as_it_was(svc, case):
    good = Image()
    load(svc, io.BytesIO(good.oci_archive("keep:1")), unpack=False)
    before = state(svc)
    img = Image(tag="x", seed="other")
    if case == "dotdot-entry":
        data = tar_of({"../evil": b"x", **img.blobs()})
    elif case == "link-escape":
        data = tar_of({"manifest.json": b"[]"}, links={"a/layer.tar": "../../etc/passwd"})
    elif case == "missing-layer":
        blobs = img.blobs()
        del blobs[f"blobs/sha256/{sha(img.layers[0])[7:]}"]
        data = tar_of({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                       "index.json": _index_of(img), **blobs})
    elif case == "corrupt-blob":
        blobs = img.blobs()
        blobs[f"blobs/sha256/{sha(img.layers[0])[7:]}"] = gzip.compress(b"other")
        data = tar_of({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                       "index.json": _index_of(img), **blobs})
    elif case == "diff-id-mismatch":
        arch = tarfile.open(fileobj=io.BytesIO(img.docker_archive()))
        members = {m.name: arch.extractfile(m).read() for m in arch if m.isfile()}
        members[f"{sha(img.tars[0])[7:]}.tar"] = layer_tar({"evil": b"x"})
        data = tar_of(members, links={"id0/layer.tar": f"../{sha(img.tars[0])[7:]}.tar"})
    elif case == "huge-declared-size":
        ti = tarfile.TarInfo("blobs/sha256/" + "a" * 64)
        ti.size = 1 << 39  # 512 GiB, far more than this machine's free disk
        hdr = ti.tobuf(format=tarfile.GNU_FORMAT)
        data = hdr + b"x" * 4096
    elif case == "not-an-archive":
        data = tar_of({"hello.txt": b"hi"})
    elif case == "empty":
        data = b""
    elif case == "bad-manifest-json":
        data = tar_of({"manifest.json": b"{not json"})
    elif case == "truncated":
        data = img.oci_archive("t:1")[:1500]
    with pytest.raises((InvalidArgument, NotFound)) as exc:
        load(svc, io.BytesIO(data), unpack=False)
    assert "\n" not in str(exc.value)
    assert state(svc) == before
    assert not svc.content.ingests()


def _index_of(img: Image) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(img.manifest), "size": len(img.manifest),
         "annotations": {"io.containerd.image.name": "docker.io/library/y:1"}}]}).encode()


# -- save --------------------------------------------------------------------------------

def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isfile()}


def test_save_oci_archive_writes_the_stored_blobs_and_names(svc):
    img = Image(2)
    load(svc, io.BytesIO(img.oci_archive("example.com/a:1")), unpack=False)
    out = io.BytesIO()
    save(svc, ["example.com/a:1"], out, format="oci-archive")
    m = members(out.getvalue())
    assert json.loads(m["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (desc,) = json.loads(m["index.json"])["manifests"]
    assert desc["digest"] == sha(img.manifest)
    assert desc["annotations"] == {"io.containerd.image.name": "example.com/a:1",
                                   "org.opencontainers.image.ref.name": "1"}
    for name, data in img.blobs().items():
        assert m[name] == data


def test_save_docker_archive_has_plain_layers_manifest_json_and_the_config(svc):
    img = Image(2)
    load(svc, io.BytesIO(img.oci_archive("docker.io/library/busybox:1.36")), unpack=False)
    out = io.BytesIO()
    save(svc, ["busybox:1.36"], out)
    m = members(out.getvalue())
    (entry,) = json.loads(m["manifest.json"])
    assert entry["RepoTags"] == ["busybox:1.36"]
    assert m[entry["Config"]] == img.config
    assert [m[p] for p in entry["Layers"]] == img.tars
    # It is an OCI layout as well (docker 25's format), with plain layers.
    (desc,) = json.loads(m["index.json"])["manifests"]
    man = json.loads(m["blobs/sha256/" + desc["digest"][7:]])
    assert [x["digest"] for x in man["layers"]] == [sha(t) for t in img.tars]


def test_save_by_id_writes_no_tags(svc):
    img = Image()
    load(svc, io.BytesIO(img.oci_archive("a:1")), unpack=False)
    out = io.BytesIO()
    save(svc, [sha(img.config)[7:19]], out)
    (entry,) = json.loads(members(out.getvalue())["manifest.json"])
    assert entry["RepoTags"] == []


def test_save_then_load_elsewhere_round_trips(svc, tmp_path):
    img = Image(2)
    load(svc, io.BytesIO(img.oci_archive("a:1")), unpack=False)
    target = tmp_path / "a.tar"
    save(svc, ["a:1"], str(target), format="oci-archive")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    other = ImageService(Settings(root=str(tmp_path / "root2")))
    try:
        (loaded,) = load(other, str(target), unpack=False)
        assert loaded.name == "docker.io/library/a:1"
        assert other.lookup("a:1").record.target == sha(img.manifest)
        out = io.BytesIO()
        save(svc, ["a:1"], out)
        (again,) = load(other, io.BytesIO(out.getvalue()), unpack=False)
        assert again.id == sha(img.config)
    finally:
        other.close()


def test_save_of_an_unknown_image_is_not_found(svc, tmp_path):
    with pytest.raises(NotFound):
        save(svc, ["nope:1"], str(tmp_path / "x.tar"))
    assert not list(tmp_path.glob("*.tar"))


# -- import ------------------------------------------------------------------------------

def test_import_of_a_tarball_cleans_names_and_builds_the_config(svc):
    src = io.BytesIO(tar_of({"./etc/hosts": b"127.0.0.1 localhost\n", "./bin/x": b"x"}))
    loaded = import_(svc, src, "imported:1", changes=["CMD echo hi", "USER 1000"],
                     message="from a test", unpack=False, created="2024-01-01T00:00:00Z")
    ref = svc.lookup("imported:1")
    assert ref.id == loaded.id
    raw = ref.config.raw
    assert raw["config"] == {"Cmd": ["/bin/sh", "-c", "echo hi"], "User": "1000"}
    assert raw["history"] == [{"created": "2024-01-01T00:00:00Z", "comment": "from a test"}]
    assert raw["os"] == "linux" and raw["created"] == "2024-01-01T00:00:00Z"
    (layer,) = ref.manifest.layers
    with svc.content.open(layer.digest) as f:
        plain = gzip.decompress(f.read())
    assert sha(plain) == raw["rootfs"]["diff_ids"][0]
    with tarfile.open(fileobj=io.BytesIO(plain)) as t:
        assert sorted(t.getnames()) == ["bin/x", "etc/hosts"]


def test_import_is_deterministic_for_the_same_input(svc):
    data = tar_of({"a": b"1"})
    one = import_(svc, io.BytesIO(data), "a:1", unpack=False, created="2024-01-01T00:00:00Z")
    two = import_(svc, io.BytesIO(gzip.compress(data)), "a:2", unpack=False,
                  created="2024-01-01T00:00:00Z")
    assert one.id == two.id
    assert svc.lookup("a:1").record.target == svc.lookup("a:2").record.target


def test_import_without_a_name_keeps_the_image_under_its_id(svc):
    loaded = import_(svc, io.BytesIO(tar_of({"a": b"1"})), unpack=False)
    assert not loaded.tagged and svc.lookup(loaded.id[7:19]).id == loaded.id


@pytest.mark.parametrize("members,link", [
    ({"../escape": b"x"}, None),
    ({"a/../../escape": b"x"}, None),
    ({"a": b"1"}, "../../etc/shadow"),
])
def test_import_refuses_a_tarball_that_climbs_out(svc, members, link):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        if link:
            ti = tarfile.TarInfo("hard")
            ti.type, ti.linkname = tarfile.LNKTYPE, link
            t.addfile(ti)
    before = state(svc)
    with pytest.raises(InvalidArgument, match=r"\.\."):
        import_(svc, io.BytesIO(buf.getvalue()), "bad:1", unpack=False)
    assert state(svc) == before


def test_bad_change_lines_fail_before_anything_is_written(svc):
    with pytest.raises(InvalidArgument, match="not a valid change command"):
        import_(svc, io.BytesIO(tar_of({"a": b"1"})), "x:1", changes=["RUN rm -rf /"],
                unpack=False)
    assert state(svc) == ([], [])


def test_change_lines_follow_dockerfile_syntax():
    cfg = apply_changes({}, [
        'ENTRYPOINT ["/bin/tini", "--"]', "CMD [\"sh\", \"-c\", \"echo $HOME\"]",
        'ENV A=1 B="two words"', "ENV LEGACY some value", "env A=3",
        'LABEL org.x="a b" k=v', "EXPOSE 80 53/udp 8000-8002", "VOLUME /data /cache",
        'VOLUME ["/json"]', "WORKDIR /srv", "WORKDIR app", "USER nobody:nogroup",
        "STOPSIGNAL SIGINT",
    ])
    assert cfg == {
        "Entrypoint": ["/bin/tini", "--"], "Cmd": ["sh", "-c", "echo $HOME"],
        "Env": ["B=two words", "LEGACY=some value", "A=3"],
        "Labels": {"org.x": "a b", "k": "v"},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {},
                         "8002/tcp": {}},
        "Volumes": {"/data": {}, "/cache": {}, "/json": {}},
        "WorkingDir": "/srv/app", "User": "nobody:nogroup", "StopSignal": "SIGINT",
    }


@pytest.mark.parametrize("line", ["FROM x", "EXPOSE 99999", "EXPOSE 80/icmp", "ENV",
                                  "LABEL a=1 b", "VOLUME [1]"])
def test_bad_change_lines_are_invalid(line):
    with pytest.raises(InvalidArgument):
        apply_changes({}, [line])
