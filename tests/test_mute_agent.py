"""A mute agent is replaced, a live one never (watchers.restart_if_mute), on real sandboxes.

- A client that stops reading a streamed exec's output stalls the supervisor's one agent
  reader (its events are sent to that client in the reader's thread): every other answer,
  a ping's too, waits behind it. The agent is alive: its sandbox must not be restarted.
- Two execs that time out together against a mute agent: one restart, both told why.
- After a mute restart: one sandbox, the old one's cgroups gone, the exec in the history; a
  VM suspends and resumes; a mute agent is found by a quick call (a file read) too.

Every test carries a timeout (pytest-timeout): a broken limit fails the test, never the host.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.guest.protocol import encode
from pyro_mcp.paths import socket_address
from pyro_mcp.workspaces.layout import WorkspaceLayout
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import engine_pids, supervisor_pids, wait_for

pytestmark = pytest.mark.guest


def stalled_client(home: Path, workspace_id: str) -> socket.socket:
    """A client of the workspace's supervisor that asks for a streamed exec of 8 MB and
    never reads: its socket fills and the supervisor's sends to it block."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with socket_address(WorkspaceLayout(home, workspace_id).socket) as address:
        sock.connect(address)
    args = {"command": "yes | head -c 8000000", "stream": True, "timeout_seconds": 60}
    sock.sendall(encode({"id": 1, "op": "exec", "args": args}))
    return sock


@pytest.mark.timeout(180)
def test_a_stalled_client_never_gets_a_live_sandbox_restarted(
    ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    wid = new_workspace()["workspace_id"]
    engines = sorted(engine_pids(ws_home, wid))
    sock = stalled_client(ws_home, wid)
    try:
        time.sleep(3)  # the stream fills the socket: the supervisor's reader blocks on it
        started = time.monotonic()
        try:
            result: Any = ws_pyro.exec_workspace(wid, command="echo live", timeout_seconds=1)
        except RuntimeError as exc:
            result = str(exc)
        took = time.monotonic() - started
    finally:
        sock.close()
    status = ws_pyro.status_workspace(wid)
    print(f"answer after {took:.1f}s: {result!r}; last_error {status['last_error']!r}")
    assert took > 1 + 10, "the exec was answered at once: the stall never happened"
    assert "restarted" not in str(result), result
    assert status["last_error"] is None, status["last_error"]
    assert sorted(engine_pids(ws_home, wid)) == engines  # the same sandbox serves on


@pytest.mark.timeout(240)
def test_two_execs_timing_out_together_get_one_restart(
    ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    wid = new_workspace()["workspace_id"]
    ws_pyro.exec_workspace(wid, command="echo kept > /workspace/kept")
    stop_agent = "kill -STOP $PPID; sleep 1"

    def one(command: str) -> str:
        try:
            return repr(ws_pyro.exec_workspace(wid, command=command, timeout_seconds=2))
        except RuntimeError as exc:
            return str(exc)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(one, stop_agent)
        time.sleep(0.5)
        second = pool.submit(one, "sleep 1")
        answers = [first.result(), second.result()]
    print(answers)
    status = ws_pyro.status_workspace(wid)
    print(status["state"], status["last_error"])
    assert all("restarted" in answer for answer in answers), answers
    assert status["state"] == "started"
    assert len(engine_pids(ws_home, wid)) == 1  # one restart: no second sandbox beside it
    kept = ws_pyro.exec_workspace(wid, command="cat /workspace/kept")
    assert kept["stdout"] == "kept\n"


STOP_AGENT = "echo ran > /workspace/ran; kill -STOP $PPID; sleep 1"


def mute_restart(pyro: Pyro, wid: str) -> str:
    with pytest.raises(RuntimeError, match="restarted") as caught:
        pyro.exec_workspace(wid, command=STOP_AGENT, timeout_seconds=2)
    return str(caught.value)


def sandbox_cgroups(workspace_id: str) -> list[str]:
    return sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"**/pyro-{workspace_id}-*"))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("engine", ["gvisor", "qemu"])
def test_a_mute_restart_leaves_one_sandbox_and_records_the_exec(
    engine: str, ws_home: Path, pyro_for: Any, new_workspace: Any
) -> None:
    """The old sandbox is gone (process, cgroups) and the exec that ran is in the history
    ("the complete exec history"): its effect is in /workspace."""
    ws_pyro = pyro_for(engine)
    wid = new_workspace(ws_pyro)["workspace_id"]
    before = len(ws_pyro.logs_workspace(wid)["entries"])
    started = time.monotonic()
    said = mute_restart(ws_pyro, wid)
    assert time.monotonic() - started < 2 + 30  # inside the SDK's own wait for the answer
    assert "did not answer 'exec' within 12s, nor a ping within 5s: it was restarted" in said
    status = ws_pyro.status_workspace(wid)
    assert status["state"] == "started", status
    assert (status["last_error"] or "").startswith("the sandbox stopped answering"), status
    time.sleep(2)
    engines = engine_pids(ws_home, wid)
    cgroups = sandbox_cgroups(wid)
    ran = ws_pyro.exec_workspace(wid, command="cat /workspace/ran")["stdout"]
    entries = ws_pyro.logs_workspace(wid)["entries"]
    print(f"engines {engines}; cgroups {cgroups}; ran {ran!r}; entries {len(entries)}")
    assert len(engines) == 1, engines
    expected = 1 if engine == "gvisor" else 0  # the new sandbox's (a VM has none)
    assert len({c.rsplit("/", 1)[-1] for c in cgroups}) == expected, cgroups
    assert ran == "ran\n"
    lost = [entry for entry in entries[before:] if entry["command"] == STOP_AGENT]
    assert lost, [entry["command"] for entry in entries[before:]]
    assert lost[0]["exit_code"] == 124, lost[0]
    assert "it was restarted" in lost[0]["stderr"], lost[0]
    # the restarted workspace forks, and (a VM) suspends and resumes its memory
    child = ws_pyro.fork_workspace(wid)["workspace_id"]
    try:
        forked = ws_pyro.exec_workspace(child, command="cat /workspace/ran")
        assert forked["stdout"] == "ran\n", forked
    finally:
        ws_pyro.delete_workspace(child)
    if engine == "qemu":
        ws_pyro.exec_workspace(wid, command="echo mem > /dev/shm/mem")
        ws_pyro.stop_workspace(wid, suspend=True)
        ws_pyro.start_workspace(wid)
        kept = ws_pyro.exec_workspace(wid, command="cat /dev/shm/mem /workspace/ran")
        assert kept["stdout"] == "mem\nran\n", kept


@pytest.mark.timeout(240)
def test_a_mute_agent_is_found_by_a_file_read_too(ws_pyro: Pyro, new_workspace: Any) -> None:
    """The agent stopped from a background process (a service, a shell, a job) and the next
    call a file read: it was never pinged (only an exec had a time limit at the supervisor),
    the caller's 60 s wait ran out ("stopped during file_read", a false "stopped") and the
    workspace stayed "started" and mute. A quick call now finds it as an exec does."""
    wid = new_workspace()["workspace_id"]
    ws_pyro.write_workspace_file(wid, "kept", text="kept\n")
    stop_later = 'a=$PPID; setsid sh -c "sleep 2; kill -STOP $a" >/dev/null 2>&1 < /dev/null &'
    ws_pyro.exec_workspace(wid, command=stop_later)
    time.sleep(4)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer 'file_read' within 30s") as caught:
        ws_pyro.read_workspace_file(wid, "kept")
    took = time.monotonic() - started
    status = ws_pyro.status_workspace(wid)
    print(f"after {took:.0f}s: {caught.value}; {status['state']} {status['last_error']!r}")
    assert "it was restarted" in str(caught.value)
    assert took < 30 + 5 + 20  # found by the supervisor, not by the caller's 60 s wait
    assert status["state"] == "started"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("limit", ["x", -100, 1e300])
def test_a_bad_time_limit_from_a_raw_client_is_answered(
    limit: Any, ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    """The supervisor's own wait (agent_timeout) must not fail on a limit it did not check:
    the request was never answered (its worker died) and the client hung."""
    from pyro_mcp.guest.protocol import read_frame

    wid = new_workspace()["workspace_id"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        with socket_address(WorkspaceLayout(ws_home, wid).socket) as address:
            sock.connect(address)
        sock.settimeout(30)
        args = {"command": "true", "timeout_seconds": limit}
        sock.sendall(encode({"id": 7, "op": "exec", "args": args}))
        try:
            message, _ = read_frame(sock.makefile("rb"))
        except TimeoutError:
            message = {"error": "no answer within 30 s"}
    print(limit, message)
    assert message.get("id") == 7, message


@pytest.mark.timeout(240)
def test_supervisor_status_during_a_mute_restart_is_answered(
    ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    """While a sandbox is replaced (a mute restart, a reset) the supervisor has none: a
    reset's first call, supervisor_status, asserted one (its worker died unanswered and
    the reset waited out its 60 s). Asked every 50 ms through the restart: all answered."""
    from pyro_mcp.guest.protocol import read_frame

    wid = new_workspace()["workspace_id"]
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        mute = pool.submit(mute_restart, ws_pyro, wid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            with socket_address(WorkspaceLayout(ws_home, wid).socket) as address:
                sock.connect(address)
            sock.settimeout(20)
            reader = sock.makefile("rb")
            asked = 0
            while not mute.done() and time.monotonic() - started < 60:
                time.sleep(0.05)
                asked += 1
                sock.sendall(encode({"id": asked, "op": "supervisor_status"}))
            answered = 0
            try:
                while answered < asked:
                    read_frame(reader)
                    answered += 1
            except TimeoutError:
                pass
        mute.result()
    print(f"asked {asked}, answered {answered}")
    assert asked > 20 and answered == asked  # asked through the whole restart


@pytest.mark.timeout(240)
def test_a_mute_sandbox_that_cannot_be_replaced_says_the_workspace_stopped(
    ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    """The fresh boot fails (here: the record names an environment that is not there): the
    workspace stops, and the caller is told so; the stop used to end the supervisor before
    its answer (the caller got a dropped connection: "stopped during exec")."""
    wid = new_workspace()["workspace_id"]
    store = ws_pyro.manager.workspaces.store
    environment = store.get(wid)["environment"]

    def mute() -> str:
        try:
            ws_pyro.exec_workspace(wid, command=STOP_AGENT, timeout_seconds=2)
        except RuntimeError as exc:
            return str(exc)
        return "answered"

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(mute)
        time.sleep(5)
        store.update(wid, environment="missing:1")
        try:
            error = answer.result()
        finally:
            store.update(wid, environment=environment)
    status = ws_pyro.status_workspace(wid)
    print(f"{error!r}; {status['state']} {status['last_error']!r}")
    assert "the workspace was stopped" in error, error
    assert status["state"] == "stopped"
    left = lambda: supervisor_pids(ws_home, wid) + engine_pids(ws_home, wid)  # noqa: E731
    assert wait_for(lambda: not left(), 15, "the supervisor and engine to end")
