"""Secret sets racing each other and a fork (workspaces/secret_set.py, fork.py): every set
lands in the record, the secrets directory and the guest; a fork's child gets the record's
list and the files together. Real gVisor sandboxes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pyro_mcp import Pyro
from workspace_fixtures import *  # noqa: F403  (the fixtures)

pytestmark = pytest.mark.guest
SETS = 8


def set_all(pyro: Pyro, wid: str, prefix: str) -> list[BaseException]:
    failed: list[BaseException] = []
    start = threading.Barrier(SETS)

    def one(index: int) -> None:
        start.wait()
        try:
            pyro.set_workspace_secret(wid, f"{prefix}{index}", value=f"value-{prefix}{index}")
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(SETS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return failed


@pytest.mark.timeout(300)
def test_racing_secret_sets_lose_none(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.stop_workspace(wid)  # stopped: the sets race on the host alone
    assert set_all(ws_pyro, wid, "S") == []
    names = {s["name"] for s in ws_pyro.status_workspace(wid)["secrets"]}
    assert names == {f"S{i}" for i in range(SETS)}
    ws_pyro.start_workspace(wid)
    assert set_all(ws_pyro, wid, "T") == []  # started: each installed in the guest too
    env = {f"T{i}": f"T{i}" for i in range(SETS)}
    shown = ws_pyro.exec_workspace(wid, command="env | grep -c '^T[0-9]='", secret_env=env)
    names = {s["name"] for s in ws_pyro.status_workspace(wid)["secrets"]}
    assert names == {f"S{i}" for i in range(SETS)} | {f"T{i}" for i in range(SETS)}
    assert shown["stdout"].strip() == str(SETS), shown
