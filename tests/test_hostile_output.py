"""Output and input that attack the limits (issue 10, items 4, 5, 12, 13), on real sandboxes.

- Output with control bytes travels as raw bytes: 2 MB of NULs comes back truncated at
  1 MiB and the workspace goes on working.
- Concurrent execs lose no byte: each command prints random data after a quiet spell longer
  than the drain's idle window, and a checksum of it on stderr.
- A sandbox whose agent stream breaks is stopped with a last_error that says why.
- Errors are one true line: command length, lone surrogates, NULs in host paths, runsc
  that cannot start.
- File reads never split a UTF-8 character and flag binary content.

Every test carries a timeout (pytest-timeout): a broken limit fails the test, never the host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT, pyro_argv
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import forget, run_cli, wait_for

pytestmark = pytest.mark.guest

ENGINES = ("gvisor", "qemu")
MIB = 1024 * 1024
# Quiet for longer than the drain's idle window (0.2 s), then data and a checksum of it.
CHECKED = (
    "echo s{i}; d=$(sleep 0.3; head -c 3000 /dev/urandom | base64 -w0); "
    "printf '%s\\n' \"$d\"; printf '%s\\n' \"$d\" | sha256sum >&2; echo ERR >&2"
)


@pytest.fixture(scope="module")
def workspaces(ws_pyro: Pyro, qemu_pyro: Pyro) -> Iterator[Callable[[str], tuple[Pyro, str]]]:
    """One workspace per engine for the module (made on first use): ``(pyro, workspace_id)``."""
    made: dict[str, tuple[Pyro, str]] = {}

    def get(engine: str) -> tuple[Pyro, str]:
        if engine not in made:
            pyro = qemu_pyro if engine == "qemu" else ws_pyro
            made[engine] = (pyro, pyro.create_workspace(environment=ENVIRONMENT)["workspace_id"])
        return made[engine]

    yield get
    for pyro, workspace_id in made.values():
        forget(pyro, workspace_id)


def assert_healthy(pyro: Pyro, workspace_id: str) -> None:
    assert pyro.exec_workspace(workspace_id, command="echo still-here")["stdout"] == "still-here\n"
    status = pyro.status_workspace(workspace_id)
    assert (status["state"], status["last_error"]) == ("started", None)


def check_round(pyro: Pyro, workspace_id: str, pool: ThreadPoolExecutor) -> list[str]:
    """Ten concurrent execs; what each lost (empty when nothing was)."""

    def one(i: int) -> str:
        result = pyro.exec_workspace(workspace_id, command=CHECKED.format(i=i))
        first, _, data = result["stdout"].partition("\n")
        digest = hashlib.sha256(data.encode()).hexdigest()
        expected = f"{digest}  -\nERR\n"
        if first != f"s{i}" or result["stderr"] != expected or result["exit_code"] != 0:
            return f"exec {i}: stdout {result['stdout'][-60:]!r} stderr {result['stderr']!r}"
        assert result["stdout_truncated"] is result["stderr_truncated"] is False
        return ""

    return [problem for problem in pool.map(one, range(10)) if problem]


# -- item 4: output with control bytes -----------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ENGINES)
def test_two_megabytes_of_nul_come_back_truncated_and_the_workspace_works(
    engine: str, workspaces: Any
) -> None:
    pyro, wid = workspaces(engine)
    result = pyro.exec_workspace(wid, command="head -c 2000000 /dev/zero; echo tail >&2")
    assert result["stdout"] == "\0" * MIB
    assert (result["stdout_truncated"], result["stderr"]) == (True, "tail\n")
    binary = pyro.exec_workspace(wid, command="cat /usr/bin/python3.11")
    assert binary["stdout_truncated"] is True and binary["exit_code"] == 0
    assert_healthy(pyro, wid)


@pytest.mark.timeout(300)
def test_cli_exec_of_nul_bytes_then_another_exec(ws_home: Path, workspaces: Any) -> None:
    _pyro, wid = workspaces("gvisor")
    flood = run_cli(
        "workspace", "exec", wid, "--json", "--", "head -c 2000000 /dev/zero", home=ws_home
    )
    assert flood.returncode == 0, flood.stderr
    result = json.loads(flood.stdout)
    assert (len(result["stdout"]), result["stdout_truncated"]) == (MIB, True)
    again = run_cli("workspace", "exec", wid, "--", "echo again", home=ws_home)
    assert (again.returncode, again.stdout) == (0, "again\n")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ENGINES)
def test_one_shot_run_of_nul_bytes(engine: str, ws_pyro: Pyro) -> None:
    with Pyro(backend_name=engine, base_dir=ws_pyro.manager.runtime.home) as pyro:
        result = pyro.run_in_vm(ENVIRONMENT, "head -c 2000000 /dev/zero")
    assert (len(result["stdout"]), result["stdout_truncated"], result["exit_code"]) == (
        MIB,
        True,
        0,
    )


# -- item 5: nothing lost under concurrency --------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("engine", "rounds"), [("gvisor", 50), ("qemu", 3)])
def test_concurrent_execs_lose_no_byte(engine: str, rounds: int, workspaces: Any) -> None:
    pyro, wid = workspaces(engine)
    with ThreadPoolExecutor(10) as pool:
        lost = [problem for _ in range(rounds) for problem in check_round(pyro, wid, pool)]
    assert lost == []
    history = pyro.logs_workspace(wid)["entries"]
    mine = [e for e in history if "sha256sum" in e["command"]]
    assert len(mine) == rounds * 10 and all(e["stderr"].endswith("ERR\n") for e in mine)


# -- a broken agent stream ------------------------------------------------------------------------

# The sandbox's root writes junk into the agent's own protocol stream (gVisor: the agent's
# dup of the host pipe; QEMU: the virtio port): a frame header the host must refuse.
JUNK = (
    "for p in /proc/[0-9]*; do grep -q pyro_guest.agent $p/cmdline 2>/dev/null || continue; "
    "for f in $p/fd/*; do case $(readlink $f) in host:*|/dev/vport*) "
    "printf '\\377\\377\\377\\377\\0\\0\\0\\0' > $f 2>/dev/null;; esac; done; done; sleep 5"
)


@pytest.mark.timeout(300)
def test_a_broken_agent_stream_stops_the_workspace_and_says_why(
    ws_pyro: Pyro, new_workspace: Any
) -> None:
    wid = new_workspace()["workspace_id"]
    with pytest.raises(RuntimeError, match="frame too large"):
        ws_pyro.exec_workspace(wid, command=JUNK, timeout_seconds=20)
    status = wait_for(
        lambda: (s := ws_pyro.status_workspace(wid))["state"] == "stopped" and s,
        timeout=30,
        what="the workspace to be stopped",
    )
    assert "the sandbox agent's stream broke (frame too large" in status["last_error"]
    with pytest.raises(RuntimeError, match="must be in 'started' state"):
        ws_pyro.exec_workspace(wid, command="true")
    ws_pyro.start_workspace(wid)
    assert_healthy(ws_pyro, wid)


# -- item 12: one true line per error --------------------------------------------------------------


@pytest.mark.timeout(300)
def test_sdk_errors_name_the_real_problem(workspaces: Any, tmp_path: Path) -> None:
    pyro, wid = workspaces("gvisor")
    for size in (5_000_000, 1_000_000, 131_072):
        with pytest.raises(ValueError, match=f"command is {size} bytes long; the limit is 131071"):
            pyro.exec_workspace(wid, command="x" * size)
    at_limit = pyro.exec_workspace(wid, command="echo " + "a" * (131_071 - 5))
    assert at_limit["exit_code"] == 0 and len(at_limit["stdout"]) == 131_067
    with pytest.raises(ValueError, match=r"command is not valid UTF-8 text \(lone surrogate"):
        pyro.exec_workspace(wid, command="echo \ud800")
    with pytest.raises(ValueError, match=r"text is not valid UTF-8 text \(lone surrogate"):
        pyro.write_workspace_file(wid, "a.txt", text="\udcff")
    shell = pyro.open_shell(wid)["shell_id"]
    with pytest.raises(ValueError, match=r"input is not valid UTF-8 text \(lone surrogate"):
        pyro.write_shell(wid, shell, input="echo \ud800")
    pyro.close_shell(wid, shell)
    with pytest.raises(ValueError, match="output_path must not contain NUL characters"):
        pyro.export_workspace(wid, "/workspace", output_path=str(tmp_path / "a\0b"))
    with pytest.raises(ValueError, match="output_path is 5001 bytes long; the limit is 4096"):
        pyro.export_workspace(wid, "/workspace", output_path="/" + "a" * 5000)
    with pytest.raises(ValueError, match="command is 200005 bytes long"):
        pyro.run_in_vm(ENVIRONMENT, "echo " + "a" * 200_000)
    assert_healthy(pyro, wid)  # none of it reached the sandbox


@pytest.mark.timeout(300)
def test_cli_errors_name_the_real_problem(ws_home: Path, workspaces: Any) -> None:
    _pyro, wid = workspaces("gvisor")
    words = ["echo", "a" * 100_000, "b" * 100_000]  # one argv string is capped at 128 KiB
    refused = run_cli("workspace", "exec", wid, "--json", "--", *words, home=ws_home)
    assert refused.returncode == 1, refused
    assert json.loads(refused.stdout) == {
        "ok": False,
        "error": "command is 200006 bytes long; the limit is 131071 bytes",
    }
    # A byte that is not UTF-8 in argv arrives as a lone surrogate.
    env = {**os.environ, "PYRO_HOME": str(ws_home)}
    argv = [os.fsencode(a) for a in [*pyro_argv(), "workspace", "exec", wid, "--json", "--"]]
    proc = subprocess.run(
        [*argv, b"echo", b"\xff"],
        capture_output=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr, proc
    assert json.loads(proc.stdout)["error"].startswith("command is not valid UTF-8 text")
    human = run_cli("workspace", "exec", wid, "--", *words, home=ws_home)
    assert human.returncode == 1
    assert human.stderr_lines == ["[error] command is 200006 bytes long; the limit is 131071 bytes"]


@pytest.mark.timeout(300)
def test_runsc_that_cannot_start_is_an_error_not_an_exit_code(ws_home: Path, ws_pyro: Pyro) -> None:
    env = {**os.environ, "PYRO_HOME": str(ws_home), "PYRO_GVISOR_PLATFORM": "no-such-platform"}
    proc = subprocess.run(
        [*pyro_argv(), "run", ENVIRONMENT, "--engine", "gvisor", "--json", "--", "exit 7"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout
    error = json.loads(proc.stdout)["error"]
    assert error == "gVisor could not run the command: unknown platform: no-such-platform"
    # A command that itself exits 128 is not mistaken for runsc failing.
    result = ws_pyro.run_in_vm(ENVIRONMENT, "echo ran; exit 128")
    assert (result["stdout"], result["exit_code"]) == ("ran\n", 128)


# -- item 13: file reads say what they returned ---------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ENGINES)
def test_file_read_never_splits_a_character_and_flags_binary(engine: str, workspaces: Any) -> None:
    pyro, wid = workspaces(engine)
    pyro.write_workspace_file(wid, "euro.txt", text="ab€cd")  # € is 3 bytes: 2..4
    for max_bytes, content in ((3, "ab"), (4, "ab"), (5, "ab€"), (7, "ab€cd")):
        read = pyro.read_workspace_file(wid, "euro.txt", max_bytes=max_bytes)
        assert (read["content"], read["binary"]) == (content, False), max_bytes
        assert read["returned_bytes"] == len(content.encode())
        assert read["truncated"] is (max_bytes < 7)
    pyro.exec_workspace(wid, command="printf 'PNG\\0\\377\\376x' > blob.bin")
    text = pyro.read_workspace_file(wid, "blob.bin")
    assert (text["binary"], text["encoding"], text["returned_bytes"]) == (True, "utf-8", 7)
    assert text["content"] == "PNG\0\ufffd\ufffdx"
    raw = pyro.read_workspace_file(wid, "blob.bin", encoding="base64")
    assert base64.b64decode(raw["content"]) == b"PNG\0\xff\xfex"
    assert (raw["binary"], raw["encoding"], raw["size_bytes"]) == (True, "base64", 7)
    with pytest.raises(ValueError, match="encoding must be one of utf-8, base64"):
        pyro.read_workspace_file(wid, "blob.bin", encoding="latin-1")
