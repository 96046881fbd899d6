"""The checks a ``Param`` declares (ranges, lengths), applied to one value: the one home of
those rules for SDK calls (the ``@operation`` wrapper) and MCP calls (mcp/schema.py)."""

from __future__ import annotations

import types
import typing
from typing import Any

from ..errors import ValidationError
from ..validation import number_in_range, text, within_ceiling
from .registry import ParamInfo


def _numeric(annotation: Any) -> type | None:
    """int or float, also inside ``X | None``."""
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    return next((t for t in options if t in (int, float)), None)


def _flag(annotation: Any) -> bool:
    """bool, also inside ``bool | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return bool in typing.get_args(annotation)
    return annotation is bool


def has_checks(param: ParamInfo) -> bool:
    meta = param.meta
    bounds = (meta.ge, meta.le, meta.gt, meta.max_length)
    return meta.ceiling or any(b is not None for b in bounds) or _flag(param.annotation)


def check_value(param: ParamInfo, value: Any, shown: str) -> None:
    """Raise a one-line ``ValidationError`` naming ``shown`` when ``value`` breaks what
    ``param`` declares. None passes where None is the default (an optional argument)."""
    meta = param.meta
    if value is None and param.default is None:
        return
    if _flag(param.annotation) and not isinstance(value, bool):  # "yes" is not True
        raise ValidationError(f"{shown} must be true or false (got {value!r:.40})")
    number = _numeric(param.annotation)
    if number is not None and meta.ceiling:  # the operator's bound, named in its refusal
        within_ceiling(shown, value, int(meta.ge or 0))
    elif number is not None and any(b is not None for b in (meta.ge, meta.le, meta.gt)):
        number_in_range(shown, value, integer=number is int, ge=meta.ge, gt=meta.gt, le=meta.le)
    if meta.max_length is not None:  # UTF-8 bytes (the schema's maxLength counts characters,
        text(shown, value, max_bytes=meta.max_length, allow_nul=True)  # never more)
