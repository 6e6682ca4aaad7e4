"""Typed configuration dataclasses with validation (also used for notebook parameters)."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import fields
from typing import Any

from hbkit.errors import ConfigError


def check_types(obj: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` when a dataclass field holds a value of the wrong type.

    Ints are accepted for float fields; bools are not accepted for int/float fields.
    """
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        expected = hints[f.name]
        if not _matches(value, expected):
            raise ConfigError(
                f"Parameter {f.name!r}{(' of ' + where) if where else ''} must be {_describe(expected)}, "
                f"got {value!r} ({type(value).__name__}). Fix the value in the parameters cell or -p option."
            )


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def from_dict(cls, values: dict, where: str = ""):
    """Build dataclass ``cls`` from ``values``; unknown keys raise ConfigError listing valid names."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"Unknown parameter(s) {unknown}{(' for ' + where) if where else ''}. "
                          f"Valid names: {sorted(names)}.")
    obj = cls(**values)
    check_types(obj, where)
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def check_seed(seed: Any) -> int:
    """``seed`` as an int (any integral type, not bool); ConfigError otherwise."""
    import operator

    try:
        if isinstance(seed, bool):
            raise TypeError
        return operator.index(seed)
    except TypeError:
        raise ConfigError(f"seed must be an integer, got {seed!r}.") from None
