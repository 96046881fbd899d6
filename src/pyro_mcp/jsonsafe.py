"""Results as JSON can carry them (MCP tool results and the CLI's --json output)."""

from __future__ import annotations

from typing import Any


def json_safe(value: Any) -> Any:
    """Strings as UTF-8 can carry them: a guest file name that is not UTF-8 reaches us with
    its odd bytes as lone surrogates (Python's convention), which no JSON encoder sends.
    Such a byte is shown as ``\\xHH``; everything else is returned unchanged."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:
                raw = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # a surrogate that stands for no byte
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
            return raw.decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
