"""The workspace-full surface on real sandboxes: shells, services, secrets, snapshots, disk.

Networking and published ports are in test_workspace_network.py (they need a VM engine).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pyro_mcp import Pyro
from workspace_fixtures import *  # noqa: F403
from workspace_fixtures import run_cli, wait_for

pytestmark = pytest.mark.guest
SECRET = "s3cr3t-Value-9f2c1e"


# -- shells -------------------------------------------------------------------------------------
def test_shell_plain_render_of_top_and_vim_is_clean_text(ws_pyro: Pyro, new_workspace) -> None:
    wid = new_workspace()["workspace_id"]
    sid = ws_pyro.open_shell(wid, cols=100, rows=24)["shell_id"]
    start = ws_pyro.read_shell(wid, sid, wait_for_idle_ms=300)["next_cursor"]
    ws_pyro.write_shell(wid, sid, "top")
    time.sleep(1.5)
    top = ws_pyro.read_shell(wid, sid, cursor=start, plain=True, wait_for_idle_ms=500)
    assert "load average" in top["output"] and "PID" in top["output"]
    assert "\x1b" not in top["output"] and "\r" not in top["output"]
    ws_pyro.write_shell(wid, sid, "q", append_newline=False)
    start = ws_pyro.read_shell(wid, sid, cursor=top["next_cursor"], wait_for_idle_ms=300)
    ws_pyro.write_shell(wid, sid, "printf 'hello\\nworld\\n' > f.txt; vi f.txt")
    time.sleep(1.0)
    vim = ws_pyro.read_shell(
        wid, sid, cursor=start["next_cursor"], plain=True, wait_for_idle_ms=500
    )
    assert "hello" in vim["output"] and "world" in vim["output"]
    assert "\x1b" not in vim["output"]
    raw = ws_pyro.read_shell(wid, sid, cursor=start["next_cursor"])
    assert "\x1b[" in raw["output"], "the raw stream keeps the escape sequences"
    ws_pyro.write_shell(wid, sid, "\x1b:q!", append_newline=True)
    assert ws_pyro.close_shell(wid, sid)["closed"] is True


def test_shell_idle_read_waits_for_the_window_and_output_keeps_flowing(
    ws_pyro: Pyro, new_workspace
) -> None:
    wid = new_workspace()["workspace_id"]
    sid = ws_pyro.open_shell(wid)["shell_id"]
    first = ws_pyro.read_shell(wid, sid, wait_for_idle_ms=300)
    started = time.monotonic()
    quiet = ws_pyro.read_shell(wid, sid, cursor=first["next_cursor"], wait_for_idle_ms=400)
    assert time.monotonic() - started >= 0.38, "an idle read returned before the idle window"
    assert quiet["output"] == "" and quiet["next_cursor"] == first["next_cursor"]
    # Output produced while nobody reads is buffered, not lost.
    ws_pyro.write_shell(wid, sid, "for i in 1 2 3; do echo tick$i; sleep 0.3; done")
    time.sleep(1.5)
    later = ws_pyro.read_shell(wid, sid, cursor=first["next_cursor"], plain=True)
    assert all(f"tick{i}" in later["output"] for i in (1, 2, 3))
    # INT reaches the foreground job, like Ctrl-C.
    ws_pyro.write_shell(wid, sid, "sleep 60")
    time.sleep(0.3)
    ws_pyro.signal_shell(wid, sid, "INT")
    after = ws_pyro.read_shell(
        wid, sid, cursor=later["next_cursor"], plain=True, wait_for_idle_ms=300
    )
    assert after["output"].rstrip().endswith("pyro$")
    with pytest.raises(ValueError, match="signal must be one of"):
        ws_pyro.signal_shell(wid, sid, "USR1")
    with pytest.raises(ValueError, match="cursor must be"):
        ws_pyro.read_shell(wid, sid, cursor=-1)


def test_shell_exit_codes_match_exec(ws_pyro: Pyro, new_workspace) -> None:
    """An ended shell reports its exit code as exec does: 128 + N when signal N ended it."""
    wid = new_workspace()["workspace_id"]
    for ending, code in (("exit 3", 3), (None, 137)):
        sid = ws_pyro.open_shell(wid)["shell_id"]
        ws_pyro.read_shell(wid, sid, wait_for_idle_ms=300)
        if ending:
            ws_pyro.write_shell(wid, sid, ending)
        else:
            ws_pyro.signal_shell(wid, sid, "KILL")
        deadline = time.monotonic() + 10
        while ws_pyro.read_shell(wid, sid)["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = ws_pyro.read_shell(wid, sid)
        assert (summary["state"], summary["exit_code"]) == ("stopped", code), ending
        ws_pyro.close_shell(wid, sid)


# -- services ---------------------------------------------------------------------------------
READY = {
    "file": ({"type": "file", "path": ".ready"}, "sleep 0.3; touch .ready; sleep 60"),
    "tcp": ({"type": "tcp", "address": "127.0.0.1:8701"}, "python3 -m http.server 8701"),
    "http": ({"type": "http", "url": "http://127.0.0.1:8702/"}, "python3 -m http.server 8702"),
    "command": (
        {"type": "command", "command": "test -e /tmp/up"},
        "sleep 0.3; touch /tmp/up; sleep 60",
    ),
}


@pytest.mark.parametrize("kind", list(READY))
def test_service_readiness_passes_then_stop_leaves_nothing(
    kind: str, ws_pyro: Pyro, new_workspace
) -> None:
    wid = new_workspace()["workspace_id"]
    readiness, command = READY[kind]
    started = ws_pyro.start_service(
        wid, "svc", command=command, readiness=readiness, ready_timeout_seconds=20
    )
    assert started["state"] == "running" and started["ready_at"] is not None
    listed = ws_pyro.list_services(wid)
    assert listed["running_count"] == 1
    stopped = ws_pyro.stop_service(wid, "svc")
    assert stopped["state"] == "stopped" and stopped["stop_reason"] in ("sigterm", "sigkill")
    ps = ws_pyro.exec_workspace(wid, "ps -eo args")["stdout"]
    assert "http.server" not in ps and "sleep 60" not in ps, ps


@pytest.mark.parametrize("kind", list(READY))
def test_service_readiness_fails_clearly(
    kind: str, ws_pyro: Pyro, new_workspace, ws_home: Path
) -> None:
    wid = new_workspace()["workspace_id"]
    readiness, _ = READY[kind]
    failed = ws_pyro.start_service(
        wid,
        "never",
        command="sleep 60",
        readiness=readiness,
        ready_timeout_seconds=1,
        ready_interval_ms=100,
    )
    assert (failed["state"], failed["stop_reason"]) == ("failed", "readiness_timeout")
    assert "sleep 60" not in ws_pyro.exec_workspace(wid, "ps -eo args")["stdout"]
    died = ws_pyro.start_service(
        wid, "dies", command="echo bye; exit 3", readiness=readiness, ready_timeout_seconds=5
    )
    assert (died["state"], died["stop_reason"]) == ("failed", "process_exited_before_ready")
    # The CLI reports a failed service with a non-zero exit.
    flag = {
        "file": ["--ready-file", "x"],
        "tcp": ["--ready-tcp", "127.0.0.1:9"],
        "http": ["--ready-http", "http://127.0.0.1:9/"],
        "command": ["--ready-command", "false"],
    }[kind]
    result = run_cli(
        "workspace",
        "service",
        "start",
        wid,
        "cli",
        *flag,
        "--ready-timeout-seconds",
        "1",
        "--",
        "sleep",
        "60",
        home=ws_home,
    )
    assert result.returncode == 1 and "state=failed" in result.stdout


# -- secrets ----------------------------------------------------------------------------------
def test_a_secret_never_appears_in_anything_the_product_wrote(
    ws_pyro: Pyro, new_workspace, ws_home: Path, tmp_path: Path
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRET + "-file")
    ws = new_workspace(
        secrets=[
            {"name": "TOKEN", "value": SECRET},
            {"name": "FROM_FILE", "file_path": str(secret_file)},
        ]
    )
    wid = ws["workspace_id"]
    assert ws["secrets"] == [
        {"name": "TOKEN", "source_kind": "literal"},
        {"name": "FROM_FILE", "source_kind": "file"},
    ]
    seen = []
    result = ws_pyro.exec_workspace(
        wid, "echo $T; echo $T >&2; echo $T > leak.txt; ls /nope/$T", secret_env={"TOKEN": "T"}
    )
    seen += [result["stdout"], result["stderr"]]
    assert "[REDACTED]" in result["stdout"]
    sid = ws_pyro.open_shell(wid, secret_env={"TOKEN": "T"})["shell_id"]
    ws_pyro.write_shell(wid, sid, "echo shell:$T")

    def shell_output() -> str:
        out = str(ws_pyro.read_shell(wid, sid, wait_for_idle_ms=300)["output"])
        return out if "shell:[REDACTED]" in out else ""

    def service_logs() -> str:
        out = str(ws_pyro.logs_service(wid, "svc"))
        return out if "svc:[REDACTED]" in out else ""

    # Wait for the echoes themselves: a read that came too early would prove nothing.
    seen.append(wait_for(shell_output, 30, "the shell's redacted echo"))
    ws_pyro.start_service(wid, "svc", command="echo svc:$T; sleep 60", secret_env={"TOKEN": "T"})
    seen.append(wait_for(service_logs, 30, "the service's redacted echo"))
    seen.append(str(ws_pyro.read_workspace_file(wid, "leak.txt")))
    seen.append(str(ws_pyro.diff_workspace(wid)))
    seen.append(str(ws_pyro.logs_workspace(wid)))
    seen.append(str(ws_pyro.status_workspace(wid)))
    with pytest.raises(ValueError, match="NOPE") as error:
        ws_pyro.exec_workspace(wid, "true", secret_env={"NOPE": "X"})
    seen.append(str(error.value))
    for text in seen:
        assert SECRET not in text
    # Everything the product wrote to disk, except the secret store itself (0600 in 0700).
    store = ws_home / "workspaces" / wid / "secrets"
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in store.iterdir())
    volume = ws_home / "workspaces" / wid / "volume"  # the user's own /workspace files:
    image = ws_home / "workspaces" / wid / "workspace.ext4"  # (the image behind it)
    for root, _dirs, files in os.walk(ws_home):
        for name in files:
            path = Path(root) / name
            if store in path.parents or volume in path.parents or path == image:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            assert SECRET.encode() not in data, f"secret value found in {path}"


# -- snapshots and disk tools -----------------------------------------------------------------
def test_snapshots_and_stopped_disk_tools(ws_pyro: Pyro, new_workspace, tmp_path: Path) -> None:
    wid = new_workspace()["workspace_id"]
    ws_pyro.write_workspace_file(wid, "state.txt", "one\n")
    ws_pyro.create_snapshot(wid, "s1")
    ws_pyro.write_workspace_file(wid, "state.txt", "two\n")
    ws_pyro.create_snapshot(wid, "s2")
    names = [s["snapshot_name"] for s in ws_pyro.list_snapshots(wid)["snapshots"]]
    assert names == ["baseline", "s2", "s1"]
    with pytest.raises(ValueError, match="reserved"):
        ws_pyro.create_snapshot(wid, "baseline")
    with pytest.raises(ValueError, match="already exists"):
        ws_pyro.create_snapshot(wid, "s1")
    with pytest.raises(ValueError, match="cannot delete the baseline"):
        ws_pyro.delete_snapshot(wid, "baseline")
    reset = ws_pyro.reset_workspace(wid, snapshot="s1")
    assert reset["workspace_reset"]["kind"] == "named"
    assert ws_pyro.read_workspace_file(wid, "state.txt")["content"] == "one\n"
    with pytest.raises(RuntimeError, match="must be stopped"):
        ws_pyro.list_workspace_disk(wid)
    ws_pyro.stop_workspace(wid)
    listing = ws_pyro.list_workspace_disk(wid, recursive=True)
    assert [e["path"] for e in listing["entries"]] == ["/workspace/state.txt"]
    assert ws_pyro.read_workspace_disk(wid, "state.txt")["content"] == "one\n"
    with pytest.raises(ValueError, match="inside /workspace"):
        ws_pyro.read_workspace_disk(wid, "../etc/passwd")
    with pytest.raises(ValueError, match=r"^workspace path does not exist: /workspace/nosuch$"):
        ws_pyro.read_workspace_disk(wid, "nosuch")  # names /workspace, not the host volume
    with pytest.raises(ValueError, match=r"^workspace path does not exist: /workspace/nosuch$"):
        ws_pyro.list_workspace_disk(wid, "nosuch")
    image = tmp_path / "disk.ext4"
    exported = ws_pyro.export_workspace_disk(wid, output_path=str(image))
    assert exported["disk_format"] == "ext4" and image.stat().st_size > 0
    with pytest.raises(ValueError, match="already exists"):
        ws_pyro.export_workspace_disk(wid, output_path=str(image))
    assert ws_pyro.delete_snapshot(wid, "s2")["deleted"] is True
