"""The system layer (issue 13a): what the guest changes outside /workspace survives stop/start
and is gone after a reset; services started before a stop are running again after start.

Real sandboxes on both engines (workspaces/system_layer.py, service_records.py)."""

from __future__ import annotations

from typing import Any

import pytest

from support import ENVIRONMENT
from workspace_fixtures import *  # noqa: F403  (the fixtures)

pytestmark = pytest.mark.guest

# What an `apt-get install` leaves: a program under /usr/local and a file under /etc.
INSTALL = (
    "mkdir -p /usr/local/lib/pyro-tool && echo tool-data > /usr/local/lib/pyro-tool/data && "
    "printf '#!/bin/sh\\necho $$ > /run/pyro-svc.pid\\nexec sleep 600\\n' "
    "> /usr/local/bin/pyro-svc && chmod 755 /usr/local/bin/pyro-svc && "
    "echo 'setting=1' > /etc/pyro-tool.conf"
)
PROBE = (
    "cat /usr/local/lib/pyro-tool/data /etc/pyro-tool.conf 2>/dev/null; "
    "test -x /usr/local/bin/pyro-svc && echo svc-installed || echo no-svc"
)


def _services(pyro: Any, wid: str) -> dict[str, dict[str, Any]]:
    return {s["service_name"]: s for s in pyro.list_services(wid)["services"]}


@pytest.mark.parametrize("engine", ("gvisor", "qemu"))
def test_system_changes_and_services_survive_stop_start_until_reset(
    engine: str, pyro_for: Any, new_workspace: Any
) -> None:
    pyro = pyro_for(engine)
    wid = new_workspace(pyro, disk_mib=256)["workspace_id"]
    assert pyro.exec_workspace(wid, command=INSTALL)["exit_code"] == 0
    started = pyro.start_service(
        wid, "db", command="/usr/local/bin/pyro-svc", ready_command="test -s /run/pyro-svc.pid"
    )
    assert started["state"] == "running" and "restarted" not in started
    pyro.start_service(wid, "gone", command="sleep 600")
    pyro.stop_service(wid, "gone")  # stopped by its user: not started again

    pyro.stop_workspace(wid)
    pyro.start_workspace(wid)
    probe = pyro.exec_workspace(wid, command=PROBE)
    assert probe["stdout"] == "tool-data\nsetting=1\nsvc-installed\n"
    services = _services(pyro, wid)
    assert set(services) == {"db"}
    assert (services["db"]["state"], services["db"]["restarted"]) == ("running", True)
    # it really runs again: /run is new on every start, and the pid it wrote there lives
    alive = pyro.exec_workspace(wid, command="kill -0 $(cat /run/pyro-svc.pid) && echo alive")
    assert alive["stdout"] == "alive\n"
    assert pyro.status_service(wid, "db")["restarted"] is True

    pyro.reset_workspace(wid)
    probe = pyro.exec_workspace(wid, command=PROBE)
    assert probe["stdout"] == "no-svc\n"  # a fresh system
    assert _services(pyro, wid) == {}
    pyro.stop_workspace(wid)
    pyro.start_workspace(wid)
    assert _services(pyro, wid) == {}  # a reset forgets the services too
    # the environment itself was never written (gVisor's lower layer; QEMU's is read-only)
    environment = pyro.manager.runtime.environment(ENVIRONMENT)
    assert not (environment.rootfs_dir / "etc/pyro-tool.conf").exists()


def test_a_service_that_cannot_come_back_says_why(ws_pyro: Any, new_workspace: Any) -> None:
    wid = new_workspace(disk_mib=256)["workspace_id"]
    ws_pyro.exec_workspace(wid, command="touch /etc/pyro-flag")
    ws_pyro.start_service(
        wid,
        "flaky",
        command="sleep 600",
        ready_command="test -e /etc/pyro-flag",
        ready_timeout_seconds=3,
    )
    ws_pyro.exec_workspace(wid, command="rm /etc/pyro-flag")  # its readiness fails from now on
    ws_pyro.stop_workspace(wid)
    ws_pyro.start_workspace(wid)
    flaky = _services(ws_pyro, wid)["flaky"]
    assert flaky["restarted"] is False
    assert flaky["state"] == "failed" and flaky["stop_reason"]


@pytest.mark.parametrize("engine", ("gvisor", "qemu"))
def test_the_system_layer_is_bounded_by_disk_mib(
    engine: str, pyro_for: Any, new_workspace: Any
) -> None:
    pyro = pyro_for(engine)
    wid = new_workspace(pyro, disk_mib=64)["workspace_id"]
    # The watchdog: dd stops at 96 MiB even if the bound does not hold (the test then fails).
    filled = pyro.exec_workspace(
        wid,
        command="dd if=/dev/zero of=/var/big bs=1M count=96 2>&1; echo rc=$?",
        timeout_seconds=120,
    )
    assert "No space left on device" in filled["stdout"] and "rc=1" in filled["stdout"]
    sized = pyro.exec_workspace(wid, command="stat -c %s /var/big")
    assert int(sized["stdout"]) < 64 * 1024 * 1024
    # the workspace keeps working, and a reset gives the space back
    pyro.reset_workspace(wid)
    assert pyro.exec_workspace(wid, command="test -e /var/big || echo freed")["stdout"] == "freed\n"
