"""The blank of practice notebooks, ``____``, and how a check tells that an answer still holds it."""

from __future__ import annotations

import dataclasses
import types

__all__ = ["Blank", "contains_blank", "____"]


class Blank:
    """The blank a learner fills in: ``____``. A check given it says "not attempted"."""

    _instance: Blank | None = None

    def __new__(cls) -> Blank:
        # One blank only, so that ``answer is ____`` holds across imports and copies.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"

    def __copy__(self) -> Blank:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Blank:
        return self

    def __reduce__(self) -> str:
        return "____"


____ = Blank()
"""The placeholder of practice notebooks: replace it with your answer."""

_BLANK_NAME = "____"


def _code_uses_blank(code: types.CodeType) -> bool:
    if _BLANK_NAME in code.co_names or _BLANK_NAME in code.co_varnames:
        return True
    return any(isinstance(const, types.CodeType) and _code_uses_blank(const) for const in code.co_consts)


def contains_blank(value: object, _seen: set[int] | None = None) -> bool:
    """Whether ``value`` is the blank, holds it, or is a function whose code still uses it.

    Containers, dataclasses and functions (with their closures' values) are searched;
    a function counts as unanswered as long as its body still names ``____``.
    """
    seen = _seen if _seen is not None else set()
    if value is ____:
        return True
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, (str, bytes, int, float, complex, bool, type(None))):
        return False
    if isinstance(value, dict):
        return any(contains_blank(k, seen) or contains_blank(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_blank(item, seen) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(contains_blank(getattr(value, f.name, None), seen) for f in dataclasses.fields(value))
    function = getattr(value, "__func__", value)  # a bound method's function
    if isinstance(function, types.FunctionType):
        if _code_uses_blank(function.__code__):
            return True
        closure = function.__closure__ or ()
        return any(contains_blank(cell.cell_contents, seen) for cell in closure if _cell_is_set(cell))
    partial_function = getattr(value, "func", None)
    if partial_function is not None and hasattr(value, "args") and hasattr(value, "keywords"):
        return contains_blank(partial_function, seen) or contains_blank(value.args, seen) or contains_blank(value.keywords, seen)
    return False


def _cell_is_set(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True
