"""The rules that bound a result (workspaces/bounds.py), without a sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.bounds import (
    bound_streams,
    byte_page,
    head_tail,
    json_size,
    next_offset,
    take_page,
)
from pyro_mcp.workspaces.history import page_logs

TEXT = "".join(f"{i} é\t\x01 ✓ 𝄞\n" for i in range(5000))


def test_head_tail_keeps_short_text_and_marks_the_cut_of_long_text() -> None:
    assert head_tail("short", 100, "x") == ("short", False)
    cut, truncated = head_tail(TEXT, 2000, "read offset={offset}")
    assert truncated and json_size(cut) <= 2000 + 2
    head, _, rest = cut.partition("\n[pyro: bytes ")
    marker, _, tail = rest.partition("]\n")
    start, end = (int(n) for n in marker.split(" of ")[0].split("-"))
    raw = TEXT.encode()
    assert raw[:start].decode() == head and raw[end:].decode() == tail
    assert marker.endswith(f"read offset={start}") and 0 < start < end < len(raw)


@pytest.mark.parametrize("budget", [None, 300, 5000])
def test_byte_pages_join_byte_exact_and_end_on_characters(budget: int | None) -> None:
    pages, offset = [], 0
    while offset is not None:
        page = byte_page(TEXT, offset, 777, budget)
        assert page["returned_bytes"] <= 777 and page["returned_bytes"] > 0
        if budget is not None:
            assert json_size(page["text"]) <= budget + 2
        pages.append(page["text"].encode())
        offset = page["next_offset"]
    assert b"".join(pages) == TEXT.encode()


def test_take_page_stops_at_limit_or_budget_and_says_where_to_go_on() -> None:
    items = [{"path": f"/workspace/f{i:04d}"} for i in range(100)]
    assert take_page(items, 10, None) == items[:10]
    assert take_page(items[90:], None, None) == items[90:]
    page = take_page(items, None, 1000)
    assert json_size(page) <= 1000 and len(page) > 1
    assert take_page(items, None, 1) == items[:1]  # at least one
    assert (next_offset(0, 10, 100), next_offset(90, 10, 100)) == (10, None)
    read: list[int] = []
    lazy = (read.append(i) or i for i in range(100))
    assert take_page(lazy, 3, None) == [0, 1, 2] and len(read) <= 4  # read as far as needed


def test_bound_streams_shares_the_budget_and_keeps_totals() -> None:
    entry = {"sequence": 4, "command": "c", "stdout": TEXT, "stderr": "small\n"}
    out = bound_streams(dict(entry), 4000)
    assert json_size(out) < 4300 and out["stderr"] == "small\n"
    assert out["stdout_truncated"] and "sequence=4 stream=stdout offset=" in out["stdout"]
    assert out["stdout_bytes"] == len(TEXT.encode()) and out["stderr_bytes"] == 6
    assert bound_streams(dict(entry), None)["stdout"] == TEXT


def _logs(n: int) -> dict[str, Any]:
    entries = [
        {"sequence": i + 1, "command": f"c{i}", "stdout": TEXT, "stderr": ""} for i in range(n)
    ]
    return {"workspace_id": "a" * 12, "count": n, "entries": entries}


def test_page_logs_pages_entries_tail_and_streams() -> None:
    logs = _logs(10)
    first = page_logs(logs, budget=7168)
    assert json_size(first) < 7168 + 512 and first["total"] == 10
    assert first["next_offset"] == first["count"] and first["entries"][0]["stdout_truncated"]
    assert [e["sequence"] for e in page_logs(logs, tail=2)["entries"]] == [9, 10]
    assert page_logs(logs, offset=3, limit=2)["next_offset"] == 5
    page = page_logs(logs, sequence=3, stream="stdout", offset=10, limit=100)
    assert page["page"]["offset"] == 10 and page["entries"][0]["stderr"] == ""
    shown = page["page"]["returned_bytes"]
    assert 96 < shown <= 100 and page["page"]["next_offset"] == 10 + shown
    assert page["entries"][0]["stdout"].encode() == TEXT.encode()[10 : 10 + shown]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": "stdout"}, "stream needs sequence"),
        ({"sequence": 99}, "no command with sequence 99"),
        ({"sequence": 1, "stream": "both"}, "stream must be stdout or stderr"),
    ],
)
def test_page_logs_refuses_bad_requests_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        page_logs(_logs(2), **kwargs)
    assert "\n" not in str(caught.value)


def test_an_offset_inside_a_character_starts_at_that_character() -> None:
    page = byte_page("a✓b", 2, 10, None)
    assert page["offset"] == 1 and page["text"] == "✓b" and page["next_offset"] is None
    assert byte_page("✓", 0, 1, None)["text"] == "✓"  # a page holds at least one character


def test_a_long_command_is_cut_too() -> None:
    entry = {"sequence": 2, "command": "echo " + "y" * 100000, "stdout": "", "stderr": ""}
    out = bound_streams(dict(entry), 7168)
    assert (
        json_size(out) < 7168 and "the whole command: workspace logs sequence=2" in (out["command"])
    )
    page = page_logs(
        {"workspace_id": "w", "count": 1, "entries": [entry]},
        sequence=2,
        stream="stdout",
        budget=7168,
    )
    assert json_size(page) < 7168
