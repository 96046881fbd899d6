"""A one-shot gVisor run (vm_run without a network: the command is the sandbox's only
process) cancelled before or while its sandbox starts: runsc has no container to kill yet,
so the kill is sent again until it takes (engines/gvisor_once.py). Real sandboxes."""

from __future__ import annotations

import threading
import time

import pytest

from pyro_mcp import Pyro, calls
from support import ENVIRONMENT
from workspace_fixtures import *  # noqa: F403  (the fixtures)

pytestmark = pytest.mark.guest


def run_cancelled(pyro: Pyro, after: float) -> tuple[dict[str, object], float]:
    """``sleep 20`` in a one-shot, its call cancelled ``after`` seconds in (0: before)."""
    call = calls.Call()
    if after == 0:
        call.cancel()
    else:
        threading.Timer(after, call.cancel).start()
    token = calls.CURRENT.set(call)
    started = time.monotonic()
    try:
        result = pyro.run_in_vm(environment=ENVIRONMENT, command="sleep 20", timeout_seconds=60)
    finally:
        calls.CURRENT.reset(token)
    return result, time.monotonic() - started


@pytest.mark.timeout(120)
@pytest.mark.parametrize("after", [0, 0.05])
def test_a_one_shot_cancelled_as_it_starts_ends_at_once(ws_pyro: Pyro, after: float) -> None:
    result, elapsed = run_cancelled(ws_pyro, after)
    assert result["cancelled"] is True, result
    assert elapsed < 5, f"the cancelled `sleep 20` ran {elapsed:.1f} s"
