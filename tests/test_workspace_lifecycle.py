"""Workspace lifecycle on real sandboxes: stop/start, exec, modes, the activity rule, TTL,
crash safety, concurrency and isolation (PRODUCT_SPEC §2.3-2.5, §2.17-2.18, and the design
in docs/ARCHITECTURE.md: supervisor per workspace). Capacity: test_workspace_capacity.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from pyro_mcp.workspaces.disk_image import DiskImage
from support import ENVIRONMENT, engine_key_matches
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import (
    McpClient,
    engine_pids,
    run_cli,
    supervisor_pids,
    wait_for,
    workspace_processes,
    write_tree,
)

pytestmark = pytest.mark.guest

ENGINES = ("gvisor", "qemu")
NOT_STARTED = "must be in 'started' state before"


def gone(home: Path, workspace_id: str, timeout: float = 10.0) -> None:
    """Every process of the workspace ends within ``timeout``."""
    deadline = time.monotonic() + timeout
    while workspace_processes(home, workspace_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workspace_processes(home, workspace_id) == []


# -- stop / start, and a whole cycle on each engine -----------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_full_cycle_stop_keeps_workspace_start_brings_it_back(
    engine: str, pyro_for: Any, ws_home: Path, host_dir: Path, new_workspace: Any
) -> None:
    pyro = pyro_for(engine)
    seed = write_tree(host_dir / "seed", {"src/app.sh": "echo app says $1\n", "notes.txt": "n\n"})
    (seed / "src/app.sh").chmod(0o755)
    ws = new_workspace(pyro, seed_path=str(seed), name=f"cycle-{engine}", labels={"e": engine})
    wid = ws["workspace_id"]
    assert engine_key_matches(engine, ws["engine"])
    assert (ws["state"], ws["execution_mode"], ws["command_count"]) == ("started", "guest_vsock", 0)
    assert ws["last_activity_at"] == ws["created_at"]
    assert ws["expires_at"] == pytest.approx(ws["created_at"] + 600)
    assert supervisor_pids(ws_home, wid) and engine_pids(ws_home, wid)

    ran = pyro.exec_workspace(wid, command="./src/app.sh hi && echo outside > /root/outside")
    assert (ran["exit_code"], ran["stdout"], ran["sequence"]) == (0, "app says hi\n", 1)
    pyro.write_workspace_file(wid, "notes/new.txt", text="written\n")  # no sync: stop must

    stopped = pyro.stop_workspace(wid)
    assert stopped["state"] == "stopped"
    gone(ws_home, wid)
    assert pyro.status_workspace(wid)["state"] == "stopped"
    for call, args in (
        (pyro.exec_workspace, {"command": "true"}),
        (pyro.read_workspace_file, {"path": "notes.txt"}),
        (pyro.write_workspace_file, {"path": "x", "text": "x"}),
        (pyro.list_workspace_files, {}),
        (pyro.diff_workspace, {}),
        (pyro.export_workspace, {"path": "notes.txt", "output_path": str(host_dir / "no")}),
    ):
        with pytest.raises(RuntimeError, match=NOT_STARTED):
            call(wid, **args)
    assert pyro.logs_workspace(wid)["count"] == 1  # history survives the stop

    started = pyro.start_workspace(wid)
    assert started["state"] == "started"
    assert started["expires_at"] == ws["expires_at"], "start must not extend the TTL"
    assert pyro.read_workspace_file(wid, "notes/new.txt")["content"] == "written\n"
    probe = pyro.exec_workspace(
        wid,
        command="cat notes.txt; test -x src/app.sh && echo x-ok; "
        "cat /root/outside",  # the system layer is kept (system_layer.py)
    )
    assert probe["stdout"] == "n\nx-ok\noutside\n"
    assert probe["sequence"] == 2

    exported = pyro.export_workspace(wid, "notes", output_path=str(host_dir / "out" / "notes"))
    assert (exported["artifact_type"], exported["entry_count"]) == ("directory", 1)
    assert (host_dir / "out" / "notes" / "new.txt").read_text() == "written\n"
    diff = pyro.diff_workspace(wid)
    assert [(e["path"], e["status"]) for e in diff["entries"]] == [("notes/new.txt", "added")]

    planted = pyro.exec_workspace(wid, command="echo again > /root/outside && cat /root/outside")
    assert planted["stdout"] == "again\n"  # outside /workspace, in this sandbox
    engines_before = engine_pids(ws_home, wid)
    reset = pyro.reset_workspace(wid)
    assert (reset["reset_count"], reset["command_count"]) == (1, 0)
    assert reset["expires_at"] == ws["expires_at"], "reset must not extend the TTL"
    assert pyro.logs_workspace(wid)["count"] == 0
    # The baseline is back exactly (modes too) in a new sandbox, and the old one is gone:
    # no second engine process, no old /workspace left on the host.
    seeded = ws["workspace_seed"]["entry_count"]
    assert (reset["workspace_reset"]["entry_count"], pyro.diff_workspace(wid)["changed"]) == (
        seeded,
        False,
    )
    after = pyro.exec_workspace(
        wid,
        command="find . -path ./lost+found -prune -o -print | sort; "
        "test -x src/app.sh && echo x-ok; "
        "test -e /root/outside && echo leaked || echo fresh-system",
    )
    assert after["stdout"] == ".\n./notes.txt\n./src\n./src/app.sh\nx-ok\nfresh-system\n"
    engines_after = engine_pids(ws_home, wid)
    assert len(engines_after) == len(engines_before) == 1
    assert engines_after != engines_before
    assert not list((ws_home / "workspaces" / wid).glob("volume*old*"))

    assert pyro.delete_workspace(wid)["deleted"] is True
    gone(ws_home, wid)
    assert not (ws_home / "workspaces" / wid).exists()
    with pytest.raises(ValueError, match=f"workspace '{wid}' does not exist"):
        pyro.status_workspace(wid)


def test_qemu_fresh_workspace_holds_only_its_seed(
    qemu_pyro: Pyro, host_dir: Path, new_workspace: Any
) -> None:
    # Regression: the ext4 disk's lost+found used to show in list, ls, export and diff.
    seed = write_tree(host_dir / "seed", {"message.txt": "broken\n"})
    wid = new_workspace(qemu_pyro, seed_path=str(seed))["workspace_id"]
    listed = [e["path"] for e in qemu_pyro.list_workspace_files(wid)["entries"]]
    assert listed == ["/workspace/message.txt"]
    assert qemu_pyro.diff_workspace(wid)["changed"] is False
    qemu_pyro.reset_workspace(wid)
    assert qemu_pyro.diff_workspace(wid)["changed"] is False


# -- exec -----------------------------------------------------------------------------------------


def test_exec_exit_codes_pass_through(ws_pyro: Pyro, ws_home: Path, new_workspace: Any) -> None:
    wid = new_workspace()["workspace_id"]
    for command, code in (("true", 0), ("exit 7", 7), ("exit 255", 255), ("kill -9 $$", 137)):
        assert ws_pyro.exec_workspace(wid, command=command)["exit_code"] == code, command
    for command, code in (("exit 0", 0), ("exit 7", 7)):
        cli = run_cli("workspace", "exec", wid, "--", "sh", "-c", command, home=ws_home)
        assert cli.returncode == code, cli.stderr
        assert f"exit_code={code}" in cli.stderr_lines[-1]
    assert [e["exit_code"] for e in ws_pyro.logs_workspace(wid)["entries"]] == [
        0, 7, 255, 137, 0, 7,
    ]  # fmt: skip


def test_exec_timeout_is_124_keeps_partial_output_and_kills_the_group(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    wid = new_workspace()["workspace_id"]
    command = "echo before; echo err >&2; sleep 60 & echo $! > /tmp/bg.pid; wait"
    started = time.monotonic()
    result = ws_pyro.exec_workspace(wid, command=command, timeout_seconds=1)
    assert time.monotonic() - started < 5
    assert (result["exit_code"], result["stdout"]) == (124, "before\n")
    assert result["stderr"].splitlines() == ["err", "command timed out after 1s"]
    assert ws_pyro.logs_workspace(wid)["entries"][-1]["exit_code"] == 124
    survivor = ws_pyro.exec_workspace(wid, command="kill -0 $(cat /tmp/bg.pid) && echo alive")
    assert survivor["stdout"] == "", "the command's background child outlived the timeout"

    cli = run_cli(
        "workspace", "exec", wid, "--timeout-seconds", "1", "--", "sh", "-c", "echo a; sleep 30",
        home=ws_home,
    )  # fmt: skip
    assert (cli.returncode, cli.stdout) == (124, "a\n")
    assert cli.seconds < 10
    with pytest.raises(ValueError, match="timeout_seconds"):
        ws_pyro.exec_workspace(wid, command="true", timeout_seconds=0)


def test_exec_output_is_capped_and_decoded(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace()["workspace_id"]
    big = ws_pyro.exec_workspace(wid, command="head -c 3000000 /dev/zero | tr '\\0' a; echo e >&2")
    assert (big["exit_code"], big["stdout_truncated"], big["stderr_truncated"]) == (0, True, False)
    assert big["stdout"] == "a" * 1024 * 1024
    assert big["stderr"] == "e\n"
    odd = ws_pyro.exec_workspace(wid, command="printf 'a\\377b'")
    assert odd["stdout"] == "a\ufffdb"
    assert ws_pyro.logs_workspace(wid)["entries"][-1]["stdout"] == "a\ufffdb"


def test_stop_during_a_running_exec(ws_pyro: Pyro, ws_home: Path, new_workspace: Any) -> None:
    wid = new_workspace()["workspace_id"]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ws_pyro.exec_workspace, wid, command="sleep 20; echo done")
        time.sleep(0.5)
        assert ws_pyro.stop_workspace(wid)["state"] == "stopped"
        with pytest.raises(RuntimeError, match="stopped during"):
            running.result(timeout=10)  # fails at once, not after 20 s
    gone(ws_home, wid)
    assert ws_pyro.logs_workspace(wid)["count"] == 0


def test_a_long_exec_does_not_block_other_calls(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace(seed_path=None)["workspace_id"]
    ws_pyro.write_workspace_file(wid, "f.txt", text="f\n")
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(ws_pyro.exec_workspace, wid, command="sleep 3; echo slow")
        time.sleep(0.3)
        started = time.monotonic()
        assert ws_pyro.read_workspace_file(wid, "f.txt")["content"] == "f\n"
        assert ws_pyro.list_workspace_files(wid)["entries"][0]["path"] == "/workspace/f.txt"
        assert ws_pyro.exec_workspace(wid, command="echo quick")["stdout"] == "quick\n"
        assert time.monotonic() - started < 2, "calls waited for the long exec"
        assert not slow.done()
        assert slow.result(timeout=30)["stdout"] == "slow\n"


def test_exec_runs_in_a_prestarted_shell_that_acts_as_sh_lc(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    """guest/prestart.py in a real sandbox (tests/test_prestart.py compares every detail
    with `sh -lc` on the host's dash): the shell is really used, a near-limit script arrives
    whole, and the login profile is read when the command runs."""
    wid = new_workspace(seed_path=None)["workspace_id"]

    def run(command: str) -> tuple[int, str, str]:
        time.sleep(0.3)  # the previous exec's answer has started the next shell by now
        result = ws_pyro.exec_workspace(wid, command=command)
        return result["exit_code"], result["stdout"], result["stderr"]

    def prestarted(command: str) -> tuple[int, str, str]:
        """``command`` (printing $$'s cmdline first) once it ran in a pre-started shell;
        retried, as a loaded host may take longer to start that shell."""
        for _ in range(10):
            got = run(command)
            if got[1].startswith("/bin/sh "):
                return got
            time.sleep(1)
        raise AssertionError(f"never ran in a pre-started shell: {got!r}")

    run("true")
    assert prestarted("tr '\\0' ' ' </proc/$$/cmdline") == (0, "/bin/sh ", "")
    assert run("echo $0 $# [$-]") == (0, "/bin/sh 0 []\n", "")
    assert run("echo a\nfoo(") == (
        2, "a\n", '/bin/sh: 2: Syntax error: end of file unexpected (expecting ")")\n',
    )  # fmt: skip
    assert run("nosuch") == (127, "", "/bin/sh: 1: nosuch: not found\n")
    assert run("readlink /proc/self/fd/0; cat; echo $PATH") == (
        0, "/dev/null\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n", "",
    )  # fmt: skip
    near_limit = "echo " + "x" * 3900 + " | wc -c"  # one pipe write, read whole in gVisor
    assert run(near_limit) == (0, "3901\n", "")
    assert run("echo " + "y" * 5000 + " | wc -c") == (0, "5001\n", "")  # too long: sh -lc
    # The profile changes after the next shell has started: the command still sees it.
    run("(sleep 1; echo 'export PROBE=late' > /etc/profile.d/probe.sh) >/dev/null 2>&1 &")
    time.sleep(1.5)
    assert prestarted("tr '\\0' ' ' </proc/$$/cmdline; echo $PROBE") == (0, "/bin/sh late\n", "")
    # What a command points fd 0 at is never read on as script (that goes to sh -lc).
    run("printf 'first\\necho INJECTED\\n' > notes")
    assert run("exec <notes; read t; echo title=$t") == (0, "title=first\n", "")
    # A /dev/null made a regular file, or a /bin/sh made bash: never the waiting shell.
    run("rm /dev/null && printf 'echo FROM-DEVNULL\\n' > /dev/null")
    assert run("echo hi") == (0, "hi\n", "")
    run("ln -sf bash /bin/sh")
    assert run("echo hi; readlink /bin/sh") == (0, "hi\nbash\n", "")
    assert run("echo again") == (0, "again\n", "")


# -- file modes -----------------------------------------------------------------------------------


def test_file_write_and_patch_keep_the_mode(
    ws_pyro: Pyro, new_workspace: Any, host_dir: Path
) -> None:
    seed = write_tree(host_dir / "seed", {"run.sh": "echo v1\n", "secret.txt": "s\n"})
    (seed / "run.sh").chmod(0o755)
    (seed / "secret.txt").chmod(0o600)
    wid = new_workspace(seed_path=str(seed))["workspace_id"]

    def modes() -> str:
        return ws_pyro.exec_workspace(wid, command="stat -c '%n %a' *")["stdout"]

    assert modes() == "run.sh 755\nsecret.txt 600\n"
    ws_pyro.write_workspace_file(wid, "run.sh", text="echo v2\n")
    ws_pyro.write_workspace_file(wid, "secret.txt", text="t\n")
    assert modes() == "run.sh 755\nsecret.txt 600\n"
    ws_pyro.apply_workspace_patch(
        wid, patch="--- a/run.sh\n+++ b/run.sh\n@@ -1 +1 @@\n-echo v2\n+echo v3\n"
    )
    assert modes() == "run.sh 755\nsecret.txt 600\n"
    assert ws_pyro.exec_workspace(wid, command="./run.sh")["stdout"] == "v3\n"
    ws_pyro.write_workspace_file(wid, "new.txt", text="n\n")
    ws_pyro.apply_workspace_patch(wid, patch="--- /dev/null\n+++ b/added.txt\n@@ -0,0 +1 @@\n+a\n")
    assert modes() == "added.txt 644\nnew.txt 644\nrun.sh 755\nsecret.txt 600\n"
    exported = host_dir / "run.sh"
    ws_pyro.export_workspace(wid, "run.sh", output_path=str(exported))
    assert exported.stat().st_mode & 0o777 == 0o755


def test_reset_from_stopped(ws_pyro: Pyro, new_workspace: Any, host_dir: Path) -> None:
    seed = write_tree(host_dir / "seed", {"a.txt": "one\n"})
    wid = new_workspace(seed_path=str(seed))["workspace_id"]
    ws_pyro.write_workspace_file(wid, "a.txt", text="changed\n")
    ws_pyro.exec_workspace(wid, command="true")
    ws_pyro.stop_workspace(wid)
    reset = ws_pyro.reset_workspace(wid)
    assert (reset["state"], reset["reset_count"], reset["command_count"]) == ("started", 1, 0)
    assert reset["last_command"] is None
    assert reset["last_reset_at"] == reset["last_activity_at"]
    assert ws_pyro.read_workspace_file(wid, "a.txt")["content"] == "one\n"
    with pytest.raises(ValueError, match="snapshot 'nope' does not exist"):
        ws_pyro.reset_workspace(wid, snapshot="nope")


def test_update_merges_and_clears(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace(name="  first  ", labels={"b": "2", "a": "1"})["workspace_id"]
    assert ws_pyro.status_workspace(wid)["name"] == "first"
    updated = ws_pyro.update_workspace(wid, labels={"c": "3", "a": "one"}, clear_labels=["b"])
    assert list(updated["labels"].items()) == [("a", "one"), ("c", "3")]  # merged, sorted
    assert ws_pyro.update_workspace(wid, clear_name=True)["name"] is None
    with pytest.raises(ValueError, match="no effective metadata change"):
        ws_pyro.update_workspace(wid, labels={"a": "one"})
    with pytest.raises(ValueError, match="either name or clear_name"):
        ws_pyro.update_workspace(wid, name="x", clear_name=True)
    for labels in ({"bad key": "v"}, {"k": ""}, {"k": "a\nb"}, {"k": "v" * 121}):
        with pytest.raises(ValueError, match="label"):
            ws_pyro.update_workspace(wid, labels=labels)
    assert ws_pyro.status_workspace(wid)["labels"] == {"a": "one", "c": "3"}


# Field names from PRODUCT_SPEC §2.3-2.10 (results may carry more, never fewer).
PAYLOAD = {
    "workspace_id", "name", "labels", "environment", "environment_version", "vcpu_count",
    "mem_mib", "ttl_seconds", "created_at", "last_activity_at", "expires_at", "state",
    "network_policy", "network_enabled", "allow_host_compat", "guest_ip", "tap_name",
    "execution_mode", "workspace_path", "workspace_seed", "secrets", "command_count",
    "last_command", "reset_count", "last_reset_at", "service_count", "running_service_count",
    "metadata",
}  # fmt: skip
FIELDS = {
    "seed": {"mode", "seed_path", "destination", "entry_count", "bytes_written"},
    "list": {
        "workspace_id", "name", "labels", "environment", "state", "created_at",
        "last_activity_at", "expires_at", "command_count", "service_count",
        "running_service_count",
    },
    "log": {
        "sequence", "command", "cwd", "exit_code", "duration_ms", "execution_mode",
        "stdout_file", "stderr_file", "recorded_at", "stdout", "stderr",
    },
    "exec": {
        "workspace_id", "environment", "environment_version", "command", "stdout", "stderr",
        "exit_code", "duration_ms", "execution_mode", "sequence", "cwd",
    },
    "sync": {"mode", "source_path", "destination", "entry_count", "bytes_written"},
    "file_entry": {"path", "artifact_type", "size_bytes", "link_target"},
    "read": {
        "workspace_id", "path", "size_bytes", "max_bytes", "content", "truncated",
        "execution_mode",
    },
    "write": {"workspace_id", "path", "size_bytes", "bytes_written", "execution_mode"},
    "patch": {"workspace_id", "changed", "summary", "entries", "patch", "execution_mode"},
    "export": {
        "workspace_id", "workspace_path", "output_path", "artifact_type", "entry_count",
        "bytes_written", "execution_mode",
    },
    "diff_summary": {
        "total", "added", "modified", "deleted", "type_changed", "text_patched", "non_text",
    },
    "diff_entry": {"path", "status", "artifact_type", "text_patch"},
    "reset": {"snapshot_name", "kind", "destination", "entry_count", "bytes_written"},
}  # fmt: skip


def test_results_carry_the_contract_fields(
    ws_pyro: Pyro, new_workspace: Any, host_dir: Path
) -> None:
    p = ws_pyro
    seed = write_tree(host_dir / "seed", {"a.txt": "one\n"})
    ws = new_workspace(seed_path=str(seed))
    wid = ws["workspace_id"]
    missing: dict[str, set[str]] = {}

    def check(name: str, result: dict[str, Any], fields: set[str]) -> None:
        if fields - set(result):
            missing[name] = fields - set(result)

    check("create", ws, PAYLOAD)
    check("create.workspace_seed", ws["workspace_seed"], FIELDS["seed"])
    check("exec", p.exec_workspace(wid, command="true"), FIELDS["exec"])
    logs = p.logs_workspace(wid)
    check("logs", logs, {"workspace_id", "count", "entries"})
    check("logs.entry", logs["entries"][0], FIELDS["log"])
    listed = p.list_workspaces()
    check("list", listed, {"count", "workspaces"})
    check("list.entry", listed["workspaces"][0], FIELDS["list"])
    check("update", p.update_workspace(wid, labels={"k": "v"}), PAYLOAD)
    check("status", p.status_workspace(wid), PAYLOAD)
    sync = p.push_workspace_sync(wid, str(seed), dest="copy")
    check("sync", sync, {"workspace_id", "execution_mode", "workspace_sync"})
    check("sync.workspace_sync", sync["workspace_sync"], FIELDS["sync"])
    files = p.list_workspace_files(wid)
    check("file list", files, {"workspace_id", "path", "recursive", "entries", "execution_mode"})
    check("file list.entry", files["entries"][0], FIELDS["file_entry"])
    check("file read", p.read_workspace_file(wid, "a.txt"), FIELDS["read"])
    check("file write", p.write_workspace_file(wid, "b.txt", text="b\n"), FIELDS["write"])
    patched = p.apply_workspace_patch(wid, patch=PATCH_A)
    check("patch", patched, FIELDS["patch"])
    check("patch.summary", patched["summary"], {"total", "added", "modified", "deleted"})
    check("patch.entry", patched["entries"][0], {"path", "status"})
    out = str(host_dir / "a.txt")
    check("export", p.export_workspace(wid, "a.txt", output_path=out), FIELDS["export"])
    diff = p.diff_workspace(wid)
    check("diff", diff, {"workspace_id", "changed", "summary", "entries", "patch"})
    check("diff.summary", diff["summary"], FIELDS["diff_summary"])
    check("diff.entry", diff["entries"][0], FIELDS["diff_entry"])
    reset = p.reset_workspace(wid)
    check("reset", reset, PAYLOAD | {"workspace_reset"})
    check("reset.workspace_reset", reset["workspace_reset"], FIELDS["reset"])
    check("stop", p.stop_workspace(wid), PAYLOAD)
    check("start", p.start_workspace(wid), PAYLOAD)
    check("delete", p.delete_workspace(wid), {"workspace_id", "deleted", "reason"})
    assert missing == {}


# -- the last_activity_at rule, for every operation -----------------------------------------------


def test_last_activity_rule_for_every_operation(
    ws_pyro: Pyro, new_workspace: Any, host_dir: Path
) -> None:
    seed = write_tree(host_dir / "seed", {"a.txt": "one\n"})
    source = write_tree(host_dir / "sync", {"synced.txt": "s\n"})
    ws = new_workspace(seed_path=str(seed))
    wid = ws["workspace_id"]
    assert ws["last_activity_at"] == ws["created_at"]  # create sets it
    exports = iter(range(100))
    p = ws_pyro
    steps: list[tuple[str, Callable[[], Any], bool]] = [
        ("status", lambda: p.status_workspace(wid), False),
        ("list", lambda: p.list_workspaces(), False),
        ("update", lambda: p.update_workspace(wid, labels={"k": "v"}), True),
        ("exec", lambda: p.exec_workspace(wid, command="true"), True),
        ("logs", lambda: p.logs_workspace(wid), False),
        ("sync push", lambda: p.push_workspace_sync(wid, str(source)), True),
        ("file list", lambda: p.list_workspace_files(wid, recursive=True), False),
        ("file write", lambda: p.write_workspace_file(wid, "b.txt", text="b\n"), True),
        ("file read", lambda: p.read_workspace_file(wid, "a.txt"), False),
        ("patch apply", lambda: p.apply_workspace_patch(wid, patch=PATCH_A), True),
        ("diff", lambda: p.diff_workspace(wid), False),
        ("export", lambda: export(p, wid, host_dir, next(exports)), False),
        ("reset", lambda: p.reset_workspace(wid), True),
        ("stop", lambda: p.stop_workspace(wid), True),
        ("status (stopped)", lambda: p.status_workspace(wid), False),
        ("list (stopped)", lambda: p.list_workspaces(), False),
        ("logs (stopped)", lambda: p.logs_workspace(wid), False),
        ("stop (already stopped)", lambda: p.stop_workspace(wid), True),
        ("start", lambda: p.start_workspace(wid), True),
        ("start (already started)", lambda: p.start_workspace(wid), True),
        ("file read (after start)", lambda: p.read_workspace_file(wid, "a.txt"), False),
    ]
    wrong = []
    for label, call, bumps in steps:
        before = p.status_workspace(wid)["last_activity_at"]
        time.sleep(0.01)
        called_at = time.time()
        call()
        after = p.status_workspace(wid)["last_activity_at"]
        bumped = after != before
        if bumped != bumps or (bumped and not called_at <= after <= time.time()):
            wrong.append(f"{label}: {before} -> {after} (should bump: {bumps})")
    assert wrong == []
    reset_at = p.status_workspace(wid)["last_reset_at"]
    assert reset_at is not None and reset_at < p.status_workspace(wid)["last_activity_at"]


PATCH_A = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+uno\n"


def export(pyro: Pyro, wid: str, host_dir: Path, number: int) -> Any:
    return pyro.export_workspace(wid, "a.txt", output_path=str(host_dir / f"export-{number}"))


# -- TTL ------------------------------------------------------------------------------------------


def set_expires_at(home: Path, workspace_id: str, value: float) -> None:
    with sqlite3.connect(home / "state.db") as db:
        db.execute(
            "UPDATE workspaces SET expires_at = ? WHERE workspace_id = ?", (value, workspace_id)
        )


EXPIRED = r"workspace '{}' expired \(ttl 60s\) and was automatically deleted"


def test_ttl_limits(ws_pyro: Pyro) -> None:
    for ttl in (59, 86401):
        with pytest.raises(ValueError, match="ttl_seconds must be between 60 and 86400"):
            ws_pyro.create_workspace(environment=ENVIRONMENT, ttl_seconds=ttl)


def test_supervisor_stops_and_removes_an_expired_workspace(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    ws = new_workspace(ttl_seconds=60)
    wid = ws["workspace_id"]
    assert ws["expires_at"] == pytest.approx(ws["created_at"] + 60)
    assert supervisor_pids(ws_home, wid)
    # Instead of waiting a minute: the supervisor re-reads expires_at at least every 5 s.
    set_expires_at(ws_home, wid, time.time() + 1)
    started = time.monotonic()
    wait_for(lambda: not workspace_processes(ws_home, wid), 12, "the expired workspace to stop")
    wait_for(lambda: not (ws_home / "workspaces" / wid).exists(), 5, "its directory to go")
    took = time.monotonic() - started
    assert took < 10, f"the supervisor took {took:.1f}s to expire the workspace"
    for _ in range(2):  # and it keeps saying why, not just "does not exist"
        with pytest.raises(RuntimeError, match=EXPIRED.format(wid)):
            ws_pyro.status_workspace(wid)
    assert wid not in [w["workspace_id"] for w in ws_pyro.list_workspaces()["workspaces"]]


def test_expired_stopped_workspace_is_reaped_on_access(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    old, young = (new_workspace(ttl_seconds=60)["workspace_id"] for _ in range(2))
    for wid in (old, young):
        ws_pyro.stop_workspace(wid)
    set_expires_at(ws_home, old, time.time() - 1)
    for call in (ws_pyro.status_workspace, ws_pyro.status_workspace, ws_pyro.start_workspace):
        with pytest.raises(RuntimeError, match=EXPIRED.format(old)):
            call(old)
    assert not (ws_home / "workspaces" / old).exists()

    set_expires_at(ws_home, young, time.time() - 1)
    assert young not in [w["workspace_id"] for w in ws_pyro.list_workspaces()["workspaces"]]
    assert not (ws_home / "workspaces" / young).exists()


# -- crash safety ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_killed_supervisor(engine: str, pyro_for: Any, ws_home: Path, new_workspace: Any) -> None:
    pyro = pyro_for(engine)
    wid = new_workspace(pyro)["workspace_id"]
    pyro.write_workspace_file(wid, "kept.txt", text="kept\n")
    [supervisor] = supervisor_pids(ws_home, wid)
    os.kill(supervisor, signal.SIGKILL)
    gone(ws_home, wid, timeout=10)  # the engine ends with its supervisor

    listed = [w for w in pyro.list_workspaces()["workspaces"] if w["workspace_id"] == wid]
    assert listed[0]["state"] == "stopped"  # list refreshes liveness too
    status = pyro.status_workspace(wid)
    assert status["state"] == "stopped"
    assert "supervisor" in (status["last_error"] or "")
    with pytest.raises(RuntimeError, match=NOT_STARTED):
        pyro.exec_workspace(wid, command="true")

    assert pyro.start_workspace(wid)["state"] == "started"
    assert pyro.status_workspace(wid)["last_error"] is None
    assert pyro.read_workspace_file(wid, "kept.txt")["content"] == "kept\n"
    assert pyro.exec_workspace(wid, command="cat kept.txt")["stdout"] == "kept\n"


@pytest.mark.parametrize("engine", ENGINES)
def test_killed_engine(engine: str, pyro_for: Any, ws_home: Path, new_workspace: Any) -> None:
    pyro = pyro_for(engine)
    wid = new_workspace(pyro)["workspace_id"]
    pyro.write_workspace_file(wid, "kept.txt", text="kept\n")
    pyro.exec_workspace(wid, command="sync")
    [engine_pid] = engine_pids(ws_home, wid)
    os.kill(engine_pid, signal.SIGKILL)

    status = wait_for(
        lambda: (s := pyro.status_workspace(wid))["state"] == "stopped" and s, 10, "stopped"
    )
    assert "backing guest process is no longer running" in status["last_error"]
    gone(ws_home, wid, timeout=15)  # supervisor, and runsc's sandbox and gofer too

    assert pyro.start_workspace(wid)["state"] == "started"
    assert pyro.read_workspace_file(wid, "kept.txt")["content"] == "kept\n"
    assert pyro.exec_workspace(wid, command="echo alive")["stdout"] == "alive\n"

    # Reset over repair: after another crash, reset boots a fresh sandbox from the baseline.
    [engine_pid] = engine_pids(ws_home, wid)
    os.kill(engine_pid, signal.SIGKILL)
    wait_for(lambda: pyro.status_workspace(wid)["state"] == "stopped", 10, "stopped again")
    gone(ws_home, wid, timeout=15)  # at once is test_same_client_recovers_right_after…
    reset = pyro.reset_workspace(wid)
    assert (reset["state"], reset["reset_count"], reset["last_error"]) == ("started", 1, None)
    assert pyro.list_workspace_files(wid)["entries"] == []


def test_same_client_recovers_right_after_a_crash(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    wid = new_workspace()["workspace_id"]
    errors = []
    for recover in ("reset", "start"):
        ws_pyro.exec_workspace(wid, command="true")  # this client now holds a connection
        [engine_pid] = engine_pids(ws_home, wid)
        os.kill(engine_pid, signal.SIGKILL)
        wait_for(lambda: ws_pyro.status_workspace(wid)["state"] == "stopped", 10, "stopped")
        try:
            if recover == "reset":
                ws_pyro.reset_workspace(wid)
            else:
                ws_pyro.start_workspace(wid)
            ws_pyro.exec_workspace(wid, command="true")
        except RuntimeError as exc:
            errors.append(f"{recover}: {exc}")
        wait_for(lambda: len(supervisor_pids(ws_home, wid)) <= 1, 15, "the old supervisor")
        if ws_pyro.status_workspace(wid)["state"] != "started":
            ws_pyro.start_workspace(wid)
    assert errors == []


# -- concurrency and isolation --------------------------------------------------------------------

BIG = "".join(f"line {i:06d} of the big file\n" for i in range(8000))  # ~225 KB


def test_cli_exec_loop_and_mcp_session_at_once(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any, host_dir: Path
) -> None:
    seed = write_tree(host_dir / "seed", {"big.txt": BIG, "small.txt": "small\n"})
    wid = new_workspace(seed_path=str(seed))["workspace_id"]
    errors: list[str] = []
    stop = threading.Event()
    rounds = {"cli": 0, "mcp": 0}

    def cli_loop() -> None:
        try:
            for i in range(1, 13):
                cmd = f"echo {i} >> log.txt && cat small.txt"
                result = run_cli("workspace", "exec", wid, "--", cmd, home=ws_home)
                if (result.returncode, result.stdout) != (0, "small\n"):
                    errors.append(f"cli {i}: {result.returncode} {result.stdout!r} {result.stderr}")
                rounds["cli"] += 1
        finally:
            stop.set()

    def mcp_loop(client: McpClient) -> None:
        while not stop.is_set():
            listed = client.ok("workspace_file_list", workspace_id=wid)
            names = [e["path"] for e in listed["entries"]]
            big = client.ok(
                "workspace_file_read", workspace_id=wid, path="big.txt", max_bytes=300000
            )
            small = client.ok("workspace_file_read", workspace_id=wid, path="small.txt")
            status = client.ok("workspace_status", workspace_id=wid)
            if big["content"] != BIG or small["content"] != "small\n":
                errors.append("mcp: a read came back corrupted")
            if not {"/workspace/big.txt", "/workspace/small.txt"} <= set(names):
                errors.append(f"mcp: list lost files: {names}")
            if status["state"] != "started":
                errors.append(f"mcp: state {status['state']}")
            rounds["mcp"] += 1

    with McpClient(ws_home) as client:
        threads = [threading.Thread(target=cli_loop)]
        threads += [threading.Thread(target=mcp_loop, args=(client,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        logs = client.ok("workspace_logs", workspace_id=wid)

    assert errors == []
    assert rounds["cli"] == 12 and rounds["mcp"] >= 4, rounds
    assert ws_pyro.read_workspace_file(wid, "log.txt")["content"] == "".join(
        f"{i}\n" for i in range(1, 13)
    )
    assert [e["sequence"] for e in logs["entries"]] == list(range(1, 13))
    assert ws_pyro.read_workspace_file(wid, "big.txt", max_bytes=300000)["content"] == BIG


def test_parallel_execs_in_one_workspace_overlap(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace()["workspace_id"]
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda i: ws_pyro.exec_workspace(wid, command=f"sleep 1; echo {i}"), range(6))
        )
    assert [r["stdout"] for r in results] == [f"{i}\n" for i in range(6)]
    assert sorted(r["sequence"] for r in results) == list(range(1, 7))
    assert time.monotonic() - started < 4, "the execs ran one after another"


def test_two_workspaces_never_see_each_other(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    a, b = (new_workspace()["workspace_id"] for _ in range(2))
    planted = ws_pyro.exec_workspace(
        a,
        command="echo a > only-a.txt && echo a > /root/only-a && echo a > /etc/only-a "
        "&& echo a > /tmp/only-a && (setsid sleep 321 >/dev/null 2>&1 &) && echo planted",
    )
    assert planted["stdout"] == "planted\n"
    mine = ws_pyro.exec_workspace(
        a, command="cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'sleep 32[1]'"
    )
    assert mine["stdout"] == "1\n", "the planted process must run in A for B's check to mean much"
    ws_pyro.write_workspace_file(a, "dir/only-a.txt", text="a\n")

    seen = ws_pyro.exec_workspace(
        b,
        command="ls -A /workspace; ls /root /etc /tmp | grep -c only-a; "
        "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'sleep 32[1]'",
    )
    assert seen["stdout"] == "0\n0\n", seen
    assert ws_pyro.list_workspace_files(b, recursive=True)["entries"] == []
    with pytest.raises(ValueError, match="does not exist"):
        ws_pyro.read_workspace_file(b, "only-a.txt")
    assert ws_pyro.diff_workspace(b)["changed"] is False

    # The environment's shared root was not written either: it is a read-only lower layer.
    rootfs = ws_pyro.manager.runtime.environment(ENVIRONMENT).rootfs_dir
    assert not (rootfs / "etc" / "only-a").exists()
    assert not (rootfs / "root" / "only-a").exists()
    # And A still has everything.
    assert ws_pyro.exec_workspace(a, command="cat /etc/only-a only-a.txt")["stdout"] == "a\na\n"


def test_concurrent_starts_run_one_sandbox(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any
) -> None:
    # Regression: racing starts each spawned a supervisor and an engine on one /workspace
    # (and with three, they broke each other's runsc bundle); stop then ended only one.
    wid = new_workspace()["workspace_id"]
    ws_pyro.stop_workspace(wid)
    gone(ws_home, wid)
    barrier = threading.Barrier(3)

    def start(client: Pyro) -> str:
        barrier.wait()
        try:
            return str(client.start_workspace(wid)["state"])
        except RuntimeError as exc:
            return f"failed: {exc}"

    # Separate clients, as CLI processes and an MCP server would be.
    with (
        Pyro(backend_name="gvisor", base_dir=ws_home) as one,
        Pyro(backend_name="gvisor", base_dir=ws_home) as two,
        Pyro(backend_name="gvisor", base_dir=ws_home) as three,
        ThreadPoolExecutor(3) as pool,
    ):
        results = list(pool.map(start, (one, two, three)))
    supervisors = supervisor_pids(ws_home, wid)
    ws_pyro.stop_workspace(wid)
    time.sleep(3)
    left = workspace_processes(ws_home, wid)
    assert results == ["started"] * 3, results
    assert len(supervisors) == 1, f"{len(supervisors)} supervisors run one workspace"
    assert left == [], "stop left a sandbox running while status says stopped"


def test_qemu_stopped_disk_tools_read_the_image(
    qemu_pyro: Pyro, new_workspace: Any, tmp_path: Path
) -> None:
    """The disk tools on a VM's ext4 image (tests/test_disk_image.py crafts hostile ones)."""
    wid = new_workspace(qemu_pyro, seed_path=None)["workspace_id"]
    made = qemu_pyro.exec_workspace(
        wid,
        "mkdir -p src/deep && echo one > src/a.txt && echo two > src/deep/b.txt"
        " && ln -s /etc/passwd src/pw && ln -s /etc etc && head -c 2000000 /dev/zero > big"
        " && mkfifo pipe",
    )
    assert made["exit_code"] == 0, made["stderr"]
    qemu_pyro.stop_workspace(wid)
    listing = qemu_pyro.list_workspace_disk(wid, recursive=True)["entries"]
    assert [
        (e["path"], e["artifact_type"], e["size_bytes"], e["link_target"]) for e in listing
    ] == [
        ("/workspace/big", "file", 2000000, None),
        ("/workspace/etc", "symlink", 0, "/etc"),
        ("/workspace/src", "directory", 0, None),
        ("/workspace/src/a.txt", "file", 4, None),
        ("/workspace/src/deep", "directory", 0, None),
        ("/workspace/src/deep/b.txt", "file", 4, None),
        ("/workspace/src/pw", "symlink", 0, "/etc/passwd"),
    ]
    top = qemu_pyro.list_workspace_disk(wid)["entries"]
    assert [e["path"] for e in top] == ["/workspace/big", "/workspace/etc", "/workspace/src"]
    assert qemu_pyro.read_workspace_disk(wid, "src/deep/b.txt")["content"] == "two\n"
    big = qemu_pyro.read_workspace_disk(wid, "big", max_bytes=10)
    assert (big["content"], big["size_bytes"], big["truncated"]) == ("\0" * 10, 2000000, True)
    with pytest.raises(ValueError, match="symlinked directory"):
        qemu_pyro.read_workspace_disk(wid, "etc/passwd")
    with pytest.raises(ValueError, match="only supports regular files"):
        qemu_pyro.read_workspace_disk(wid, "src/pw")
    with pytest.raises(ValueError, match="inside /workspace"):
        qemu_pyro.read_workspace_disk(wid, "../etc/passwd")
    with pytest.raises(ValueError, match="does not exist"):
        qemu_pyro.read_workspace_disk(wid, "lost+found")
    image = tmp_path / "disk.ext4"
    exported = qemu_pyro.export_workspace_disk(wid, output_path=str(image))
    assert exported["disk_format"] == "ext4" and image.stat().st_size > 0
    assert DiskImage(image).read(DiskImage(image).lookup(["src", "a.txt"]), 10) == b"one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.ext4"]  # no partial left
    with pytest.raises(ValueError, match="already exists"):
        qemu_pyro.export_workspace_disk(wid, output_path=str(image))
