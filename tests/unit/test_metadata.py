"""MetadataStore: images, manifests, the content graph, leases, snapshots, GC; atomic
transactions, parallel writers from several processes, schema versions. No root needed."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from hutch.content import LocalContentStore
from hutch.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from hutch.image.gc import collect, garbage
from hutch.image.metadata import (
    MIGRATIONS,
    SCHEMA_VERSION,
    MetadataStore,
    chain_ids,
)

pytestmark = pytest.mark.unit

CTX = multiprocessing.get_context("fork")
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def meta(tmp_path: Path, clock: Clock):
    with MetadataStore(str(tmp_path / "meta.db"), clock=clock) as m:
        yield m


@pytest.fixture
def content(tmp_path: Path) -> LocalContentStore:
    return LocalContentStore(tmp_path / "content")


def put_image_content(content: LocalContentStore, meta: MetadataStore, name: str, seed: str):
    """Blobs for a one-platform image under an index: returns their digests."""
    layers = [content.put_bytes(None, f"{seed} layer {i}".encode()) for i in range(2)]
    diff_ids = [sha(f"{seed} diff {i}") for i in range(2)]
    config = content.put_bytes(None, f"{seed} config".encode())
    manifest = content.put_bytes(None, f"{seed} manifest".encode())
    index = content.put_bytes(None, f"{seed} index".encode())
    meta.record_manifest(
        manifest, config, [(d, LAYER, 10) for d in layers], diff_ids, "linux/amd64"
    )
    meta.record_index(index, [(manifest, {"os": "linux", "architecture": "amd64"})])
    meta.put_image(name, index, INDEX, 123)
    return {"index": index, "manifest": manifest, "config": config, "layers": layers}


# -- images -------------------------------------------------------------------------------


def test_image_names_round_trip(meta, clock):
    target = sha("m")
    created = meta.put_image("docker.io/library/busybox:latest", target, MANIFEST, 42, {"a": "b"})
    assert created.target == target and created.labels == {"a": "b"}
    assert meta.get_image("docker.io/library/busybox:latest") == created
    clock.now += 10
    updated = meta.put_image("docker.io/library/busybox:latest", sha("n"), MANIFEST, 43)
    assert updated.created == created.created and updated.updated == created.created + 10
    assert [i.name for i in meta.list_images()] == ["docker.io/library/busybox:latest"]


def test_tag_copies_the_target_and_delete_removes_one_name(meta):
    meta.put_image("a:1", sha("m"), MANIFEST, 1)
    assert meta.tag("a:1", "b:2").target == sha("m")
    assert meta.delete_image("a:1").name == "a:1"
    assert [i.name for i in meta.list_images()] == ["b:2"]
    with pytest.raises(NotFound, match="no such image: a:1"):
        meta.get_image("a:1")
    with pytest.raises(NotFound):
        meta.tag("a:1", "c:3")
    with pytest.raises(NotFound):
        meta.delete_image("a:1")


@pytest.mark.parametrize(
    "args",
    [
        ("", sha("m"), MANIFEST, 1),
        ("a", "latest", MANIFEST, 1),
        ("a", sha("m"), "", 1),
        ("a", sha("m"), MANIFEST, -1),
    ],
)
def test_bad_image_fields_are_refused(meta, args):
    with pytest.raises(InvalidArgument):
        meta.put_image(*args)


# -- manifests and the content graph ------------------------------------------------------


def test_manifest_layers_keep_their_order_and_chain_ids(meta):
    layers = [(sha(f"l{i}"), LAYER, i) for i in range(3)]
    diff_ids = [sha(f"d{i}") for i in range(3)]
    record = meta.record_manifest(sha("m"), sha("c"), layers, diff_ids, "linux/arm64/v8")
    assert [layer.digest for layer in record.layers] == [d for d, _, _ in layers]
    assert record.diff_ids == diff_ids
    # image-spec config.md worked example: ChainID(A|B) = sha256(ChainID(A) + " " + B)
    assert record.chain_ids[0] == diff_ids[0]
    assert record.chain_ids[1] == sha(f"{diff_ids[0]} {diff_ids[1]}")
    assert record.chain_ids == chain_ids(diff_ids)
    assert meta.get_manifest(sha("m")) == record
    assert record.platform == "linux/arm64/v8"


def test_layers_may_be_descriptor_objects_or_mappings(meta):
    class Descriptor:
        def __init__(self, digest: str) -> None:
            self.digest, self.media_type, self.size = digest, LAYER, 7

    record = meta.record_manifest(
        sha("m"),
        sha("c"),
        [Descriptor(sha("a")), {"digest": sha("b"), "mediaType": LAYER}],
        [sha("da"), sha("db")],
    )
    assert [(x.digest, x.size) for x in record.layers] == [(sha("a"), 7), (sha("b"), None)]


def test_layer_and_diff_id_counts_must_match(meta):
    with pytest.raises(InvalidArgument, match="2 layers but its config lists 1"):
        meta.record_manifest(sha("m"), sha("c"), [(sha("a"), LAYER), (sha("b"), LAYER)], [sha("d")])


def test_resolve_manifest_picks_the_platform_of_an_index(meta):
    amd = meta.record_manifest(sha("amd"), sha("c1"), [], [], "linux/amd64")
    arm = meta.record_manifest(sha("arm"), sha("c2"), [], [], "linux/arm64/v8")
    meta.record_index(sha("i"), [(sha("amd"), "linux/amd64"), (sha("arm"), "linux/arm64/v8")])
    meta.put_image("x", sha("i"), INDEX, 1)
    assert meta.resolve_manifest("x", "linux/amd64") == amd
    assert (
        meta.resolve_manifest("x", {"os": "linux", "architecture": "arm64", "variant": "v8"}) == arm
    )
    assert meta.platforms("x") == ["linux/amd64", "linux/arm64/v8"]
    with pytest.raises(NotFound, match="linux/s390x"):
        meta.resolve_manifest("x", "linux/s390x")
    with pytest.raises(InvalidArgument, match="several platforms"):
        meta.resolve_manifest("x")


def test_images_using_follows_the_graph_upwards(meta, content):
    a = put_image_content(content, meta, "a", "a")
    put_image_content(content, meta, "b", "b")
    meta.tag("a", "a2")
    assert meta.images_using(a["layers"][1]) == ["a", "a2"]
    assert meta.images_using(a["config"]) == ["a", "a2"]
    assert meta.images_using(sha("unrelated")) == []


# -- transactions -------------------------------------------------------------------------


def test_a_failed_transaction_leaves_no_trace(meta):
    meta.put_image("kept", sha("k"), MANIFEST, 1)
    with pytest.raises(RuntimeError), meta.transaction():
        meta.record_manifest(sha("m"), sha("c"), [(sha("l"), LAYER)], [sha("d")])
        meta.put_image("new", sha("m"), MANIFEST, 1)
        meta.delete_image("kept")
        raise RuntimeError("pull failed half-way")
    assert [i.name for i in meta.list_images()] == ["kept"]
    with pytest.raises(NotFound):
        meta.get_manifest(sha("m"))
    assert meta.gc_roots() == {sha("k")}


def test_a_failing_call_inside_a_method_rolls_back_its_own_changes(meta):
    meta.record_manifest(sha("m"), sha("c"), [(sha("l"), LAYER)], [sha("d")])
    with pytest.raises(InvalidArgument):
        # Valid first entries, then a bad one: nothing of it may stay.
        meta.add_refs(sha("m"), [sha("x"), "not-a-digest"])
    assert meta.gc_roots() == set()
    meta.put_image("m", sha("m"), MANIFEST, 1)
    assert sha("x") not in meta.gc_roots()


def _hammer(path: str, worker: int, count: int, start, errors) -> None:
    try:
        start.wait(10)  # all create/open the new database at once
        with MetadataStore(path, timeout=30) as meta:
            for i in range(count):
                with meta.transaction():
                    meta.record_manifest(sha(f"m{worker}-{i}"), sha("c"), [], [])
                    meta.put_image(f"w{worker}:{i}", sha(f"m{worker}-{i}"), MANIFEST, i)
                meta.add_lease(f"lease-{worker}", [sha(f"x{worker}-{i}")], None)
    except Exception as e:  # report to the parent, which asserts
        errors.put(f"{worker}: {e!r}")


def test_parallel_writers_from_several_processes_all_succeed(tmp_path):
    path = str(tmp_path / "meta.db")
    errors, start = CTX.Queue(), CTX.Barrier(6)
    procs = [CTX.Process(target=_hammer, args=(path, w, 100, start, errors)) for w in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert errors.empty(), errors.get()
    assert all(proc.exitcode == 0 for proc in procs)
    with MetadataStore(path) as meta:
        assert len(meta.list_images()) == 6 * 100
        assert len(meta.gc_roots()) == 6 * 100 * 2 + 1  # manifests, leased, one shared config


def test_a_held_write_lock_times_out_as_unavailable(tmp_path):
    path = str(tmp_path / "meta.db")
    with MetadataStore(path) as holder, MetadataStore(path, timeout=0.2) as other:
        with holder.transaction():
            holder.put_image("a", sha("a"), MANIFEST, 1)
            with pytest.raises(Unavailable, match="busy"):
                other.put_image("b", sha("b"), MANIFEST, 1)
            # Readers are not blocked by a writer (WAL), nor is opening the database.
            assert other.list_images() == []
            with MetadataStore(path, timeout=0.2) as third:
                assert third.list_images() == []
        assert [i.name for i in other.list_images()] == ["a"]


# -- schema versions ----------------------------------------------------------------------


def test_new_database_is_at_the_current_schema_version(meta):
    assert meta.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert meta._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_opening_an_older_database_applies_the_missing_migrations(tmp_path):
    path = str(tmp_path / "meta.db")
    with MetadataStore(path) as meta:
        meta.put_image("a", sha("a"), MANIFEST, 1)
    extra = ("ALTER TABLE images ADD COLUMN note TEXT DEFAULT 'x'",)
    with MetadataStore(path, migrations=(*MIGRATIONS, extra)) as meta:
        assert meta.schema_version() == SCHEMA_VERSION + 1
        assert meta.get_image("a").target == sha("a")
        assert meta._db.execute("SELECT note FROM images").fetchone() == ("x",)
    # Reopening applies nothing twice.
    with MetadataStore(path, migrations=(*MIGRATIONS, extra)) as meta:
        assert meta.schema_version() == SCHEMA_VERSION + 1


def test_a_failing_migration_changes_nothing(tmp_path):
    path = str(tmp_path / "meta.db")
    MetadataStore(path).close()
    broken = ("CREATE TABLE fine (x)", "THIS IS NOT SQL")
    with pytest.raises(FailedPrecondition):
        MetadataStore(path, migrations=(*MIGRATIONS, broken))
    with MetadataStore(path) as meta:
        assert meta.schema_version() == SCHEMA_VERSION
        tables = {r[0] for r in meta._db.execute("SELECT name FROM sqlite_master")}
        assert "fine" not in tables


def test_a_database_from_a_newer_hutch_is_refused(tmp_path):
    path = str(tmp_path / "meta.db")
    MetadataStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    db.commit()
    db.close()
    with pytest.raises(FailedPrecondition, match="newer than this hutch") as exc:
        MetadataStore(path)
    assert exc.value.hint == "upgrade hutch"


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "meta.db"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(FailedPrecondition, match="not a usable"):
        MetadataStore(str(path))


# -- leases and GC ------------------------------------------------------------------------


def test_gc_roots_follow_images_to_index_manifest_config_and_layers(meta, content):
    a = put_image_content(content, meta, "a", "a")
    roots = meta.gc_roots()
    assert roots == {a["index"], a["manifest"], a["config"], *a["layers"]}


def test_garbage_lists_unreferenced_blobs_and_collect_deletes_them(meta, content):
    a = put_image_content(content, meta, "a", "a")
    b = put_image_content(content, meta, "b", "b")
    stray = content.put_bytes(None, b"nobody wants me")
    assert garbage(content, meta) == [stray]
    meta.delete_image("b")
    b_blobs = {b["index"], b["manifest"], b["config"], *b["layers"]}
    assert set(garbage(content, meta)) == b_blobs | {stray}
    assert content.exists(stray)  # garbage() only lists
    expected_bytes = sum(content.info(d).size for d in b_blobs | {stray})
    result = collect(content, meta)
    assert set(result.removed) == b_blobs | {stray}
    assert result.bytes_freed == expected_bytes
    assert set(content.walk()) == {a["index"], a["manifest"], a["config"], *a["layers"]}
    assert content.verify_all() == []
    # b's manifest metadata went too; a's stays.
    with pytest.raises(NotFound):
        meta.get_manifest(b["manifest"])
    assert meta.get_manifest(a["manifest"]).config == a["config"]


def test_shared_layers_stay_while_any_image_uses_them(meta, content):
    shared = content.put_bytes(None, b"shared base layer")
    for name in ("one", "two"):
        config = content.put_bytes(None, f"{name} config".encode())
        manifest = content.put_bytes(None, f"{name} manifest".encode())
        meta.record_manifest(manifest, config, [(shared, LAYER)], [sha("base")])
        meta.put_image(name, manifest, MANIFEST, 1)
    meta.delete_image("one")
    collect(content, meta)
    assert content.exists(shared)
    meta.delete_image("two")
    collect(content, meta)
    assert not content.exists(shared)


def test_a_lease_protects_content_until_removed_or_expired(meta, content, clock):
    blob = content.put_bytes(None, b"being pulled")
    other = content.put_bytes(None, b"also being pulled")
    meta.add_lease("pull-1", [blob], expires=None)
    meta.add_lease("pull-2", [other], expires=clock.now + 60)
    assert collect(content, meta).removed == []
    assert meta.remove_lease("pull-1") and not meta.remove_lease("pull-1")
    assert collect(content, meta).removed == [blob]
    clock.now += 61
    assert collect(content, meta).removed == [other]


def test_a_lease_grows_as_a_pull_discovers_content(meta):
    meta.add_lease("pull", [sha("index")], expires=None)
    meta.add_lease("pull", [sha("manifest"), sha("config")], expires=None)
    assert meta.gc_roots() == {sha("index"), sha("manifest"), sha("config")}


def test_a_leased_manifest_protects_what_it_references(meta, content):
    # Mid-pull: the manifest is recorded and leased, no image names it yet.
    layer = content.put_bytes(None, b"layer")
    config = content.put_bytes(None, b"config")
    manifest = content.put_bytes(None, b"manifest")
    meta.add_lease("pull", [manifest], expires=None)
    meta.record_manifest(manifest, config, [(layer, LAYER)], [sha("d")])
    assert collect(content, meta).removed == []
    assert meta.get_manifest(manifest).layers[0].digest == layer


# -- snapshots ----------------------------------------------------------------------------


def test_snapshots_are_found_by_chain_id(meta):
    chain = sha("chain")
    meta.record_snapshot(chain, "sha256-abc", "overlayfs")
    meta.record_snapshot(chain, "7", "native")
    assert meta.snapshot_for(chain, "overlayfs").key == "sha256-abc"
    assert meta.snapshot_for(chain, "native").key == "7"
    assert meta.snapshot_for(chain) is not None
    assert meta.snapshot_for(sha("other")) is None
    assert meta.remove_snapshot(chain, "native") == 1
    assert meta.snapshot_for(chain, "native") is None
    assert meta.remove_snapshot(chain) == 1
    assert meta.snapshot_for(chain) is None


def test_unused_snapshots_are_those_no_live_image_needs(meta):
    diff_ids = [sha("d0"), sha("d1")]
    chains = chain_ids(diff_ids)
    meta.record_manifest(sha("m"), sha("c"), [(sha("l0"), LAYER), (sha("l1"), LAYER)], diff_ids)
    meta.put_image("x", sha("m"), MANIFEST, 1)
    for chain in chains:
        meta.record_snapshot(chain, chain[7:19], "overlayfs")
    meta.record_snapshot(sha("orphan"), "orphan", "overlayfs")
    assert [s.key for s in meta.unused_snapshots()] == ["orphan"]
    meta.delete_image("x")
    assert {s.chain_id for s in meta.unused_snapshots("overlayfs")} == {*chains, sha("orphan")}
