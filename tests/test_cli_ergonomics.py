"""CLI flags that replace shell glue (issue 14c), and the build progress display.

``--id-only`` (workspace create, shell open), ``--content-only`` (file read, disk read),
``--text-file`` (file write) and ``--patch-file`` (patch apply) are CLI-only: declared on the
operations (registry.py ``Param.cli_file`` and ``@operation(cli_outputs=…)``), never MCP
arguments. The guest tests drive the real CLI against one real workspace.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from pyro_mcp import Pyro
from pyro_mcp.api import operations
from pyro_mcp.cli.output import BuildProgress
from pyro_mcp.cli.progress import STEPS, BuildBar
from pyro_mcp.mcp.server import create_server, tools_for_profile
from pyro_mcp.validation import MAX_TEXT_BYTES
from support import ENVIRONMENT, CliResult, pyro_argv
from workspace_fixtures import *  # noqa: F403
from workspace_fixtures import run_cli

CLI_ONLY = {
    "create_workspace": {"--id-only"},
    "open_shell": {"--id-only"},
    "read_workspace_file": {"--content-only"},
    "read_workspace_disk": {"--content-only"},
    "write_workspace_file": {"--text-file"},
    "apply_workspace_patch": {"--patch-file"},
}
WORKSPACE_ID = re.compile(r"^[0-9a-f]{12}\n$")


def _declared_cli_only(op_name: str) -> set[str]:
    op = next(op for op in operations() if op.name == op_name)
    return {o.flag for o in op.cli_outputs} | {
        p.meta.cli_file for p in op.params if p.meta.cli_file
    }


@pytest.mark.parametrize("op_name", sorted(CLI_ONLY))
def test_cli_only_flags_are_declared_and_never_mcp_arguments(op_name: str) -> None:
    assert _declared_cli_only(op_name) == CLI_ONLY[op_name]
    op = next(op for op in tools_for_profile("workspace-full") if op.name == op_name)
    server = create_server(Pyro(), profile="workspace-full")
    tools = {tool.name: tool for tool in asyncio.run(server.list_tools())}
    properties = set(tools[op.mcp_name or ""].inputSchema.get("properties", {}))
    assert properties  # the tool has arguments; none of them is a CLI-only flag
    for flag in CLI_ONLY[op_name]:
        assert flag.removeprefix("--").replace("-", "_") not in properties, properties


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["workspace", "create", "--id-only", "--json"], "not allowed with argument"),
        (["workspace", "file", "write", "0123456789ab", "a", "--text", "x", "--text-file", "f"],
         "not allowed with argument"),
        (["workspace", "file", "write", "0123456789ab", "a"], "one of the arguments"),
        (["workspace", "patch", "apply", "0123456789ab"], "one of the arguments"),
    ],
)  # fmt: skip
def test_flag_misuse_is_a_usage_error(run_pyro, args: list[str], message: str) -> None:
    result = run_pyro(*args)
    assert result.returncode == 2, result
    if "--json" in args:  # the error is JSON on stdout
        assert result.stderr == "" and message in json.loads(result.stdout)["error"]
    else:
        assert len(result.stderr_lines) == 1 and message in result.stderr, result.stderr


# -- the build's progress ---------------------------------------------------------------


def _feed(progress: object) -> None:
    for phase, detail in [
        ("install", "building debian:12 into /x"),
        ("rootfs", "mmdebstrap bookworm + git"),
        ("detail", "Retrieving Packages"),
        *((step, f"{step} work") for step in STEPS[1:]),
        ("ready", "debian:12 installed at /x"),
    ]:
        progress(phase, detail)  # type: ignore[operator]


def test_build_progress_off_a_terminal_prints_pull_lines(capsys) -> None:
    progress = BuildProgress("pull")
    _feed(progress)
    progress.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[pull] phase=install building debian:12 into /x"
    assert "[pull]   Retrieving Packages" in err
    assert err[-1] == "[pull] phase=ready debian:12 installed at /x"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_build_progress_on_a_terminal_draws_a_bar(monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("COLUMNS", "100")
    progress = BuildProgress("pull")
    _feed(progress)
    assert progress.bar is not None and not progress.bar.running  # "ready" ended it
    progress.close()
    text = terminal.getvalue()
    assert "━" in text and "[pull] phase=ready debian:12 installed at /x" in text
    assert "[pull]   Retrieving Packages" not in text  # details go beside the bar


def test_build_bar_on_a_terminal_walks_the_phases() -> None:
    out = io.StringIO()
    bar = BuildBar(Console(file=out, force_terminal=True, width=100))
    seen = []
    real_update = bar.progress.update

    def update(task: object, **fields: object) -> None:
        seen.append(fields.get("completed"))
        real_update(task, **fields)  # type: ignore[arg-type]

    bar.progress.update = update  # type: ignore[method-assign]
    _feed(bar.update)
    bar.close()
    text = out.getvalue()
    assert "━" in text  # the bar was drawn
    assert "[pull] phase=install building debian:12" in text
    assert "[pull] phase=ready debian:12 installed at /x" in text
    assert [c for c in seen if c is not None] == [*range(len(STEPS)), len(STEPS)]
    assert not bar.running


def test_the_cli_start_does_not_import_rich(tmp_path: Path) -> None:
    env = {**os.environ, "PYRO_HOME": str(tmp_path), "PYRO_CLI_HELPER": "0"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from pyro_mcp.cli import main; main()",
         "workspace", "list"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pyro_mcp.cli.main" in proc.stderr  # importtime did report
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {m for m in imported if m == "rich" or m.startswith("rich.")}


# -- the flags, on a real workspace -----------------------------------------------------


def _cli(*args: str, home: Path, stdin: bytes | None = None) -> CliResult:
    env = {**os.environ, "PYRO_HOME": str(home), "PYRO_ENGINE": "gvisor"}
    proc = subprocess.run(
        [*pyro_argv(), *args], input=stdin or b"", capture_output=True, env=env,
        timeout=120, check=False,
    )  # fmt: skip
    out = proc.stdout.decode("utf-8", "surrogateescape")
    return CliResult(proc.returncode, out, proc.stderr.decode(errors="replace"), 0.0)


@pytest.fixture(scope="module")
def cli_ws(ws_home: Path) -> Iterator[str]:
    result = run_cli("workspace", "create", ENVIRONMENT, "--id-only", home=ws_home)
    assert result.returncode == 0, result.stderr
    assert WORKSPACE_ID.match(result.stdout), repr(result.stdout)  # the id alone
    yield result.stdout.strip()
    run_cli("workspace", "delete", result.stdout.strip(), home=ws_home)


@pytest.mark.guest
def test_id_only_prints_just_the_id(cli_ws: str, ws_home: Path) -> None:
    status = run_cli("workspace", "status", cli_ws, home=ws_home)
    assert status.returncode == 0 and f"workspace_id: {cli_ws}" in status.stdout
    shell = run_cli("workspace", "shell", "open", cli_ws, "--id-only", home=ws_home)
    assert shell.returncode == 0 and WORKSPACE_ID.match(shell.stdout), shell
    closed = run_cli("workspace", "shell", "close", cli_ws, shell.stdout.strip(), home=ws_home)
    assert closed.returncode == 0 and "closed=True" in closed.stdout


@pytest.mark.guest
def test_text_file_and_content_only(cli_ws: str, ws_home: Path, host_dir: Path) -> None:
    text = "first line\nsecond — ünïcode\n"
    (host_dir / "note.txt").write_text(text)
    wrote = run_cli(
        "workspace", "file", "write", cli_ws, "note.txt", "--text-file", str(host_dir / "note.txt"),
        home=ws_home,
    )  # fmt: skip
    assert wrote.returncode == 0 and f"bytes_written={len(text.encode())}" in wrote.stdout
    read = _cli("workspace", "file", "read", cli_ws, "note.txt", "--content-only", home=ws_home)
    assert (read.returncode, read.stdout, read.stderr) == (0, text, "")
    piped = _cli(
        "workspace", "file", "write", cli_ws, "piped.txt", "--text-file", "-",
        home=ws_home, stdin=b"from stdin\n",
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    read = _cli("workspace", "file", "read", cli_ws, "piped.txt", "--content-only", home=ws_home)
    assert read.stdout == "from stdin\n"


@pytest.mark.guest
def test_content_only_gives_binary_bytes_exactly(cli_ws: str, ws_home: Path) -> None:
    made = run_cli(
        "workspace", "exec", cli_ws, "--", r"printf '\000\001\377ab' > blob", home=ws_home
    )
    assert made.returncode == 0, made.stderr
    env = {**os.environ, "PYRO_HOME": str(ws_home), "PYRO_ENGINE": "gvisor"}
    proc = subprocess.run(
        [*pyro_argv(), "workspace", "file", "read", cli_ws, "blob", "--content-only"],
        capture_output=True, env=env, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"\x00\x01\xffab", b"")
    cut = _cli("workspace", "file", "read", cli_ws, "blob", "--content-only", "--max-bytes", "2",
               home=ws_home)  # fmt: skip
    assert cut.returncode == 0 and cut.stdout == "\x00\x01"
    assert "stops at 2 bytes" in cut.stderr  # a cut file is never silently short


@pytest.mark.guest
def test_patch_file(cli_ws: str, ws_home: Path, host_dir: Path) -> None:
    run_cli("workspace", "file", "write", cli_ws, "msg.txt", "--text", "broken\n", home=ws_home)
    patch = "--- a/msg.txt\n+++ b/msg.txt\n@@ -1 +1 @@\n-broken\n+fixed\n"
    (host_dir / "fix.patch").write_text(patch)
    applied = run_cli(
        "workspace", "patch", "apply", cli_ws, "--patch-file", str(host_dir / "fix.patch"),
        home=ws_home,
    )  # fmt: skip
    assert applied.returncode == 0 and "modified=1" in applied.stdout, applied.stderr
    read = _cli("workspace", "file", "read", cli_ws, "msg.txt", "--content-only", home=ws_home)
    assert read.stdout == "fixed\n"


@pytest.mark.guest
def test_bad_files_are_one_line_errors(cli_ws: str, ws_home: Path, host_dir: Path) -> None:
    (host_dir / "bin").write_bytes(b"ok\xff\xfe")
    with (host_dir / "huge").open("wb") as handle:  # sparse: never read whole
        handle.truncate(64 * MAX_TEXT_BYTES)
    cases = {
        str(host_dir / "missing"): "No such file or directory",
        str(host_dir / "bin"): "not UTF-8 text (byte 2)",
        str(host_dir / "huge"): f"the file is longer than the limit of {MAX_TEXT_BYTES} bytes",
        str(host_dir): "Is a directory",
    }
    for path, message in cases.items():
        result = run_cli("workspace", "file", "write", cli_ws, "x", "--text-file", path,
                         home=ws_home, timeout=30)  # fmt: skip
        assert result.returncode == 1, (path, result)
        assert result.stderr_lines == [f"[error] --text-file {path}: {message}"]
    listed = run_cli("workspace", "file", "list", cli_ws, home=ws_home)
    assert "/workspace/x" not in listed.stdout  # nothing was written


@pytest.mark.guest
def test_disk_read_content_only(cli_ws: str, ws_home: Path) -> None:
    wrote = run_cli("workspace", "file", "write", cli_ws, "d.txt", "--text", "on disk\n",
                    home=ws_home)  # fmt: skip
    assert wrote.returncode == 0
    assert run_cli("workspace", "stop", cli_ws, home=ws_home).returncode == 0
    read = _cli("workspace", "disk", "read", cli_ws, "d.txt", "--content-only", home=ws_home)
    assert (read.returncode, read.stdout, read.stderr) == (0, "on disk\n", "")
