"""The lifetime rules as pure logic (lifetime.py): an extension counts from now, the idle
clock from the last activity or the supervisor's start, and the operator's ceiling is read
when a declared parameter is checked (operations/checks.py) or shown (Param.upper)."""

from __future__ import annotations

from typing import Any

import pytest

from pyro_mcp import lifetime
from pyro_mcp.errors import ValidationError
from pyro_mcp.operations.checks import check_value
from pyro_mcp.operations.registry import ParamInfo, read_operation


def record(**values: Any) -> dict[str, Any]:
    return {"state": "started", "last_activity_at": 1000.0, "idle_stop_seconds": 0, **values}


def test_an_extension_counts_from_now() -> None:
    assert lifetime.extend(30, now=500.0) == {"ttl_seconds": 30, "expires_at": 530.0}


def test_the_idle_clock() -> None:
    assert lifetime.idle_stop_at(record()) is None  # off
    assert lifetime.idle_stop_at(record(idle_stop_seconds=60, state="stopped")) is None
    running = record(idle_stop_seconds=60)
    assert lifetime.idle_stop_at(running) == 1060.0
    assert lifetime.idle_stop_at(running, since=2000.0) == 2060.0  # started after it
    assert not lifetime.idle_due(running, now=1059.9)
    assert lifetime.idle_due(running, now=1060.0)
    assert not lifetime.idle_due(running, now=1060.0, since=1050.0)


def update_param(name: str) -> ParamInfo:
    from pyro_mcp.api import Pyro

    return next(p for p in read_operation(Pyro.update_workspace).params if p.name == name)


def test_the_ceiling_is_read_when_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    ttl = update_param("ttl_seconds")
    assert ttl.meta.upper() == 86400
    check_value(ttl, 86400, "ttl_seconds")
    check_value(ttl, None, "ttl_seconds")  # unchanged
    monkeypatch.setenv("PYRO_MAX_TTL_SECONDS", "120")
    assert ttl.meta.upper() == 120
    with pytest.raises(ValidationError, match=r"120 is the operator's ceiling"):
        check_value(ttl, 121, "ttl_seconds")
    with pytest.raises(ValidationError, match=r"^ttl_seconds must be between 1 and 120 \(got 0\)$"):
        check_value(ttl, 0, "ttl_seconds")
    with pytest.raises(ValidationError, match=r"^idle_stop_seconds must be an integer between"):
        check_value(update_param("idle_stop_seconds"), "5", "idle_stop_seconds")
