"""Records: `dataclasses` without its start-up cost.

`@record` turns a class of annotated fields into a plain data class the way
`@dataclasses.dataclass` does: __init__ (positional or keyword), __repr__, __eq__, and
for `frozen=True` immutability and __hash__; `field()`, `fields()`, `replace()` and
`asdict()` work as their dataclasses namesakes do.

Why not dataclasses: `import dataclasses` pulls in `inspect` (with ast, dis, tokenize),
and each decorated class compiles four or five generated methods with exec(). On these
machines that is ~6 ms for the import and ~0.35 ms per class; the `run` path defines
about 25 classes, ~15 ms of a command whose target is ~70 ms. Here the methods are
closures over the field list, made once per class without compiling anything; an
instance costs a few microseconds more to build, which no hutch path notices.

What is left out: inheritance between records, InitVar, __post_init__, ordering,
slots, match_args. Type checkers see `record` as a dataclass transform (PEP 681).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the typing module itself costs ~2 ms to import
if TYPE_CHECKING:
    from typing import dataclass_transform
else:
    def dataclass_transform(**_kwargs):
        return lambda f: f

__all__ = ["FrozenInstanceError", "Field", "asdict", "field", "fields", "record", "replace"]

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr")

    def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True,  # noqa: A002
                 compare=True, hash=None) -> None:  # noqa: A002
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = hash

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(*, default=_MISSING, default_factory=_MISSING, repr=True,  # noqa: A002
          compare=True, hash=None):  # noqa: A002
    """A field with a default factory, or left out of repr, eq or hash."""
    return Field(default, default_factory, repr, compare, hash)


def fields(class_or_instance) -> tuple[Field, ...]:
    try:
        return class_or_instance.__record_fields__
    except AttributeError:
        raise TypeError("fields() needs a record class or instance") from None


def replace(obj, /, **changes):
    """A copy of `obj` with `changes` (validated by the class's __init__)."""
    for f in obj.__record_fields__:
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def asdict(obj) -> dict:
    """Fields as a dict, records nested in lists, tuples and dicts included (deep copy of
    those containers, as dataclasses.asdict makes)."""
    if not hasattr(obj.__class__, "__record_fields__"):
        raise TypeError("asdict() needs a record instance")
    return _asdict(obj)


def _asdict(value):
    cls = value.__class__
    if hasattr(cls, "__record_fields__"):
        return {f.name: _asdict(getattr(value, f.name)) for f in cls.__record_fields__}
    if cls is list:
        return [_asdict(v) for v in value]
    if cls is dict:
        return {_asdict(k): _asdict(v) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [_asdict(v) for v in value]
        return cls(*items) if hasattr(cls, "_fields") else cls(items)
    return value


@dataclass_transform(field_specifiers=(field, Field))
def record(cls=None, /, *, frozen: bool = False, kw_only: bool = False):
    """Decorate a class of annotated fields (see the module docstring)."""
    def wrap(c):
        return _process(c, frozen, kw_only)

    return wrap if cls is None else wrap(cls)


def _process(cls, frozen: bool, kw_only: bool):
    flds: list[Field] = []
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field):
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        if f.default_factory is _MISSING and f.default.__class__ in (list, dict, set):
            raise ValueError(f"mutable default {f.default.__class__} for field {name} "
                             "is not allowed: use default_factory")
        flds.append(f)
    all_fields = tuple(flds)
    names = tuple(f.name for f in all_fields)
    if not kw_only:
        seen_default = None
        for f in all_fields:
            if f.default is not _MISSING or f.default_factory is not _MISSING:
                seen_default = f.name
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default "
                                f"argument {seen_default!r}")
    positional = 0 if kw_only else len(names)
    defaults = {f.name: f.default for f in all_fields if f.default is not _MISSING}
    factories = {f.name: f.default_factory for f in all_fields
                 if f.default_factory is not _MISSING}
    qualname = cls.__qualname__
    setter = object.__setattr__

    def __init__(self, *args, **kwargs):
        if len(args) > positional:
            raise TypeError(f"{qualname}.__init__() takes {positional + 1} positional "
                            f"arguments but {len(args) + 1} were given")
        for name, value in zip(names, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{qualname}.__init__() got multiple values for "
                                f"argument {name!r}")
            setter(self, name, value)
        taken = len(args)
        for name in names[len(args):]:
            if name in kwargs:
                value = kwargs[name]
                taken += 1
            elif name in defaults:
                value = defaults[name]
            elif name in factories:
                value = factories[name]()
            else:
                raise TypeError(f"{qualname}.__init__() missing required argument: "
                                f"{name!r}")
            setter(self, name, value)
        if taken - len(args) != len(kwargs):
            extra = next(k for k in kwargs if k not in names)
            raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument "
                            f"{extra!r}")

    shown = tuple(f.name for f in all_fields if f.repr)

    def __repr__(self):
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
        return f"{qualname}({inner})"

    compared = tuple(f.name for f in all_fields if f.compare)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in compared)

    __init__.__qualname__ = f"{qualname}.__init__"
    own_hash = cls.__dict__.get("__hash__")  # None too when the body defines __eq__
    cls.__record_fields__ = all_fields
    cls.__init__ = __init__
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = __repr__
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = __eq__
    if frozen:
        hashed = tuple(f.name for f in all_fields
                       if (f.compare if f.hash is None else f.hash))

        def __setattr__(self, name, value):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name):
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        def __hash__(self):
            return hash(tuple(getattr(self, n) for n in hashed))

        cls.__setattr__ = __setattr__
        cls.__delattr__ = __delattr__
        cls.__hash__ = own_hash or __hash__
    else:  # mutable and compared by value: unhashable, as dataclasses makes it
        cls.__hash__ = own_hash
    return cls
