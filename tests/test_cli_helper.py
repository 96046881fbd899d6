"""The warm CLI helper (cli/launch.py, cli/helper.py): same results as an in-process run,
signals forwarded, nothing left behind, other users and stale code refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp import paths
from pyro_mcp.cli import helper, launch
from support import (
    ENVIRONMENT,
    as_at_a_terminal,
    processes_mentioning,
    pyro_argv,
    short_tmp_dir,
    stop_cli_helpers,
)

# Runs the launcher in a fresh interpreter and reports on stderr whether the CLI itself was
# imported in that process (it is not when the helper ran the command).
PROBE = (
    "import atexit, os, sys\n"
    "def report():\n"
    "    used = 'IN-PROCESS' if 'pyro_mcp.cli.main' in sys.modules else 'HELPER'\n"
    "    sys.stderr.write('\\n' + used + '\\n'); sys.stderr.flush()\n"
    "real_exit = os._exit\n"
    "os._exit = lambda code: (report(), real_exit(code))\n"  # the helper path ends so
    "atexit.register(report)\n"
    "from pyro_mcp.cli.launch import main\n"
    "sys.argv = ['pyro', *sys.argv[1:]]\n"
    "main()\n"
)


HELPER = [sys.executable, "-P", "-m", "pyro_mcp.cli.helper"]


@pytest.fixture
def home() -> Iterator[Path]:
    path = short_tmp_dir("pyro-helper-")
    yield path
    stop_cli_helpers(path, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYRO_HOME": str(home), "PYRO_CLI_HELPER": "1", **extra}
    return env


def probe(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env_for(home, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home if home.exists() else home.parent,
    )


def wait_for_helper(home: Path) -> None:
    deadline = time.monotonic() + 20
    while not (home / launch.HELPER_SOCKET).exists():
        assert time.monotonic() < deadline, "no helper started"
        time.sleep(0.05)


def test_home_dir_matches_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in (
        {"PYRO_HOME": "/srv/pyro"},
        {"PYRO_HOME": "~/state"},
        {"XDG_DATA_HOME": "/data"},
        {},
    ):
        for name in ("PYRO_HOME", "XDG_DATA_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert launch.home_dir() == str(paths.home_dir())


def test_command_word_and_who_uses_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    assert launch.command_word(["--engine", "gvisor", "run", "x"]) == "run"
    assert launch.command_word(["--", "run"]) is None
    monkeypatch.setenv("PYRO_CLI_HELPER", "1")
    assert launch.helper_wanted(["run", "debian:12"])
    assert not launch.helper_wanted(["mcp", "serve"])  # long-lived: always in-process
    monkeypatch.setenv("PYRO_CLI_HELPER", "0")
    assert not launch.helper_wanted(["run", "debian:12"])


@pytest.mark.guest
def test_results_through_the_helper_match_in_process(home: Path) -> None:
    first = probe(home, "run", ENVIRONMENT, "--engine", "gvisor", "--", "echo one")
    assert (first.returncode, first.stdout) == (0, "one\n")
    assert first.stderr.endswith("IN-PROCESS\n")
    wait_for_helper(home)
    assert (home / launch.HELPER_SOCKET).stat().st_mode & 0o777 == 0o600

    ran = probe(
        home, "run", ENVIRONMENT, "--engine", "gvisor", "--", "echo out; echo err >&2; exit 3"
    )
    assert (ran.returncode, ran.stdout) == (3, "out\n")
    assert "err\n" in ran.stderr and "exit_code=3" in ran.stderr
    assert ran.stderr.endswith("HELPER\n")

    usage = probe(home, "run", ENVIRONMENT, "--vcpu-count", "x")
    assert usage.returncode == 2 and "invalid int value" in usage.stderr
    assert usage.stderr.endswith("HELPER\n")
    # The caller's environment and working directory are the command's, not the helper's.
    engine = probe(home, "run", ENVIRONMENT, "--", "true", PYRO_ENGINE="bogus")
    assert engine.returncode == 1 and "unknown engine 'bogus'" in engine.stderr
    assert engine.stderr.endswith("HELPER\n")
    (home / "seed").mkdir()
    (home / "seed" / "a.txt").write_text("from cwd\n")
    created = probe(home, "workspace", "create", ENVIRONMENT, "--seed-path", "seed", "--json")
    assert created.returncode == 0, created.stderr
    assert created.stderr.endswith("HELPER\n")
    wid = json.loads(created.stdout)["workspace_id"]
    try:
        read = probe(home, "workspace", "file", "read", wid, "a.txt")
        assert read.stdout == "from cwd\n" and read.stderr.endswith("HELPER\n")
    finally:
        assert probe(home, "workspace", "delete", wid).returncode == 0


@pytest.mark.guest
def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.append(pid)
    return found


def test_ctrl_c_and_a_killed_caller_stop_the_command_and_its_sandbox(home: Path) -> None:
    probe(home, "--version")
    wait_for_helper(home)
    for how in (signal.SIGINT, signal.SIGHUP, signal.SIGKILL):
        caller = subprocess.Popen(
            [*pyro_argv(), "run", ENVIRONMENT, "--engine", "gvisor", "--", "sleep 60"],
            env=env_for(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=as_at_a_terminal,
        )
        deadline = time.monotonic() + 20
        while not [p for p in processes_mentioning(str(home / "runtime")) if "runsc" in p]:
            assert time.monotonic() < deadline, "the sandbox never started"
            time.sleep(0.05)
        runsc = [p for p in processes_mentioning(str(home / "runtime")) if "runsc" in p]
        assert caller.pid not in _ancestors(int(runsc[0].split()[0])), "not run by the helper"
        caller.send_signal(how)
        _out, err = caller.communicate(timeout=30)
        if how == signal.SIGINT:
            assert caller.returncode == 130 and "interrupted" in err
        deadline = time.monotonic() + 20
        while [p for p in processes_mentioning(str(home / "runtime")) if "runsc" in p]:
            assert time.monotonic() < deadline, f"a sandbox outlived the caller ({how.name})"
            time.sleep(0.1)


def test_other_users_stale_code_and_idle_end_the_helper(home: Path) -> None:
    server = subprocess.Popen(
        [*HELPER, "--home", str(home), "--idle-seconds", "120"],  # only stale may end it
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_helper(home)
        sock_path = str(home / launch.HELPER_SOCKET)

        # Another user cannot connect (the socket is 0600 in a 0700 directory).
        assert os.geteuid() == 0, "this check needs root to act as another user"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
            except OSError:
                os._exit(2)  # could not become the other user: the check did not happen
            try:
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(sock_path)
                code = 0
            except PermissionError:
                code = 13
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 13
        # A second helper for the same home steps aside at once.
        second = subprocess.run(
            [*HELPER, "--home", str(home)],
            timeout=30,
        )
        assert second.returncode == 0
        # A caller on another Python (or after an upgrade) is told to run the command itself.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        body = launch.encode_request(["--version"], "/", {}, "/other/python", [])
        socket.send_fds(sock, [len(body).to_bytes(4, "big") + body], [0, 1, 2])
        assert sock.makefile("rb").readline() == b"stale\n"
        sock.close()
        assert server.wait(timeout=10) == 0
        assert server.stderr is not None
        assert "exiting: the caller runs /other/python" in server.stderr.read()
        assert not (home / launch.HELPER_SOCKET).exists()
    finally:
        server.kill()
        server.wait()
    # Idle: a helper with nothing to do ends by itself.
    idle = subprocess.Popen(
        [*HELPER, "--home", str(home), "--idle-seconds", "0.5"],
    )
    assert idle.wait(timeout=30) == 0


def test_code_stamp_sees_an_edit(tmp_path: Path) -> None:
    before = helper.code_stamp()
    target = Path(helper.__file__)
    stat = target.stat()
    try:
        os.utime(target, (stat.st_atime, before[0] + 10))  # newer than every file
        assert helper.code_stamp() != before
    finally:
        os.utime(target, (stat.st_atime, stat.st_mtime))
    assert helper.code_stamp() == before


def test_request_encoding_round_trips_awkward_values() -> None:
    argv = ["run", "", "--", "echo 'a b'\nnext", "x=y", os.fsdecode(b"\xff\xfe")]
    env = {"A": "1=2", "EMPTY": "", "NL": "line\nline", "BYTES": os.fsdecode(b"caf\xe9")}
    encoded = launch.encode_request(argv, "/tmp/a b", env, "/py", [2, 1])
    assert launch.decode_request(encoded) == {
        "python": "/py",
        "cwd": "/tmp/a b",
        "ignored": [2, 1],
        "argv": argv,
        "env": env,
    }
    for bad in (b"", b"/py\0/\0\0", b"/py\0/\0\0x", b"/py\0/\0\x003\0one", b"/\0/\0x\x000"):
        with pytest.raises(ValueError):
            launch.decode_request(bad)


def test_line_reader_keeps_what_follows_a_line() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"pid 7\nexit 3\n")  # both lines in one read: the second must not be lost
    theirs.close()
    reader = launch.LineReader(ours)
    assert (reader.line(), reader.line(), reader.line()) == (b"pid 7\n", b"exit 3\n", b"")


def test_only_a_private_home_gets_a_helper(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    assert launch.private_home(str(home))
    home.chmod(0o777)  # a shared directory: anyone could plant a socket or a log symlink
    assert not launch.private_home(str(home))
    home.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(home)
    assert not launch.private_home(str(link))
    assert not launch.private_home(str(tmp_path / "missing"))


@pytest.mark.guest
def test_a_shared_home_is_never_used_or_served(tmp_path: Path) -> None:
    shared = short_tmp_dir("pyro-shared-")
    try:
        shared.chmod(0o777)
        planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        planted.bind(str(shared / launch.HELPER_SOCKET))  # someone else's "helper"
        planted.listen(1)
        planted.settimeout(0.5)
        ran = probe(shared, "--version")
        assert (ran.returncode, ran.stdout) == (0, "pyro 3.6.0\n")
        assert ran.stderr.endswith("IN-PROCESS\n")
        with pytest.raises(TimeoutError):
            planted.accept()  # nobody even connected
        planted.close()
        assert not processes_mentioning(f"--home {shared}"), "a helper started in a shared home"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.guest
def test_a_confined_caller_runs_its_command_itself(home: Path) -> None:
    probe(home, "--version")
    wait_for_helper(home)
    import ctypes

    def no_new_privs() -> None:  # what Landlock and many sandboxes set
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS

    confined = subprocess.run(
        [sys.executable, "-c", PROBE, "--version"],
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=no_new_privs,
    )
    assert (confined.returncode, confined.stdout) == (0, "pyro 3.6.0\n")
    assert confined.stderr.endswith("IN-PROCESS\n")
    assert "another NoNewPrivs" in (home / launch.HELPER_LOG).read_text()
    assert probe(home, "--version").stderr.endswith("HELPER\n")  # still serving the others


def test_callers_it_turns_away_do_not_keep_the_helper_alive(home: Path) -> None:
    """Only a command served counts as activity: a helper that serves nobody still ends."""
    import ctypes

    def no_new_privs() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS

    server = subprocess.Popen(
        [*HELPER, "--home", str(home), "--idle-seconds", "1.5"], stdin=subprocess.DEVNULL
    )
    try:
        wait_for_helper(home)
        started = time.monotonic()
        while server.poll() is None and time.monotonic() - started < 20:
            turned_away = subprocess.run(
                [sys.executable, "-c", PROBE, "--version"],
                env=env_for(home),
                capture_output=True,
                text=True,
                timeout=60,
                preexec_fn=no_new_privs,
            )
            assert turned_away.stderr.endswith("IN-PROCESS\n")
        assert server.poll() == 0, "turned-away callers kept the helper alive"
        assert time.monotonic() - started < 10
    finally:
        server.kill()
        server.wait()


def test_a_first_command_starts_a_helper_in_a_home_that_does_not_exist_yet(home: Path) -> None:
    fresh = home / "new"
    ran = probe(fresh, "--version")  # makes no state of its own
    assert (ran.returncode, ran.stdout) == (0, "pyro 3.6.0\n")
    wait_for_helper(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o700
    assert probe(fresh, "--version").stderr.endswith("HELPER\n")
