"""The pre-started shell behind exec (guest/prestart.py), on this host's dash: whatever it
runs must look exactly like ``/bin/sh -lc <command>``, and every case it cannot serve must
fall back to starting that shell."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp.guest import execution
from pyro_mcp.guest.prestart import SCRIPT_LIMIT, NextShell, discard, script_for, shell_is_dash
from pyro_mcp.guest.protocol import split_output

pytestmark = pytest.mark.skipif(not shell_is_dash(), reason="the pre-started shell is dash-only")

# Each must give the same exit code, stdout and stderr both ways: quoting, syntax and
# expansion errors with their line numbers, $0/$#/$-, the whole variable set and
# environment, stdin, fds, signal dispositions, sessions, traps, exit paths.
PROBES = [
    "true",
    "false",
    "exit 7",
    "exit 300",
    "exit",
    "echo $0 $# [$-] $?",
    "set",
    "env | sort",
    "echo a\\",
    "echo a \\\necho b",
    "nosuch",
    "foo(",
    "echo 'unterminated",
    "echo a\necho b\nfoo(\necho c",
    "echo a\n\n\nnosuch",
    "echo a\nset -u\necho $zz",
    "echo $LINENO\necho $LINENO",
    "; echo x",
    "&& echo",
    "# comment\necho d",
    "\\\necho hi",
    "echo ${x?unset}",
    "readonly X=1; X=2",
    "echo $((1+)",
    "`",
    "}",
    "if",
    "return 5",
    "f() { return 3; }; f; echo $?",
    "set -e; false; echo no",
    "trap 'echo bye' EXIT; echo hi",
    "trap",
    "cat <<EOF\nx $HOME\nEOF",
    "cat <<'E'\n$x\nE\necho $?",
    "cat; read x; echo read=$?",
    "readlink /proc/self/fd/0; ls /proc/self/fd | wc -l",
    "grep -E '^Sig(Ign|Blk)' /proc/self/status",
    "(yes; echo yes=$? >&2) | head -1",
    "s=$(cut -d' ' -f6 /proc/$$/stat); [ $s = $$ ] && echo session-leader",
    "kill -TERM $$",
    "echo é ✓; printf 'no newline'",
    "echo $HOME $PATH $PWD ${OLDPWD-unset}",
    "set -- a b; echo $#",
    "x=1; type __pyro 2>&1; echo ${c-unset}${l-unset}${n-unset}",
    "echo $?",
    "",
]

# These go to `sh -lc` (the waiting shell is left waiting) and must of course act the same:
# a shell reading its script from stdin reads on from wherever its fd 0 points when the
# script ends, `set -v` would echo the script, and `sh -lc` takes a leading -/+ as options.
FALLBACK_PROBES = [
    "exec echo replaced",
    "printf 'first\\necho INJECTED\\n' > notes; exec <notes; read t; echo title=$t",
    "exec 0<<EOF\nread-me\necho FROM-HEREDOC\nEOF\nread x; echo got $x",
    "exec 0</dev/zero; echo z",
    "exec 0<&-; echo closed",
    "eval 'exec </etc/hostname'; echo e",
    "alias e=echo\ne hi",
    "-x",
    "--version",
    "+x",
    "set -v\necho a\necho b",
    "set -ev; echo a",
    "set -o verbose; echo a",
]


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[NextShell]:
    """execution's NEXT_SHELL, enabled for this test and emptied after it."""
    shell = execution.NEXT_SHELL
    shell.enable()
    try:
        yield shell
    finally:
        shell.enabled = False
        with shell._cond:
            waiting, shell._proc, shell._key = shell._proc, None, None
        discard(waiting)


def _args(command: str, cwd: Path) -> dict[str, Any]:
    return {"command": command, "cwd": str(cwd), "timeout_seconds": 10}


def _run(command: str, cwd: Path) -> tuple[int, str, str]:
    result = split_output(*execution.run_command(_args(command, cwd), lambda kind, chunk: None))
    return result["exit_code"], result["stdout"], result["stderr"]


def _ready(shell: NextShell, cwd: Path) -> None:
    """Start the waiting shell and wait until it is there."""
    execution.prepare_next(_args("", cwd))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with shell._cond:
            if shell._proc is not None and not shell._starting:
                return
        time.sleep(0.005)
    raise AssertionError("the next shell never started")


def _as_sh_lc(shell: NextShell, command: str, cwd: Path) -> tuple[int, str, str]:
    """The same command with no waiting shell: plain `/bin/sh -lc`."""
    shell.enabled = False
    try:
        return _run(command, cwd)
    finally:
        shell.enabled = True


def _home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands run with HOME=``home`` (a fresh, empty directory)."""
    home.mkdir()
    monkeypatch.setattr(execution, "base_env", lambda extra: {"HOME": str(home), "PATH": "/bin"})
    return home


def _waiting_pid(shell: NextShell) -> int:
    with shell._cond:
        assert shell._proc is not None
        return shell._proc.pid


def test_prestarted_shell_runs_exactly_what_sh_lc_runs(shell: NextShell, tmp_path: Path) -> None:
    for probe in PROBES:
        _ready(shell, tmp_path)
        pid = _waiting_pid(shell)
        got = _run(probe + "\necho shell-pid=$$ >&2" if probe == "true" else probe, tmp_path)
        if probe == "true":
            assert got[2] == f"shell-pid={pid}\n", "the waiting shell did not run the command"
            continue
        assert shell._proc is None, f"{probe!r} did not use the waiting shell"
        want = _as_sh_lc(shell, probe, tmp_path)
        assert got == want, f"{probe!r}: pre-started {got!r} != sh -lc {want!r}"


def test_what_could_read_on_past_the_script_runs_as_sh_lc(shell: NextShell, tmp_path: Path) -> None:
    for probe in FALLBACK_PROBES:
        _ready(shell, tmp_path)
        pid = _waiting_pid(shell)
        got = _run(probe, tmp_path)
        assert _waiting_pid(shell) == pid, f"{probe!r} used the waiting shell"
        want = _as_sh_lc(shell, probe, tmp_path)
        assert got == want, f"{probe!r}: {got!r} != sh -lc {want!r}"
        assert "INJECTED" not in got[1] and "FROM-HEREDOC" not in got[1]


def test_a_stopped_waiting_shell_is_not_used(shell: NextShell, tmp_path: Path) -> None:
    _ready(shell, tmp_path)
    stopped = _waiting_pid(shell)
    os.kill(stopped, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while _state(stopped) != "T" and time.monotonic() < deadline:  # the stop takes a moment
        time.sleep(0.01)
    assert _state(stopped) == "T"
    started = time.monotonic()
    assert _run("echo $$", tmp_path)[1] != f"{stopped}\n"
    assert time.monotonic() - started < 5, "the exec waited on a stopped shell"
    assert _pid_gone(stopped)


def test_status_is_0_without_a_profile(
    shell: NextShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _home(tmp_path / "empty-home", monkeypatch)
    for probe in ("echo $?", "exit"):
        _ready(shell, tmp_path)
        got = _run(probe, tmp_path)
        assert shell._proc is None, "the waiting shell was not used"
        assert got == _as_sh_lc(shell, probe, tmp_path)


def test_the_login_profile_is_read_when_the_command_runs(
    shell: NextShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _home(tmp_path / "home", monkeypatch)
    _ready(shell, tmp_path)
    (home / ".profile").write_text("PROFILE_SEEN=late\n")  # after the shell started
    assert _run("echo $PROFILE_SEEN", tmp_path) == (0, "late\n", "")
    assert shell._proc is None


def test_what_it_cannot_serve_starts_sh_lc(shell: NextShell, tmp_path: Path) -> None:
    # Too long for one pipe write: the usual shell, the waiting one left for later.
    _ready(shell, tmp_path)
    pid = _waiting_pid(shell)
    long = "echo " + "x" * SCRIPT_LIMIT
    assert script_for(long) is None
    assert _run(long + " | wc -c", tmp_path) == (0, f"{SCRIPT_LIMIT + 1}\n", "")
    assert _waiting_pid(shell) == pid
    # Another directory: not this shell.
    other = tmp_path / "other"
    other.mkdir()
    assert _run("pwd", other) == (0, f"{other}\n", "")
    assert _waiting_pid(shell) == pid


def test_a_replaced_directory_or_dead_shell_is_never_used(shell: NextShell, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _ready(shell, work)
    old = _waiting_pid(shell)
    shutil.rmtree(work)
    work.mkdir()  # same path, another directory: the waiting shell sits in the old one
    (work / "marker").write_text("")
    assert _run("ls", work) == (0, "marker\n", "")
    assert _pid_gone(old), "the shell in the replaced directory was not discarded"
    _ready(shell, work)
    killed = _waiting_pid(shell)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _state(killed) != "Z" and time.monotonic() < deadline:  # dead, not yet reaped
        time.sleep(0.01)
    assert _run("echo still-runs", work) == (0, "still-runs\n", "")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_concurrent_execs_each_run_once(shell: NextShell, tmp_path: Path) -> None:
    _ready(shell, tmp_path)
    results: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        got = _run(f"echo run-{index}", tmp_path)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == sorted((0, f"run-{i}\n", "") for i in range(6))


def test_timeout_kills_the_prestarted_shell_and_keeps_partial_output(
    shell: NextShell, tmp_path: Path
) -> None:
    _ready(shell, tmp_path)
    args = _args("echo before; sleep 30", tmp_path)
    args["timeout_seconds"] = 1
    started = time.monotonic()
    result = split_output(*execution.run_command(args, lambda kind, chunk: None))
    assert time.monotonic() - started < 10
    assert result["timed_out"] and result["exit_code"] == 124
    assert result["stdout"] == "before\n"
