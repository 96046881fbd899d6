"""The ``pyro`` entry point: hand the command to a warm helper when one is running.

Starting Python and importing the CLI costs ~100 ms, more than half a gVisor one-shot run.
A helper (``cli/helper.py``) keeps the CLI imported for a minute after the last command and
forks a child per command; this process only passes it the command line, the working
directory, the environment and its own stdin/stdout/stderr (SCM_RIGHTS), forwards Ctrl-C
and other signals, and exits with the child's exit code. The child writes to the same
terminal or pipes directly, so output, exit codes and errors are those of an in-process run.

No helper (or ``PYRO_CLI_HELPER=0``, or ``pyro mcp …``, which is long-lived): the command
runs in this process, and a helper is started for next time.

This module imports only built-in modules for the hand-over (``_socket`` and ``_signal``,
not ``socket``/``signal``/``json``, which pull in ``enum`` and ``re``): with a helper
running, ``pyro`` spends ~20 ms in its own process.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal without its enum import
import _socket
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HELPER_SOCKET = "cli-helper.sock"
HELPER_LOCK = "cli-helper.lock"
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
MAX_SUN_PATH = 100


def command_word(argv: list[str]) -> str | None:
    """The command a command line names (``run`` in ``pyro --engine gvisor run ...``)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--engine":
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg
    return None


def home_dir() -> str:
    """``paths.home_dir()`` without pathlib (a test pins that both agree)."""
    home = os.environ.get("PYRO_HOME")
    if home:
        return os.path.expanduser(home)
    data = os.environ.get("XDG_DATA_HOME")
    base = (
        os.path.expanduser(data)
        if data
        else os.path.join(os.path.expanduser("~"), ".local", "share")
    )
    return os.path.join(base, "pyro-mcp")


def helper_socket() -> str:
    return os.path.join(home_dir(), HELPER_SOCKET)


def helper_wanted(argv: list[str]) -> bool:
    if os.environ.get("PYRO_CLI_HELPER", "1") == "0":
        return False
    return command_word(argv) != "mcp" and len(helper_socket()) < MAX_SUN_PATH


def main() -> None:
    argv = sys.argv[1:]
    wanted = helper_wanted(argv)
    if wanted:
        code = run_in_helper(argv)
        if code is not None:
            os._exit(code)  # nothing of ours to clean up: skip the interpreter's shutdown
    from .main import run_cli

    try:
        code = run_cli(argv)
    finally:
        if wanted:
            start_helper()
    sys.exit(code)


def run_in_helper(argv: list[str]) -> int | None:
    """The command's exit code, or None when no (current) helper takes it."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(helper_socket())
        request = encode_request(argv, os.getcwd(), dict(os.environ), sys.executable)
        header = len(request).to_bytes(4, "big")
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        sock.sendmsg([header], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        sock.sendall(request)
        first = _read_line(sock)
    except OSError:
        sock.close()
        return None  # no helper, or it went away before taking the command: run here
    if not first.startswith(b"pid "):
        sock.close()
        return None  # a stale helper (another pyro version): it exits; run here
    return _wait_for_exit(sock)


def encode_request(argv: list[str], cwd: str, env: dict[str, str], python: str) -> bytes:
    """NUL-separated fields (no argument, path or variable can hold a NUL byte): the Python,
    the working directory, the argument count, the arguments, then NAME=VALUE pairs."""
    fields = [python, cwd, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    return b"\0".join(os.fsencode(field) for field in fields)


def decode_request(data: bytes) -> dict[str, Any]:
    fields = [os.fsdecode(field) for field in data.split(b"\0")]
    if len(fields) < 3 or not fields[2].isdigit() or len(fields) < 3 + int(fields[2]):
        raise ValueError("malformed request")
    count = int(fields[2])
    argv = fields[3 : 3 + count]
    env = dict(item.partition("=")[::2] for item in fields[3 + count :] if "=" in item)
    return {"python": fields[0], "cwd": fields[1], "argv": argv, "env": env}


def _read_line(sock: Any) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            break
        line += chunk
    return line


def _wait_for_exit(sock: Any) -> int:
    """From here on the command runs in the helper's child: forward signals, wait."""

    def forward(signum: int, frame: Any) -> None:
        try:
            sock.send(bytes([signum]))
        except OSError:
            pass

    for signum in FORWARDED_SIGNALS:
        _signal.signal(signum, forward)
    try:
        line = _read_line(sock)
    except OSError:
        line = b""
    if line.startswith(b"exit "):
        return int(line.split()[1])
    sys.stderr.write("[error] the pyro helper process ended before the command finished\n")
    return 1


def helper_running(home: str) -> bool:
    """A helper holds the lock for its whole life (from before it listens)."""
    import fcntl

    try:
        fd = os.open(os.path.join(home, HELPER_LOCK), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def start_helper() -> None:
    """Start a helper for the next command, unless one runs or is starting already."""
    home = home_dir()
    if helper_running(home):
        return
    import subprocess

    try:
        os.makedirs(home, mode=0o700, exist_ok=True)
        log = os.open(
            os.path.join(home, "cli-helper.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        try:
            subprocess.Popen(
                # -P: never import from the directory the user happens to be in
                [sys.executable, "-P", "-m", "pyro_mcp.cli.helper", "--home", home],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd="/",
            )
        finally:
            os.close(log)
    except OSError:
        pass  # only an optimisation
