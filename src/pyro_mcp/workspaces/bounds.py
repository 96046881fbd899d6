"""Bounded results (issue 14): the one home of the rules that keep a result small and let
the rest be read page by page.

Sizes are measured as the result's compact JSON text in UTF-8 (what an MCP reply carries),
so a control character counts 2-6 bytes, as it does on the wire. An MCP reply holds the
result twice (its text block and ``structuredContent``), so ``MCP_RESULT_BYTES`` keeps a
whole reply under 16 KiB.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

MCP_RESULT_BYTES = 7 * 1024
"""The default ``max_result_bytes`` of MCP tool calls (twice this, plus framing, < 16 KiB)."""
SHORT_ESCAPES = frozenset('"\\\b\f\n\r\t')

T = TypeVar("T")


def json_size(value: Any) -> int:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def _cost(ch: str) -> int:
    """Bytes ``ch`` takes inside a JSON string (ensure_ascii off)."""
    if ch in SHORT_ESCAPES:
        return 2
    code = ord(ch)
    if code < 0x20 or 0xD800 <= code < 0xE000:
        return 6
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _fit(chars: Any, budget: int) -> int:
    """How many of ``chars`` (in order) fit ``budget`` bytes of JSON text."""
    used = count = 0
    for ch in chars:
        used += _cost(ch)
        if used > budget:
            break
        count += 1
    return count


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def head_tail(text: str, budget: int, where: str) -> tuple[str, bool]:
    """``text`` when it fits ``budget`` bytes of JSON text, else its head and tail with the
    cut marked in one line naming the cut bytes and ``where`` to read them (``{offset}``
    in it: the first cut byte)."""
    if json_size(text) - 2 <= budget:
        return text, False
    half = max(budget - 200, 0) // 2
    head = text[: _fit(text, half)]
    tail_count = _fit(reversed(text), half)
    tail = text[len(text) - tail_count :] if tail_count else ""
    start, end = _utf8_len(head), _utf8_len(text) - _utf8_len(tail)
    hint = where.format(offset=start)
    marker = f"\n[pyro: bytes {start}-{end} of {_utf8_len(text)} cut here; {hint}]\n"
    return f"{head}{marker}{tail}", True


def byte_page(text: str, offset: int, limit: int, budget: int | None) -> dict[str, Any]:
    """Bytes ``offset`` .. ``offset + limit`` of ``text`` (UTF-8), ended at a character
    boundary and within ``budget`` bytes of JSON text: ``{text, offset, returned_bytes,
    total_bytes, next_offset}`` (``next_offset`` null at the end). Offsets taken from
    ``next_offset`` always fall on character boundaries, so the pages join byte-exact (an
    offset inside a character starts at that character)."""
    raw = text.encode("utf-8", "surrogatepass")
    start = min(offset, len(raw))
    while 0 < start < len(raw) and (raw[start] & 0xC0) == 0x80:
        start -= 1  # an offset inside a character starts at that character
    end = min(start + limit, len(raw))
    while start < end < len(raw) and (raw[end] & 0xC0) == 0x80:
        end -= 1  # never split a character
    if end == start < len(raw):  # a limit shorter than the character: take it whole
        end += 1
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:
            end += 1
    page = raw[start:end].decode("utf-8", "surrogatepass")
    if budget is not None:
        page = page[: max(_fit(page, budget), 1 if page else 0)]
    stop = start + _utf8_len(page)
    return {
        "text": page,
        "offset": start,
        "returned_bytes": stop - start,
        "total_bytes": len(raw),
        "next_offset": stop if stop < len(raw) else None,
    }


def take_page(items: Iterable[T], limit: int | None, budget: int | None) -> list[T]:
    """The first items: at most ``limit`` and, with a ``budget``, as many as fit it in JSON
    (at least one). ``items`` is read only as far as needed (a generator may load lazily)."""
    page: list[T] = []
    used = 0
    for item in items:
        if limit is not None and len(page) >= limit:
            break
        if budget is not None:
            used += json_size(item) + 1
            if page and used > budget:
                break
        page.append(item)
    return page


def paged(
    rows: Sequence[Any],
    build: Callable[[Any], T],
    offset: int,
    limit: int | None,
    budget: int | None,
) -> tuple[list[T], dict[str, Any]]:
    """One page of ``rows`` (each built only when it is shown) and where it is:
    ``total``, ``offset``, ``next_offset``."""
    page = take_page((build(row) for row in rows[offset:]), limit, budget and budget - 512)
    where = {"total": len(rows), "offset": offset}
    return page, {**where, "next_offset": next_offset(offset, len(page), len(rows))}


def next_offset(offset: int, count: int, total: int) -> int | None:
    """Where the page after ``count`` items from ``offset`` starts (null: no more)."""
    return offset + count if offset + count < total else None


def shrink(
    value: dict[str, Any], fields: Sequence[str], budget: int, where: Callable[[str], str]
) -> dict[str, Any]:
    """Cut the text ``fields`` of ``value`` (head and tail, ``where(field)`` says how to read
    the rest) so that ``value`` fits ``budget`` bytes of JSON: they share what the other
    fields leave, a short one giving its unused share to the others. Sets
    ``<field>_truncated`` on a cut field."""
    left = budget - json_size({k: v for k, v in value.items() if k not in fields})
    ordered = sorted(fields, key=lambda f: json_size(value[f]))
    for index, name in enumerate(ordered):
        allowed = max(left // (len(ordered) - index), 64)
        text, cut = head_tail(value[name], allowed, where(name))
        if cut:
            value[name] = text
            value[f"{name}_truncated"] = True
        left -= json_size(text)
    return value


STREAMS = ("stdout", "stderr")


NOT_KEPT = "a VM keeps no history: ask for more with max_result_bytes"


def bound_streams(result: dict[str, Any], budget: int | None, kept: bool = True) -> dict[str, Any]:
    """An exec result or history entry with ``stdout_bytes``/``stderr_bytes`` (the whole
    streams) and, within ``budget``, its streams cut in the middle; the marker says how to
    read the cut bytes (``kept``: workspace logs, by sequence, stream and offset)."""
    for name in STREAMS:
        result[f"{name}_bytes"] = _utf8_len(result[name])
    if budget is None:
        return result
    sequence = result.get("sequence")
    cut_command(result, budget, kept)

    def where(name: str) -> str:
        if not kept:
            return NOT_KEPT
        return f"read them with workspace logs sequence={sequence} stream={name} offset={{offset}}"

    return shrink(result, STREAMS, budget, where)


def cut_command(result: dict[str, Any], budget: int, kept: bool = True) -> None:
    """A command echoed back takes at most a quarter of ``budget`` (commands may be 128 KiB)."""
    where = NOT_KEPT
    if kept:
        where = f"the whole command: workspace logs sequence={result.get('sequence')} with a "
        where += "larger max_result_bytes"
    result["command"], _ = head_tail(result["command"], budget // 4, where)
