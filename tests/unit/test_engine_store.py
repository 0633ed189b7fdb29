"""ContainerStore: records, docker's lookup rules and ps filters, the state machine,
names (given, generated, renamed), and races between processes. No root needed."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest

from hutch.engine.names import ADJECTIVES, SURNAMES, check_name, is_valid_name, random_name
from hutch.engine.store import (
    SCHEMA_VERSION,
    STATES,
    TRANSITIONS,
    ContainerRecord,
    ContainerStore,
    new_id,
    parse_filters,
)
from hutch.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

pytestmark = pytest.mark.unit

CTX = multiprocessing.get_context("fork")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 1  # every call a later time: creation order is visible
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    with ContainerStore(str(tmp_path / "containers.db"), clock=Clock()) as s:
        yield s


def rec(name: str = "", image: str = "busybox", **kw) -> ContainerRecord:
    return ContainerRecord(name=name, image=image, **kw)


def with_id(prefix: str) -> str:
    return (prefix + new_id())[:64]


# -- records ------------------------------------------------------------------------------


def test_a_created_record_round_trips_with_every_field(store):
    record = rec(
        "web",
        image="docker.io/library/busybox:latest",
        image_id="sha256:" + "ab" * 32,
        config={"cmd": ["sh", "-c", "echo hi"], "env": ["A=1"], "tty": False},
        spec_path="/run/hutch/c/config.json",
        bundle_dir="/run/hutch/c",
        log_path="/var/lib/hutch/c/log.json",
        labels={"app": "web", "tier": ""},
        snapshot_key="c-rw",
        network={"ip": "10.88.0.2", "ports": [[8080, 80]]},
    )
    stored = store.create(record)
    assert stored.created > 0 and stored.state == "created"
    assert store.get(record.id) == stored
    assert store.get("web").config == {"cmd": ["sh", "-c", "echo hi"], "env": ["A=1"], "tty": False}
    assert len(stored.id) == 64 and stored.short_id == stored.id[:12]


def test_new_ids_are_random_hex_and_never_all_digits_when_short():
    ids = {new_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 64 and int(i, 16) >= 0 and not i[:12].isdigit() for i in ids)


def test_a_new_record_must_be_in_state_created(store):
    with pytest.raises(InvalidArgument):
        store.create(rec("x", state="running"))


@pytest.mark.parametrize("bad", ["a", "-x", "_x", ".x", "a b", "a/b", "é1", "x:y"])
def test_invalid_names_are_refused_with_dockers_message(store, bad):
    with pytest.raises(InvalidArgument, match=r"Invalid container name .* only \[a-zA-Z0-9\]"):
        store.create(rec(bad))


def test_a_leading_slash_is_accepted_and_dropped(store):
    assert store.create(rec("/web")).name == "web"
    assert store.get("/web").name == store.get("web").name == "web"


def test_a_taken_name_raises_already_exists_with_dockers_message(store):
    first = store.create(rec("web"))
    with pytest.raises(AlreadyExists) as err:
        store.create(rec("web"))
    assert str(err.value) == (
        f'Conflict. The container name "/web" is already in use by container "{first.id}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )
    assert len(store.list(all=True)) == 1


def test_a_taken_id_raises_already_exists(store):
    first = store.create(rec("a1"))
    with pytest.raises(AlreadyExists):
        store.create(rec("a2", id=first.id))


def test_bad_ids_labels_and_json_are_refused(store):
    with pytest.raises(InvalidArgument):
        store.create(rec("x1", id="ABC"))
    with pytest.raises(InvalidArgument):
        store.create(rec("x2", labels={"a": 1}))  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        store.create(rec("x3", config={"f": object()}))
    assert store.list(all=True) == []


# -- generated names ----------------------------------------------------------------------


def test_generated_names_look_like_adjective_surname():
    rng = random.Random(1)
    for _ in range(200):
        adjective, surname = random_name(0, rng).split("_")
        assert adjective in ADJECTIVES and surname in SURNAMES
    assert random_name(3, rng)[-1].isdigit()
    assert all(is_valid_name(w) for w in ADJECTIVES + SURNAMES)


def test_generated_names_are_valid_and_unique_across_many(store):
    names = [store.create(rec()).name for _ in range(400)]
    assert len(set(names)) == 400
    assert all(is_valid_name(n) for n in names)


def test_when_generated_names_keep_colliding_the_short_id_is_the_name(tmp_path):
    with ContainerStore(str(tmp_path / "c.db"), namer=lambda retry: "same_name") as store:
        assert store.create(rec()).name == "same_name"
        second = store.create(rec())
        assert second.name == second.id[:12]


def test_check_name_strips_the_slash_and_refuses_non_strings():
    assert check_name("/ab") == "ab"
    with pytest.raises(InvalidArgument):
        check_name(None)


# -- lookup -------------------------------------------------------------------------------


def test_lookup_by_exact_id_name_and_unique_prefix(store):
    c = store.create(rec("web", id=with_id("abc1")))
    store.create(rec("db", id=with_id("abd2")))
    assert store.get(c.id).id == c.id
    assert store.get("web").id == c.id
    assert store.get("abc").id == c.id


def test_an_ambiguous_prefix_is_invalid_argument(store):
    store.create(rec("one", id=with_id("abc1")))
    store.create(rec("two", id=with_id("abc2")))
    with pytest.raises(InvalidArgument, match="multiple IDs found with provided prefix: abc"):
        store.get("abc")


def test_nothing_found_is_dockers_no_such_container(store):
    store.create(rec("web", id=with_id("abc")))
    for ref in ("nope", "abd", "ABC", "web2"):
        with pytest.raises(NotFound, match=f"^No such container: {ref}$"):
            store.get(ref)
    with pytest.raises(InvalidArgument):
        store.get("")


def test_a_name_wins_over_an_id_prefix_and_an_id_over_a_name(store):
    target = store.create(rec("other", id=with_id("beef")))
    named = store.create(rec("beef"))  # a name that is also a prefix of target's id
    assert store.get("beef").id == named.id
    assert store.get("bee").id == target.id
    # A container named like another's full id: the exact id comes first (moby order).
    impostor = store.create(rec(target.id))
    assert store.get(target.id).id == target.id
    assert impostor.name == target.id


# -- list and filters ---------------------------------------------------------------------


@pytest.fixture
def populated(store):
    a = store.create(rec("web1", image="nginx:1.25", labels={"app": "web", "env": "prod"}))
    b = store.create(rec("web2", image="nginx", image_id="sha256:" + "cd" * 32,
                         labels={"app": "web", "env": "dev"}))  # fmt: skip
    c = store.create(rec("db", image="docker.io/library/postgres:latest", labels={"app": "db"}))
    d = store.create(rec("job", image="busybox"))
    store.update(a.id, state="running", pid=100)
    store.update(b.id, state="running", pid=101)
    store.update(b.id, state="paused")
    store.update(c.id, state="running", pid=102)
    store.update(c.id, state="exited", exit_code=3, pid=0)
    return {"a": a.id, "b": b.id, "c": c.id, "d": d.id}


def names(records) -> list[str]:
    return [r.name for r in records]


def test_list_shows_live_containers_newest_first_and_all_with_all(store, populated):
    assert names(store.list()) == ["web2", "web1"]
    assert names(store.list(all=True)) == ["job", "db", "web2", "web1"]


def test_filter_by_name_is_a_regex_search_like_docker(store, populated):
    assert names(store.list(all=True, filters={"name": "web"})) == ["web2", "web1"]
    assert names(store.list(all=True, filters={"name": "^/db$"})) == ["db"]
    assert names(store.list(all=True, filters={"name": "^db$"})) == ["db"]
    assert names(store.list(all=True, filters={"name": ["db", "job"]})) == ["job", "db"]
    assert store.list(all=True, filters={"name": "(("}) == []


def test_filter_by_id_prefix(store, populated):
    short = populated["c"][:8]
    assert names(store.list(all=True, filters={"id": short})) == ["db"]


def test_filter_by_label_key_or_key_value_all_must_match(store, populated):
    assert names(store.list(all=True, filters={"label": "app"})) == ["db", "web2", "web1"]
    assert names(store.list(all=True, filters={"label": "app=web"})) == ["web2", "web1"]
    assert names(store.list(all=True, filters={"label": ["app=web", "env=dev"]})) == ["web2"]
    assert store.list(all=True, filters={"label": "app=nope"}) == []


def test_filter_by_status_implies_all_and_checks_the_value(store, populated):
    assert names(store.list(filters={"status": "exited"})) == ["db"]
    assert names(store.list(filters={"status": ["created", "paused"]})) == ["job", "web2"]
    with pytest.raises(InvalidArgument, match="invalid filter 'status=up'"):
        store.list(filters={"status": "up"})


def test_filter_by_ancestor_name_or_image_id(store, populated):
    assert names(store.list(all=True, filters={"ancestor": "nginx"})) == ["web2"]
    assert names(store.list(all=True, filters={"ancestor": "nginx:1.25"})) == ["web1"]
    assert names(store.list(all=True, filters={"ancestor": "postgres"})) == ["db"]
    assert names(store.list(all=True, filters={"ancestor": "cdcdcd"})) == ["web2"]
    assert names(store.list(all=True, filters={"ancestor": "sha256:cdcd"})) == ["web2"]


def test_filter_by_exit_code_before_and_since(store, populated):
    assert names(store.list(filters={"exited": "3"})) == ["db"]
    assert store.list(filters={"exited": "0"}) == []
    assert names(store.list(all=True, filters={"before": "db"})) == ["web2", "web1"]
    assert names(store.list(all=True, filters={"since": "web2"})) == ["job", "db"]


def test_unknown_filters_are_refused(store):
    with pytest.raises(InvalidArgument, match="invalid filter 'volume'"):
        store.list(filters={"volume": "x"})


def test_parse_filters_groups_values_by_key():
    assert parse_filters(["label=a=b", "name=x", "label=c"]) == {
        "label": ["a=b", "c"],
        "name": ["x"],
    }
    with pytest.raises(InvalidArgument):
        parse_filters(["nothing"])


# -- updates and the state machine --------------------------------------------------------


def test_a_container_lives_through_dockers_usual_states(store):
    c = store.create(rec("life"))
    steps = [
        {"state": "running", "pid": 42, "started_at": 5.0},
        {"state": "paused"},
        {"state": "running"},
        {"state": "exited", "exit_code": 137, "oom_killed": True, "finished_at": 9.0, "pid": 0},
        {"state": "running", "pid": 43, "restart_count": 1},  # docker start / restart
        {"state": "restarting"},
        {"state": "running", "pid": 44},
        {"state": "exited", "exit_code": 0},
        {"state": "removing"},
    ]
    for step in steps:
        returned = store.update(c.id, **step)
        assert store.get(c.id) == returned
    final = store.get("life")
    assert (final.state, final.restart_count, final.oom_killed) == ("removing", 1, True)
    assert store.remove(c.id).id == c.id
    with pytest.raises(NotFound):
        store.get(c.id)


@pytest.mark.parametrize(
    "path, bad",
    [
        ([], "paused"),  # created -> paused: never started
        ([], "restarting"),
        (["running", "exited"], "paused"),
        (["dead"], "running"),
        (["removing"], "running"),
        (["removing"], "exited"),
    ],
)
def test_a_bad_transition_is_a_failed_precondition_and_changes_nothing(store, path, bad):
    c = store.create(rec("tr"))
    for state in path:
        store.update(c.id, state=state)
    before = store.get(c.id)
    with pytest.raises(FailedPrecondition, match=f"cannot become {bad}"):
        store.update(c.id, state=bad, pid=99)
    assert store.get(c.id) == before


def test_every_state_can_go_to_removing_and_removing_only_to_dead():
    assert all("removing" in TRANSITIONS[s] for s in STATES if s != "removing")
    assert TRANSITIONS["removing"] == {"dead"}


def test_a_second_removal_is_refused_while_one_is_in_progress(store):
    c = store.create(rec("gone"))
    store.update(c.id, state="removing")
    with pytest.raises(FailedPrecondition, match="already in progress"):
        store.update(c.id, state="removing")


def test_setting_the_same_state_again_is_allowed(store):
    c = store.create(rec("same"))
    store.update(c.id, state="running", pid=1)
    assert store.update(c.id, state="running", pid=2).pid == 2


def test_update_refuses_unknown_and_fixed_fields_and_bad_states(store):
    c = store.create(rec("ff"))
    with pytest.raises(InvalidArgument, match="unknown"):
        store.update(c.id, colour="red")
    for field in ("id", "name", "created"):
        with pytest.raises(InvalidArgument, match="cannot be updated"):
            store.update(c.id, **{field: "x"})
    with pytest.raises(InvalidArgument, match="invalid container state"):
        store.update(c.id, state="zombie")
    with pytest.raises(NotFound):
        store.update("nope", pid=1)


def test_update_finds_containers_by_name_or_prefix(store):
    c = store.create(rec("byname"))
    assert store.update("byname", labels={"k": "v"}).labels == {"k": "v"}
    assert store.update(c.id[:10], network={"ip": "10.0.0.9"}).network == {"ip": "10.0.0.9"}


# -- rename and remove --------------------------------------------------------------------


def test_rename_moves_the_name_and_frees_the_old_one(store):
    c = store.create(rec("old"))
    assert store.rename("old", "/new").name == "new"
    assert store.get("new").id == c.id
    with pytest.raises(NotFound):
        store.get("old")
    store.create(rec("old"))  # free again


def test_rename_refuses_taken_invalid_and_same_names(store):
    a = store.create(rec("aa"))
    b = store.create(rec("bb"))
    with pytest.raises(AlreadyExists, match=f'"/bb" is already in use by container "{b.id}"'):
        store.rename(a.id, "bb")
    with pytest.raises(InvalidArgument):
        store.rename(a.id, "a b")
    with pytest.raises(InvalidArgument, match="same name"):
        store.rename(a.id, "aa")
    store.update(a.id, state="removing")
    with pytest.raises(FailedPrecondition):
        store.rename(a.id, "cc")


@pytest.mark.parametrize("state, advice", [("running", "Stop"), ("paused", "Unpause")])
def test_removing_a_live_container_is_refused_like_docker(store, state, advice):
    c = store.create(rec("live"))
    store.update(c.id, state="running")
    store.update(c.id, state=state)
    with pytest.raises(
        FailedPrecondition, match=f"You cannot remove a {state} container .*{advice}"
    ):
        store.remove("live")
    assert store.get("live").id == c.id


def test_stopped_containers_can_be_removed_directly(store):
    for state in ("created", "exited", "dead"):
        c = store.create(rec(f"r-{state}"))
        if state != "created":
            store.update(c.id, state=state)
        store.remove(c.id)
    assert store.list(all=True) == []


# -- transactions, schema -----------------------------------------------------------------


def test_a_failed_transaction_leaves_no_trace(store):
    c = store.create(rec("keep"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.create(rec("lost"))
            store.update(c.id, state="running", pid=5)
            raise RuntimeError("boom")
    assert names(store.list(all=True)) == ["keep"]
    assert store.get("keep").state == "created"


def test_a_transaction_groups_several_calls(store):
    with store.transaction():
        a = store.create(rec("one"))
        store.update(a.id, state="running")
        store.rename(a.id, "uno")
    assert store.get("uno").state == "running"


def test_a_held_write_lock_times_out_as_unavailable_but_readers_go_on(tmp_path):
    path = str(tmp_path / "c.db")
    with ContainerStore(path) as holder, ContainerStore(path, timeout=0.2) as other:
        with holder.transaction():
            holder.create(rec("held"))
            with pytest.raises(Unavailable, match="busy"):
                other.create(rec("waiting"))
            assert other.list(all=True) == []
        assert names(other.list(all=True)) == ["held"]


def test_the_schema_is_versioned_and_a_newer_one_is_refused(tmp_path):
    path = str(tmp_path / "c.db")
    with ContainerStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (99, 0)")
    db.commit()
    db.close()
    with pytest.raises(FailedPrecondition, match="newer"):
        ContainerStore(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "c.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(FailedPrecondition):
        ContainerStore(str(path))


# -- races between processes --------------------------------------------------------------


def _create_web(path: str, start, results) -> None:
    try:
        start.wait(10)  # all open the new database and create at once
        with ContainerStore(path, timeout=30) as store:
            record = store.create(rec("web"))
        results.put(("ok", record.id))
    except AlreadyExists as e:
        results.put(("exists", str(e)))
    except Exception as e:  # reported to the parent, which asserts
        results.put(("error", repr(e)))


def test_twenty_processes_creating_one_name_exactly_one_wins(tmp_path):
    path = str(tmp_path / "race.db")
    results, start = CTX.Queue(), CTX.Barrier(20)
    procs = [CTX.Process(target=_create_web, args=(path, start, results)) for _ in range(20)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(60)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["exists"] * 19 + ["ok"], outcomes
    winner = next(value for kind, value in outcomes if kind == "ok")
    assert all(winner in value for kind, value in outcomes if kind == "exists")
    with ContainerStore(path) as store:
        assert [(r.name, r.id) for r in store.list(all=True)] == [("web", winner)]
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _cycle(path: str, ref: str, rounds: int, start, errors) -> None:
    try:
        start.wait(10)
        with ContainerStore(path, timeout=30) as store:
            for i in range(rounds):
                store.update(ref, state="running", pid=1000 + i)
                store.update(ref, state="exited", exit_code=i, pid=0)
            store.update(ref, restart_count=rounds)
    except Exception as e:
        errors.put(f"{ref}: {e!r}")


def test_parallel_updates_of_different_containers_all_succeed(tmp_path):
    path = str(tmp_path / "par.db")
    with ContainerStore(path) as store:
        ids = [store.create(rec(f"c{i}")).id for i in range(8)]
    errors, start = CTX.Queue(), CTX.Barrier(len(ids))
    procs = [CTX.Process(target=_cycle, args=(path, i, 25, start, errors)) for i in ids]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert errors.empty(), errors.get()
    assert all(proc.exitcode == 0 for proc in procs)
    with ContainerStore(path) as store:
        for record in store.list(all=True):
            assert (record.state, record.exit_code, record.restart_count) == ("exited", 24, 25)
