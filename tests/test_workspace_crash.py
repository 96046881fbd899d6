"""Nothing lost and nothing left when a client dies, and no secret value stored or shown.

- a create killed (``kill -9``) at any moment leaves nothing once the next call has run: no
  record, no directory, no supervisor or engine process;
- an exec whose MCP server was killed still lands in the history once it completes (the
  supervisor records it, not the client);
- a secret's literal value typed into a command or a patch is redacted in the result, the
  history, the state database's bytes and error messages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.workspaces import owners
from pyro_mcp.workspaces.history import History
from pyro_mcp.workspaces.secrets import Redactor, Secret
from pyro_mcp.workspaces.secrets import store as store_secrets
from pyro_mcp.workspaces.store import Store
from support import ENVIRONMENT, short_tmp_dir, workspace_row
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import (
    McpClient,
    assert_home_is_clean,
    cli_json,
    supervisor_pids,
    wait_for,
    write_tree,
)

SECRET = f"s3cr3t-{uuid.uuid4().hex[:12]}"


# -- pure logic ------------------------------------------------------------------------------


def test_redactor_masks_every_string_and_error_message() -> None:
    redactor = Redactor(["abc", "abcdef", ""])
    assert redactor.text("x abcdef y abc") == "x [REDACTED] y [REDACTED]"
    assert redactor.value({"a": ["abc", 1, ("abcdefg",)], "b": None}) == {
        "a": ["[REDACTED]", 1, ("[REDACTED]g",)],
        "b": None,
    }
    error = ValueError("cannot patch abc.txt")
    redactor.error(error)
    assert str(error) == "cannot patch [REDACTED].txt"
    assert Redactor([]).value({"a": "abc"}) == {"a": "abc"}


def test_owner_identity_tells_a_dead_process_from_a_live_one() -> None:
    assert owners.alive(owners.current())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = owners.identity(child.pid)
        assert owner is not None and owners.alive(owner)
        assert not owners.alive(f"{child.pid}:1")  # the same pid, another process
    finally:
        child.kill()
        child.wait()
    assert not owners.alive(owner)
    assert not owners.alive("not-a-pid:0")


def test_a_dead_owners_create_is_swept_by_the_next_call() -> None:
    """No sandbox needed: a claim by a dead process, its directory and its record."""
    home = short_tmp_dir("pyro-sweep-")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        with Pyro(base_dir=home) as pyro:
            store = pyro.manager.workspaces.store
            for workspace_id, kind in (("0123456789ab", "create"), ("ba9876543210", "start")):
                store.claim(workspace_id, kind, f"{dead.pid}:1")
                (home / "workspaces" / workspace_id / "volume").mkdir(parents=True)
            assert len(store.owners()) == 2
            assert pyro.list_workspaces()["count"] == 0
            assert store.owners() == []
            assert list((home / "workspaces").iterdir()) == [
                home / "workspaces" / "ba9876543210"  # a start never owns the directory
            ]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_history_entries_are_stored_redacted_and_numbered(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    store_secrets(secrets_dir, [Secret("T", SECRET, "literal")])
    store = Store(tmp_path / "state.db")
    store.insert_admitted(workspace_row("0123456789ab"), lambda active: None)
    history = History(store, "0123456789ab", secrets_dir)
    request = {"command": f"echo {SECRET}", "cwd": "/workspace"}
    answer = {"exit_code": 0, "duration_ms": 3, "stdout": f"{SECRET}\n", "stderr": ""}
    first = history.record(request, answer)
    assert (first["sequence"], first["command"], first["stdout"]) == (
        1,
        "echo [REDACTED]",
        "[REDACTED]\n",
    )
    assert history.record(request, answer)["sequence"] == 2
    assert [e["command"] for e in store.commands("0123456789ab")] == ["echo [REDACTED]"] * 2
    store.close()
    assert SECRET.encode() not in _db_bytes(tmp_path)


# -- a killed create -------------------------------------------------------------------------

CREATE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pyro_mcp import Pyro
    home, seed, secret = sys.argv[1:4]
    with Pyro(backend_name="gvisor", base_dir=home) as pyro:
        print("ready", flush=True)
        workspace = pyro.create_workspace(
            environment="debian:12", seed_path=seed, secrets=[{"name": "S", "value": secret}]
        )
        print("created", workspace["workspace_id"], flush=True)
    """
)


def _kill_create_after(home: Path, seed: Path, delay: float) -> str | None:
    """Start an SDK create in a subprocess, kill -9 it ``delay`` s into the create; return
    the workspace id if the create finished first."""
    child = subprocess.Popen(
        [sys.executable, "-c", CREATE_SCRIPT, str(home), str(seed), SECRET],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return out.split()[1] if out.startswith("created") else None


@pytest.mark.guest
def test_a_create_killed_at_any_moment_leaves_nothing(
    ws_home: Path, ws_pyro: Pyro, host_dir: Path
) -> None:
    seed = write_tree(host_dir / "seed", {"small.txt": "hello\n"})
    (seed / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    store = ws_pyro.manager.workspaces.store
    delay, swept = 0.1, 0
    while delay < 2.05:  # 0.1 s steps through the create (~0.6-2 s here), then it may finish
        created = _kill_create_after(ws_home, seed, delay)
        swept += bool(store.owners())  # the kill left an unfinished create (read, no sweep)
        listed = ws_pyro.list_workspaces()["workspaces"]  # the next call sweeps
        if created is None and listed:
            # Killed after the create was done but before it printed: a whole workspace.
            (entry,) = listed
            assert entry["state"] == "started"
            assert store.owners() == []
            created = entry["workspace_id"]
        if created is not None:
            ws_pyro.delete_workspace(created)
            assert_home_is_clean(ws_home)
            break
        assert listed == [], f"killed at {delay:.1f}s: {listed}"
        assert store.owners() == []
        assert_home_is_clean(ws_home, timeout=5)
        delay = round(delay + 0.1, 1)
    assert swept >= 2, "too few kills landed inside the create to test anything"


# -- a killed MCP server ---------------------------------------------------------------------


def _mcp_server_pids(home: Path) -> list[int]:
    """Our ``pyro mcp serve`` processes for ``home`` (found by their environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"mcp\0serve\0" in cmd and f"PYRO_HOME={home}\0".encode() in env:
            found.append(int(proc.name))
    return found


@pytest.mark.guest
def test_an_exec_whose_mcp_server_was_killed_is_still_in_the_history(
    ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    workspace_id = new_workspace()["workspace_id"]
    command = "touch started; sleep 1.5; echo done > marker; echo finished"

    def exists(name: str) -> bool:  # read without an exec (that would add to the history)
        listed = ws_pyro.list_workspace_files(workspace_id)["entries"]
        return f"/workspace/{name}" in [e["path"] for e in listed]

    answers: list[Any] = []
    mcp = McpClient(ws_home)
    with mcp:
        (server,) = _mcp_server_pids(ws_home)

        def call() -> None:
            try:
                answers.append(
                    mcp.call("workspace_exec", workspace_id=workspace_id, command=command)
                )
            except Exception as exc:  # the server is killed under it
                answers.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        wait_for(lambda: exists("started"), 30, "the command to start")
        os.kill(server, signal.SIGKILL)
        caller.join(timeout=30)
        assert answers and not getattr(answers[0], "structuredContent", None)
    wait_for(lambda: exists("marker"), 30, "the command to finish")
    entries = wait_for(
        lambda: ws_pyro.logs_workspace(workspace_id)["entries"], 10, "the history entry"
    )
    assert [(e["command"], e["exit_code"], e["stdout"]) for e in entries] == [
        (command, 0, "finished\n")
    ]
    status = ws_pyro.status_workspace(workspace_id)
    assert status["command_count"] == 1 and status["last_command"]["command"] == command
    # An exec whose client lives is recorded exactly once, by the supervisor.
    again = ws_pyro.exec_workspace(workspace_id, "echo again")
    assert again["sequence"] == 2
    assert ws_pyro.logs_workspace(workspace_id)["count"] == 2
    assert supervisor_pids(ws_home, workspace_id)


# -- secret values ---------------------------------------------------------------------------


def _db_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("state.db*") if p.is_file())


@pytest.mark.guest
def test_a_secrets_literal_value_is_never_stored_nor_shown(
    ws_home: Path, ws_pyro: Pyro, new_workspace: Any
) -> None:
    workspace = new_workspace(secrets=[{"name": "TOKEN", "value": SECRET}])
    workspace_id = workspace["workspace_id"]

    def holds(name: str, text: str) -> bool:  # the guest's bytes, compared by their hash
        digest = ws_pyro.exec_workspace(workspace_id, f"sha256sum {name}")["stdout"].split()[0]
        return digest == hashlib.sha256(text.encode()).hexdigest()

    result = ws_pyro.exec_workspace(workspace_id, f"echo literal {SECRET} > typed.txt; echo ok")
    assert result["command"] == "echo literal [REDACTED] > typed.txt; echo ok"
    assert holds("typed.txt", f"literal {SECRET}\n")  # it really ran
    assert ws_pyro.exec_workspace(workspace_id, "cat typed.txt")["stdout"] == (
        "literal [REDACTED]\n"
    )
    logs = cli_json("workspace", "logs", workspace_id, home=ws_home)
    assert logs["entries"][0]["command"] == result["command"]
    assert SECRET not in str(logs) and SECRET not in str(ws_pyro.status_workspace(workspace_id))

    patch = f"--- /dev/null\n+++ b/p.txt\n@@ -0,0 +1 @@\n+token={SECRET}\n"
    applied = ws_pyro.apply_workspace_patch(workspace_id, patch)
    assert SECRET not in str(applied) and "+token=[REDACTED]" in applied["patch"]
    assert holds("p.txt", f"token={SECRET}\n")
    bad = f"--- a/p.txt\n+++ b/p.txt\n@@ -1 +1 @@\n-other={SECRET}\n+x\n"
    with pytest.raises(ValueError) as refused:
        ws_pyro.apply_workspace_patch(workspace_id, bad)
    assert SECRET not in str(refused.value)
    # Every operation on the workspace is masked: services, shells, labels in a list too.
    started = ws_pyro.start_service(workspace_id, "svc", command=f"echo {SECRET}; sleep 300")
    assert SECRET not in str(started) and "[REDACTED]" in started["command"]
    assert SECRET not in str(ws_pyro.status_service(workspace_id, "svc"))
    assert SECRET not in str(ws_pyro.list_services(workspace_id))
    ws_pyro.stop_service(workspace_id, "svc")
    ws_pyro.update_workspace(workspace_id, labels={"k": SECRET})
    listed = ws_pyro.list_workspaces()
    assert SECRET not in str(listed) and "[REDACTED]" in str(listed)
    assert SECRET.encode() not in _db_bytes(ws_home)
    assert b"echo literal [REDACTED]" in _db_bytes(ws_home)  # the history is there, masked
    assert ENVIRONMENT in workspace["environment"]
