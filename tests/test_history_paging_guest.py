"""A long history on a real gVisor workspace, paged through the official MCP client (forward
by next_offset, and by tail) exactly as the SDK pages it; the pages join into the whole."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT
from workspace_fixtures import McpClient

pytestmark = pytest.mark.guest

COMMANDS = 400
BUDGET = 7168  # the MCP default, named on both surfaces


def _command(n: int) -> str:
    if n % 60 == 0:  # long output: kept in a file, cut in the page
        return f"seq 1 6000; echo done {n}"
    return f"echo out {n}; echo err {n} >&2; exit {n % 3}"


def test_mcp_pages_a_long_history_as_the_sdk_does(state_dir: Path) -> None:
    with Pyro(backend_name="gvisor", base_dir=state_dir) as pyro, McpClient(state_dir) as client:
        wid = client.ok("workspace_create", environment=ENVIRONMENT)["workspace_id"]
        try:
            deadline = time.monotonic() + 300  # watchdog: a hung exec fails the test
            for n in range(1, COMMANDS + 1):
                pyro.exec_workspace(wid, _command(n))
                assert time.monotonic() < deadline, f"only {n} execs in 300 s"
            _check_pages(pyro, client, wid)
        finally:
            client.ok("workspace_delete", workspace_id=wid)


def _check_pages(pyro: Pyro, client: McpClient, wid: str) -> None:
    def both(**options: Any) -> dict[str, Any]:
        mcp = client.ok("workspace_logs", workspace_id=wid, max_result_bytes=BUDGET, **options)
        sdk = dict(pyro.logs_workspace(wid, max_result_bytes=BUDGET, **options))
        assert mcp == sdk, options
        assert mcp["total"] == (1 if "sequence" in options else COMMANDS)
        return mcp

    shown: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = both(offset=offset)
        assert page["offset"] == offset and page["count"] == len(page["entries"]) > 0
        shown += page["entries"]
        offset = page["next_offset"]
    assert [e["sequence"] for e in shown] == list(range(1, COMMANDS + 1))
    assert [(e["stdout"], e["exit_code"]) for e in shown[:2]] == [("out 1\n", 1), ("out 2\n", 2)]
    assert shown[59]["stdout_truncated"] and shown[59]["stdout_bytes"] > 20000
    whole = pyro.logs_workspace(wid)  # no budget: every entry, whole
    assert [e["sequence"] for e in whole["entries"]] == list(range(1, COMMANDS + 1))
    assert whole["entries"][59]["stdout"].endswith("5999\n6000\ndone 60\n")
    tail = both(tail=7)
    assert [e["sequence"] for e in tail["entries"]] == list(range(COMMANDS - 6, COMMANDS + 1))
    assert (tail["offset"], tail["next_offset"]) == (COMMANDS - 7, None)
    middle = both(offset=100, limit=10)
    assert [e["sequence"] for e in middle["entries"]] == list(range(101, 111))
    assert middle["next_offset"] == 110
    assert both(sequence=120, stream="stdout", offset=5, limit=8)["page"]["next_offset"] == 13
