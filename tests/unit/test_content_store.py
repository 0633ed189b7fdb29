"""LocalContentStore: verified, resumable, atomic ingest; concurrency between processes;
verification and housekeeping. No root needed."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import resource
import signal
import time
from pathlib import Path

import pytest

from hutch.content import LocalContentStore
from hutch.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

pytestmark = pytest.mark.unit

CTX = multiprocessing.get_context("fork")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "blobs").rglob("*") if p.is_file())


def ingest_dirs(root: Path) -> list[Path]:
    return sorted((root / "ingest").iterdir())


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    return LocalContentStore(tmp_path / "content")


@pytest.fixture
def root(store: LocalContentStore) -> Path:
    return Path(store.root)


DATA = os.urandom(300_000)
DIGEST = sha(DATA)


# -- writing ------------------------------------------------------------------------------


def test_committed_blob_is_readable_and_verified(store, root):
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert (w.offset, w.exists) == (0, False)
        for i in range(0, len(DATA), 65536):
            w.write(DATA[i : i + 65536])
        assert w.commit() == DIGEST
    assert store.exists(DIGEST)
    assert store.info(DIGEST).size == len(DATA)
    assert store.read_bytes(DIGEST, limit=len(DATA)) == DATA
    with store.open(DIGEST) as f:
        assert f.read() == DATA
    assert store.verify(DIGEST)
    assert list(store.walk()) == [DIGEST]
    assert blob_files(root) == [root / "blobs" / "sha256" / DIGEST.split(":")[1]]
    assert ingest_dirs(root) == []


def test_nothing_is_visible_before_commit(store, root):
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:1000])
        assert not store.exists(DIGEST)
        assert blob_files(root) == []


def test_short_blob_is_a_size_mismatch_and_leaves_nothing(store, root):
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:-1])
        with pytest.raises(InvalidArgument, match="size mismatch"):
            w.commit()
    assert blob_files(root) == [] and ingest_dirs(root) == []


def test_writing_past_the_expected_size_fails_at_once(store, root):
    with store.writer(DIGEST, DIGEST, 10) as w:
        with pytest.raises(InvalidArgument, match="size mismatch"):
            w.write(DATA[:11])
    assert blob_files(root) == [] and ingest_dirs(root) == []


def test_wrong_content_is_a_digest_mismatch_and_leaves_nothing(store, root):
    bad = bytearray(DATA)
    bad[1234] ^= 1
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(bad)
        with pytest.raises(InvalidArgument, match="digest mismatch") as exc:
            w.commit()
    assert "\n" not in str(exc.value)
    assert blob_files(root) == [] and ingest_dirs(root) == []


def test_unknown_size_checks_the_digest_only(store):
    with store.writer("x", DIGEST, None) as w:
        w.write(DATA)
        assert w.commit() == DIGEST


def test_unknown_digest_names_the_blob_by_its_hash(store):
    with store.writer("my-layer", None) as w:
        w.write(b"made here")
        assert w.commit() == sha(b"made here")
    assert store.read_bytes(sha(b"made here")) == b"made here"


def test_interrupted_ingest_resumes_at_its_offset(store, root):
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:123_457])
    # Leaving the block without commit keeps the partial data.
    assert ingest_dirs(root) and blob_files(root) == []
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.offset == 123_457
        w.write(DATA[w.offset :])
        assert w.commit() == DIGEST
    assert store.verify(DIGEST) and ingest_dirs(root) == []


def test_same_ref_for_another_digest_starts_over(store):
    other = os.urandom(500)
    with store.writer("ref", DIGEST, len(DATA)) as w:
        w.write(DATA[:1000])
    with store.writer("ref", sha(other), len(other)) as w:
        assert w.offset == 0
        w.write(other)
        w.commit()
    assert store.read_bytes(sha(other)) == other


def test_truncate_restarts_when_the_server_ignores_range(store):
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:5000])
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.offset == 5000
        w.truncate(0)
        assert w.offset == 0
        w.write(DATA)
        assert w.commit() == DIGEST


def _write_past_a_file_size_limit(root, result):
    # RLIMIT_FSIZE makes write() fail with EFBIG part-way, like a full disk would.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    store = LocalContentStore(root)
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:60_000])
        try:
            w.write(DATA[60_000:])
            result.put("no error")
        except OSError as e:
            result.put((e.errno, w.offset, os.path.getsize(os.path.join(w._dir, "data"))))


def test_a_failed_write_keeps_data_and_hash_in_step(store, root):
    result = CTX.Queue()
    proc = CTX.Process(target=_write_past_a_file_size_limit, args=(root, result))
    proc.start()
    proc.join(10)
    assert result.get(timeout=5) == (errno.EFBIG, 60_000, 60_000)
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.offset == 60_000
        w.write(DATA[w.offset :])
        assert w.commit() == DIGEST


def test_abort_discards_the_partial_data(store, root):
    w = store.writer(DIGEST, DIGEST, len(DATA))
    w.write(DATA[:1000])
    w.abort()
    assert ingest_dirs(root) == []
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.offset == 0


def test_writer_for_a_stored_blob_has_nothing_to_do(store, root):
    store.put_bytes(DIGEST, DATA)
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.exists
        with pytest.raises(FailedPrecondition):
            w.write(b"x")
        assert w.commit() == DIGEST
    assert ingest_dirs(root) == []


def test_leftover_ingest_of_a_committed_blob_is_cleaned(store, root):
    # A writer killed between its rename into blobs/ and removing its ingest.
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA)
    [leftover] = ingest_dirs(root)
    os.rename(leftover / "data", store.path(DIGEST))
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.exists
        w.commit()
    assert ingest_dirs(root) == [] and store.verify_all() == []


def test_torn_status_file_means_start_over(store, root):
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:100])
    (ingest_dirs(root)[0] / "ingest.json").write_text('{"ref": ')
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        assert w.offset == 0


def test_put_bytes_checks_the_digest(store, root):
    assert store.put_bytes(None, b"{}") == sha(b"{}")
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.put_bytes(sha(b"a"), b"b")
    assert list(store.walk()) == [sha(b"{}")]


def test_sha512_blobs_are_stored_too(store):
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    assert store.put_bytes(digest, data) == digest
    assert store.verify(digest) and digest in set(store.walk())


@pytest.mark.parametrize(
    "digest",
    ["", "sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 32, "sha256:../../etc/passwd", 5],
)
def test_malformed_digests_are_refused(store, digest):
    with pytest.raises(InvalidArgument):
        store.exists(digest)
    with pytest.raises(InvalidArgument):
        store.writer("r", digest, 1)


def test_missing_blob_is_not_found(store):
    with pytest.raises(NotFound):
        store.info(DIGEST)
    with pytest.raises(NotFound):
        store.open(DIGEST)
    assert store.delete(DIGEST) == 0


def test_read_bytes_refuses_a_blob_above_the_limit(store):
    store.put_bytes(DIGEST, DATA)
    with pytest.raises(InvalidArgument, match="more than"):
        store.read_bytes(DIGEST, limit=1000)


def test_delete_frees_the_blob(store):
    store.put_bytes(DIGEST, DATA)
    assert store.delete(DIGEST) == len(DATA)
    assert not store.exists(DIGEST) and list(store.walk()) == []


def test_walk_skips_stray_files(store, root):
    store.put_bytes(DIGEST, DATA)
    (root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"")
    assert list(store.walk()) == [DIGEST]


# -- verification -------------------------------------------------------------------------


def test_verify_detects_a_corrupted_blob(store):
    store.put_bytes(DIGEST, DATA)
    good = store.put_bytes(None, b"fine")
    path = store.path(DIGEST)
    os.chmod(path, 0o644)  # blobs are read-only
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\0" if DATA[100] else b"\1")
    assert not store.verify(DIGEST)
    assert store.verify(good)
    assert store.verify_all() == [DIGEST]


def test_blobs_are_read_only(store):
    store.put_bytes(DIGEST, DATA)
    assert os.stat(store.path(DIGEST)).st_mode & 0o777 == 0o444


# -- housekeeping -------------------------------------------------------------------------


def test_clean_ingests_removes_only_old_idle_ones(tmp_path):
    later = time.time() + 3600
    store = LocalContentStore(tmp_path, clock=lambda: later)
    with store.writer("old", DIGEST, len(DATA)) as w:
        w.write(DATA[:10])
    held = store.writer("held", DIGEST, len(DATA))  # old too, but a writer holds it
    held.write(DATA[:10])
    with store.writer("fresh", DIGEST, len(DATA)) as w:
        w.write(DATA[:10])
    fresh = Path(store._ingest_dir("fresh"))
    for path in [*fresh.iterdir(), fresh]:
        os.utime(path, (later, later))
    try:
        assert store.clean_ingests(older_than=600) == 1
        refs = {s.ref: s for s in store.ingests()}
        assert set(refs) == {"held", "fresh"}
        assert refs["held"].active and refs["held"].offset == 10
        assert not refs["fresh"].active
    finally:
        held.abort()


def test_ingests_report_progress(store):
    with store.writer("r", DIGEST, len(DATA)) as w:
        w.write(DATA[:777])
    [status] = store.ingests()
    assert (status.ref, status.expected_digest, status.expected_size, status.offset) == (
        "r",
        DIGEST,
        len(DATA),
        777,
    )


# -- concurrency between processes --------------------------------------------------------


def _slow_writer(root, ref, data, half_written, go_on, result):
    store = LocalContentStore(root)
    with store.writer(ref, sha(data), len(data)) as w:
        w.write(data[: len(data) // 2])
        half_written.set()
        go_on.wait(10)
        time.sleep(0.2)  # the other process is blocked in writer() by now
        w.write(data[len(data) // 2 :])
        w.commit()
        result.put(("committed", time.monotonic()))


def _second_writer(root, ref, data, result):
    store = LocalContentStore(root)
    start = time.monotonic()
    with store.writer(ref, sha(data), len(data)) as w:
        got = time.monotonic()
        if w.exists:
            w.commit()
            result.put(("exists", start, got))
        else:
            w.write(data[w.offset :])
            w.commit()
            result.put(("wrote", start, got))


def test_second_process_waits_for_the_first_and_does_not_write_again(store, root):
    half_written, go_on, result = CTX.Event(), CTX.Event(), CTX.Queue()
    first = CTX.Process(target=_slow_writer, args=(root, DIGEST, DATA, half_written, go_on, result))
    first.start()
    assert half_written.wait(10)
    second = CTX.Process(target=_second_writer, args=(root, DIGEST, DATA, result))
    second.start()
    time.sleep(0.1)
    go_on.set()
    first.join(10)
    second.join(10)
    assert first.exitcode == 0 and second.exitcode == 0
    outcomes = {}
    for _ in range(2):
        item = result.get(timeout=5)
        outcomes[item[0]] = item[1:]
    assert set(outcomes) == {"committed", "exists"}
    # The second got its writer only after the first had committed.
    assert outcomes["exists"][1] >= outcomes["committed"][0]
    assert store.verify_all() == [] and list(store.walk()) == [DIGEST]
    assert ingest_dirs(root) == []


def test_second_writer_gives_up_after_its_timeout(store):
    holder = store.writer("ref", DIGEST, len(DATA))
    try:
        result = CTX.Queue()

        def try_lock() -> None:
            try:
                LocalContentStore(store.root).writer("ref", DIGEST, len(DATA), timeout=0.2)
                result.put("got it")
            except Unavailable as e:
                result.put(str(e))

        proc = CTX.Process(target=try_lock)
        proc.start()
        proc.join(10)
        assert "still writing" in result.get(timeout=5)
    finally:
        holder.abort()


def test_second_process_resumes_when_the_first_gives_up(store, root):
    # The first process writes half and exits without committing (a network error).
    with store.writer(DIGEST, DIGEST, len(DATA)) as w:
        w.write(DATA[:1000])
    result = CTX.Queue()
    proc = CTX.Process(target=_second_writer, args=(root, DIGEST, DATA, result))
    proc.start()
    proc.join(10)
    assert result.get(timeout=5)[0] == "wrote"
    assert store.verify(DIGEST)


def _commit_at_barrier(root, ref, data, barrier, result):
    store = LocalContentStore(root)
    with store.writer(ref, sha(data), len(data)) as w:
        w.write(data)
        barrier.wait(10)
        result.put(w.commit())


def test_same_digest_committed_under_different_refs_at_once(store, root):
    barrier, result = CTX.Barrier(4), CTX.Queue()
    procs = [
        CTX.Process(target=_commit_at_barrier, args=(root, f"ref-{i}", DATA, barrier, result))
        for i in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    assert [result.get(timeout=5) for _ in procs] == [DIGEST] * 4
    assert store.verify_all() == [] and list(store.walk()) == [DIGEST]
    assert ingest_dirs(root) == []


def test_many_processes_on_one_ref_leave_one_good_blob(store, root):
    result = CTX.Queue()
    procs = [
        CTX.Process(target=_second_writer, args=(root, DIGEST, DATA, result)) for _ in range(6)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(20)
        assert proc.exitcode == 0
    outcomes = sorted(result.get(timeout=5)[0] for _ in procs)
    assert outcomes == ["exists"] * 5 + ["wrote"]
    assert store.verify_all() == [] and ingest_dirs(root) == []
