"""The content store survives writers killed with SIGKILL at any moment.

Writer processes stream one blob into a LocalContentStore (resuming whatever a previous,
killed writer left) and are killed at random moments, up to three at once on the same
ref. After every round the store must verify, nothing partial may be under blobs/, a
leftover ingest must hold a prefix of the blob, and a new writer must be able to take
the ref over at once (the kernel dropped the dead writer's lock). At the end a writer
resumes and completes the blob. Bounded to about 15 s.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from pathlib import Path

import pytest

from hutch.content import LocalContentStore

pytestmark = pytest.mark.integration

SIZE = 8 << 20
BLOB = random.Random(20240601).randbytes(SIZE)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
TIME_BUDGET = 15.0
MAX_ROUNDS = 400


def _writer_child(root: str, seed: int) -> None:
    """Body of a forked writer: never returns (os._exit), so pytest never runs twice."""
    code = 1
    try:
        rng = random.Random(seed)
        store = LocalContentStore(root)
        with store.writer(DIGEST, DIGEST, SIZE) as w:
            if not w.exists:
                offset = w.offset
                while offset < SIZE:
                    n = rng.randint(1, 512 << 10)
                    w.write(BLOB[offset : offset + n])
                    offset += n
            w.commit()
        code = 0
    except BaseException as e:  # noqa: BLE001 - report any failure through the exit code
        try:
            os.write(2, f"writer child failed: {e!r}\n".encode())
        finally:
            os._exit(1)
    finally:
        os._exit(code)


def _spawn(root: str, seed: int) -> int:
    pid = os.fork()
    if pid == 0:
        _writer_child(root, seed)
    return pid


def _full_write_seconds(root: Path) -> float:
    """How long one writer takes from scratch here, to spread the kills over it."""
    scratch = root / "calibrate"
    start = time.monotonic()
    pid = _spawn(str(scratch), 0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return time.monotonic() - start


def _check_consistent(store: LocalContentStore, root: Path) -> int:
    """The invariants after any crash; returns the offset a new writer resumes at."""
    assert store.verify_all() == []
    blobs = sorted(p.name for p in (root / "blobs").rglob("*") if p.is_file())
    assert blobs in ([], [DIGEST.split(":")[1]]), f"unexpected files under blobs/: {blobs}"
    ingests = list((root / "ingest").iterdir())
    assert len(ingests) <= 1, ingests
    for ingest in ingests:
        data = ingest / "data"
        if data.exists():
            partial = data.read_bytes()
            assert BLOB.startswith(partial), "ingest data is not a prefix of the blob"
    # The dead writers' locks are gone: a new writer gets the ref at once.
    with store.writer(DIGEST, DIGEST, SIZE, timeout=5) as w:
        if w.exists:
            return SIZE
        assert 0 <= w.offset <= SIZE
        return w.offset  # leave without commit: the next round resumes from here


def test_writers_killed_at_random_moments_never_corrupt_the_store(tmp_path: Path):
    rng = random.Random(os.environ.get("HUTCH_CRASH_SEED", "7"))
    root = tmp_path / "content"
    store = LocalContentStore(root)
    children: set[int] = set()
    stats = {"rounds": 0, "killed": 0, "completed": 0, "resumed": 0}
    try:
        span = max(_full_write_seconds(tmp_path), 0.01)
        deadline = time.monotonic() + TIME_BUDGET
        while time.monotonic() < deadline and stats["rounds"] < MAX_ROUNDS:
            stats["rounds"] += 1
            start = time.monotonic()
            for _ in range(rng.choice((1, 1, 2, 3))):
                children.add(_spawn(str(root), rng.randrange(1 << 30)))
            # Kill somewhere in [0, 0.9 x a full write): some die before opening, some
            # mid-stream, some in commit, some finish.
            time.sleep(max(0.0, start + rng.uniform(0, 0.9 * span) - time.monotonic()))
            for pid in list(children):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in list(children):
                _, status = os.waitpid(pid, 0)
                children.discard(pid)
                if os.WIFSIGNALED(status):
                    assert os.WTERMSIG(status) == signal.SIGKILL
                    stats["killed"] += 1
                else:
                    # A writer that was not killed must have succeeded: a resumed ingest
                    # that failed verification would exit 1 here.
                    assert os.waitstatus_to_exitcode(status) == 0, "a writer failed"
            offset = _check_consistent(store, root)
            if offset == SIZE:
                stats["completed"] += 1
                store.delete(DIGEST)  # start over, to crash more writes
            elif offset:
                stats["resumed"] += 1
        # Finally a new writer resumes what is left and completes.
        with store.writer(DIGEST, DIGEST, SIZE) as w:
            if not w.exists:
                w.write(BLOB[w.offset :])
            assert w.commit() == DIGEST
        assert store.verify_all() == [] and list(store.walk()) == [DIGEST]
        assert list((root / "ingest").iterdir()) == []
        # The test exercised what it claims: kills, resumed partial ingests, completions.
        assert stats["killed"] > 10 and stats["resumed"] > 5 and stats["completed"] > 0, stats
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            except ProcessLookupError:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
    print(f"crash test: {stats}")
