"""hutch.util.record behaves as dataclasses does: each case runs the same class body
under both decorators and compares what a caller sees."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from hutch.util import record as rec


def make(decorate, field, **opts):
    @decorate(**opts)
    class Point:
        x: int
        y: int = 0
        tags: list = field(default_factory=list)
        meta: dict = field(default_factory=dict, compare=False, repr=False)

    return Point


BOTH = [(dataclasses.dataclass, dataclasses.field), (rec.record, rec.field)]


@pytest.mark.parametrize("frozen", [False, True])
def test_init_repr_eq_match_dataclasses(frozen):
    ref, ours = (make(d, f, frozen=frozen) for d, f in BOTH)
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {"x": 3, "tags": ["a"]}),
                         ((1,), {"y": 5, "meta": {"k": 1}})]:
        a, b = ref(*args, **kwargs), ours(*args, **kwargs)
        assert repr(a) == repr(b)
        assert (a.x, a.y, a.tags, a.meta) == (b.x, b.y, b.tags, b.meta)
    assert ours(1, meta={"a": 1}) == ours(1, meta={"b": 2})  # compare=False
    assert ours(1) != ours(2)
    assert ours(1).__eq__(ref(1)) is NotImplemented
    assert ours(1).tags is not ours(1).tags  # a fresh list each time


@pytest.mark.parametrize("args,kwargs,needle", [
    ((), {}, "missing required argument: 'x'"),
    ((1, 2, [], {}, 5), {}, "positional arguments"),
    ((1,), {"x": 2}, "multiple values for argument 'x'"),
    ((1,), {"nope": 2}, "unexpected keyword argument 'nope'"),
])
def test_bad_calls_raise_type_error_like_dataclasses(args, kwargs, needle):
    ref, ours = (make(d, f) for d, f in BOTH)
    with pytest.raises(TypeError):
        ref(*args, **kwargs)
    with pytest.raises(TypeError, match=needle):
        ours(*args, **kwargs)


def test_frozen_refuses_assignment_and_hashes_by_value():
    Point = make(rec.record, rec.field, frozen=True)
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 5
    with pytest.raises(rec.FrozenInstanceError):
        del p.y
    assert hash(Point(1, 2, ("a",))) == hash(Point(1, 2, ("a",)))
    assert {Point(1, 2, ()), Point(1, 2, ())} == {Point(1, 2, ())}


def test_mutable_records_are_unhashable_unless_they_say_so():
    Point = make(rec.record, rec.field)
    with pytest.raises(TypeError):
        hash(Point(1))

    @rec.record
    class Keyed:
        k: str

        def __hash__(self):
            return 7

    assert hash(Keyed("a")) == 7


def test_own_methods_win():
    @rec.record
    class Shown:
        a: int

        def __repr__(self):
            return "mine"

        def __eq__(self, other):
            return True

    assert repr(Shown(1)) == "mine"
    assert Shown(1) == Shown(2)


def test_kw_only():
    @rec.record(frozen=True, kw_only=True)
    class K:
        a: int = 1
        b: int

    assert K(b=2) == K(a=1, b=2)
    with pytest.raises(TypeError):
        K(1, 2)


def test_class_level_defaults_stay_readable():
    @rec.record
    class D:
        a: int = 4
        b: list = rec.field(default_factory=list)
        c: tuple = rec.field(default=())

    assert D.a == 4 and D.c == ()
    assert not hasattr(D, "b")


def test_definition_errors():
    with pytest.raises(TypeError, match="non-default argument 'b'"):
        @rec.record
        class Bad:
            a: int = 0
            b: int
    with pytest.raises(ValueError, match="mutable default"):
        @rec.record
        class Bad2:
            a: list = []  # noqa: RUF012
    with pytest.raises(ValueError):
        rec.field(default=1, default_factory=int)


def test_fields_replace_asdict_match_dataclasses():
    ref, ours = (make(d, f, frozen=True) for d, f in BOTH)

    @rec.record
    class Outer:
        inner: object
        items: list
        by_name: dict

    o = ours(1, 2, ["t"], {"m": 1})
    assert [f.name for f in rec.fields(o)] == [f.name for f in dataclasses.fields(ref)]
    assert rec.fields(ours) is rec.fields(o)
    r = rec.replace(o, y=9)
    assert (r.x, r.y, r.tags) == (1, 9, ["t"]) and o.y == 2
    with pytest.raises(TypeError):
        rec.replace(o, nope=1)
    nested = Outer(o, [o, (o,)], {"k": o})
    expect = {"x": 1, "y": 2, "tags": ["t"], "meta": {"m": 1}}
    assert rec.asdict(nested) == {"inner": expect, "items": [expect, (expect,)],
                                  "by_name": {"k": expect}}
    assert rec.asdict(o) == dataclasses.asdict(ref(1, 2, ["t"], {"m": 1}))
    d = rec.asdict(o)
    d["tags"].append("x")
    assert o.tags == ["t"]  # containers are copied
    with pytest.raises(TypeError):
        rec.asdict(1)
    with pytest.raises(TypeError):
        rec.fields(1)


def test_importing_it_pulls_in_neither_dataclasses_nor_typing_nor_inspect():
    import os

    import hutch

    src = os.path.dirname(os.path.dirname(hutch.__file__))
    code = (f"import sys; sys.path.insert(0, {src!r}); import hutch.util.record; "
            "print(sorted({'dataclasses', 'typing', 'inspect'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
