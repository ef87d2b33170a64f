"""`planner.results.frozen` behaves as ``@dataclass(frozen=True)``: each check below builds the
same class both ways and compares what a user of a result can observe."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from planner.results import Assumption, Estimate, Layout, Result, frozen


@frozen
class FastPlain:
    x: int
    y: list


@dataclasses.dataclass(frozen=True)
class SlowPlain:
    x: int
    y: list


@frozen
class Pickled(Result):
    a: int
    b: str = "b"


def _pair():
    fast = frozen(type("Pair", (Result,), {"__annotations__": {"a": "int", "b": "str",
                                                               "c": "float | None"},
                                           "c": None}))
    slow = dataclasses.dataclass(frozen=True)(
        type("Pair", (Result,), {"__annotations__": {"a": "int", "b": "str",
                                                     "c": "float | None"}, "c": None}))
    return fast, slow


def test_equality_hash_repr_doc_and_signature_match_dataclass():
    fast, slow = _pair()
    f, s = fast(1, "x"), slow(1, "x")
    assert repr(f) == repr(s) == "Pair(a=1, b='x', c=None)"
    assert fast.__doc__ == slow.__doc__ == "Pair(a: 'int', b: 'str', c: 'float | None' = None)"
    assert inspect.signature(fast) == inspect.signature(slow)
    assert fast.__match_args__ == slow.__match_args__ == ("a", "b", "c")
    assert hash(f) == hash(s) == hash((1, "x", None))
    assert f == fast(a=1, b="x", c=None) and f != fast(1, "y") and f != s
    assert dataclasses.is_dataclass(f) and dataclasses.asdict(f) == dataclasses.asdict(s)
    assert [x.name for x in dataclasses.fields(f)] == ["a", "b", "c"]
    assert dataclasses.replace(f, c=2.0) == fast(1, "x", 2.0)
    assert f.to_dict() == {"a": 1, "b": "x", "c": None}


def test_frozen_and_unhashable_fields_as_dataclass():
    f, s = FastPlain(1, [2]), SlowPlain(1, [2])
    for obj in (f, s):
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
            obj.x = 3
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'x'"):
            del obj.x
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.new = 1
        with pytest.raises(TypeError, match="unhashable"):
            hash(obj)
    assert f.x == 1 and f.y == [2] and vars(f) == vars(s)


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {"x": 1}, r"missing 1 required positional argument: 'y'"),
    ((), {}, r"missing 2 required positional arguments: 'x' and 'y'"),
    ((1, 2), {"z": 3}, r"got an unexpected keyword argument 'z'"),
    ((1, 2, 3), {}, r"takes 3 positional arguments but 4 were given"),
    ((1,), {"x": 1, "y": 2}, r"got multiple values for argument 'x'"),
])
def test_bad_arguments_raise_the_type_errors_dataclass_raises(args, kwargs, message):
    for cls in (FastPlain, SlowPlain):
        with pytest.raises(TypeError, match=message):
            cls(*args, **kwargs)


def test_defaults_positional_and_keyword_construction():
    p = Pickled(3)
    assert p.b == "b" and Pickled(3, "c").b == "c" and Pickled(b="d", a=1).b == "d"
    assert pickle.loads(pickle.dumps(p)) == p and copy.deepcopy(p) == p and copy.copy(p) == p


def test_field_options_are_refused():
    with pytest.raises(TypeError, match="field"):
        @frozen
        class Bad:
            x: list = dataclasses.field(default_factory=list)


def test_the_estimate_results_are_frozen_dataclasses():
    for cls in (Assumption, Layout, Estimate):
        assert dataclasses.is_dataclass(cls) and cls.__setattr__ is FastPlain.__setattr__
