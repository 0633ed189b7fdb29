"""SQLite connections that close without a checkpoint (hutch.linux.sqlite) and the WAL
kept short by hutch.util.sqlite.close_connection: what a short-lived hutch command
leaves is complete for the next one, and the WAL does not grow without bound."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3

from hutch.engine.store import ContainerRecord, ContainerStore
from hutch.linux.sqlite import no_checkpoint_on_close
from hutch.util.sqlite import close_connection

CTX = multiprocessing.get_context("fork")


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def test_close_leaves_the_wal_and_the_next_connection_reads_it(tmp_path):
    path = str(tmp_path / "t.db")
    conn = _open(path)
    assert no_checkpoint_on_close(conn, path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (42)")
    conn.close()
    assert os.path.getsize(path + "-wal") > 0  # not checkpointed, not deleted
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    conn.close()


def test_a_plain_close_checkpoints_and_deletes_the_wal(tmp_path):
    path = str(tmp_path / "t.db")
    conn = _open(path)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert not os.path.exists(path + "-wal")  # what the switch saves: syncs and an unlink


def test_the_switch_refuses_a_connection_it_cannot_verify(tmp_path):
    path = str(tmp_path / "t.db")
    conn = _open(path)
    assert not no_checkpoint_on_close(conn, str(tmp_path / "other.db"))
    assert not no_checkpoint_on_close(sqlite3.connect(":memory:"), ":memory:")
    conn.close()
    assert not os.path.exists(path + "-wal")  # left as it was


def _write_and_die(path: str) -> None:
    conn = _open(path)
    no_checkpoint_on_close(conn, path)
    conn.execute("INSERT INTO t VALUES (7)")
    os._exit(0)  # as hutch's commands end: no close at all


def test_a_process_that_exits_without_closing_loses_nothing(tmp_path):
    path = str(tmp_path / "t.db")
    conn = _open(path)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    p = CTX.Process(target=_write_and_die, args=(path,))
    p.start()
    p.join(10)
    assert p.exitcode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT x FROM t").fetchall() == [(7,)]
    conn.close()


def test_close_connection_truncates_a_long_wal_only(tmp_path):
    path = str(tmp_path / "t.db")
    conn = _open(path)
    no_checkpoint_on_close(conn, path)
    conn.execute("CREATE TABLE t (x)")
    close_connection(conn, path, truncate_at=1 << 20)
    short = os.path.getsize(path + "-wal")
    assert 0 < short < 1 << 20  # kept
    conn = _open(path)
    no_checkpoint_on_close(conn, path)
    for _ in range(20):
        conn.execute("INSERT INTO t VALUES (randomblob(4000))")
    close_connection(conn, path, truncate_at=1 << 16)
    assert os.path.getsize(path + "-wal") == 0  # checkpointed into the file, truncated
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (20,)
    conn.close()


def test_a_store_opened_and_closed_by_many_commands_keeps_its_wal_bounded(tmp_path):
    path = str(tmp_path / "containers.db")
    sizes = []
    for i in range(150):
        store = ContainerStore(path)
        rec = store.create(ContainerRecord(name=f"c{i}", image="img", image_id="sha256:x"))
        store.update(rec.id, state="running", pid=1)
        store.close()
        sizes.append(os.path.getsize(path + "-wal"))
    assert max(sizes) < (512 << 10) + (64 << 10)  # WAL_TRUNCATE_AT and one command
    assert any(b < a for a, b in zip(sizes, sizes[1:], strict=False))  # truncated on the way
    store = ContainerStore(path)
    assert len(store.list(all=True)) == 150
    store.close()
