"""The warm CLI helper: ``python -P -m pyro_mcp.cli.helper --home H`` (see ``cli/launch.py``).

It imports the CLI once, listens on ``H/cli-helper.sock`` (0600, in the private state
directory), and forks one child per command for callers of the same user in the same
security context (``helper_context.py``); others are told to run the command themselves. The child
takes over the caller's stdin/stdout/stderr, working directory and environment, runs the
command exactly as ``pyro`` would in-process, and reports the exit code. Signals the caller
receives are forwarded to the child; if the caller dies, the child is stopped like a
Ctrl-C would (its sandboxes are cleaned up). The helper exits after a minute without
commands, or at once when its code changed on disk (an upgrade) or a caller runs another
Python: the caller then runs the command itself.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import io
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import helper_context
from .launch import HELPER_LOCK, HELPER_SOCKET, decode_request, private_home

IDLE_SECONDS = 60.0
MAX_REQUEST = 4 * 1024 * 1024
PACKAGE = Path(__file__).resolve().parent.parent


def code_stamp() -> tuple[float, int]:
    """Changes when any of pyro_mcp's files changes (an upgrade or an edit): ~0.5 ms."""
    newest = 0.0
    count = 0
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
                count += 1
    return newest, count


def warm_up() -> None:
    """Import what commands need, so children start with it loaded."""
    import sqlite3  # noqa: F401 - the workspace state database

    from ..api import operations
    from ..engines import detect, gvisor_once, qemu  # noqa: F401 - auto builds qemu-kvm
    from ..workspaces import manager  # noqa: F401
    from .main import parser_for

    for word in {None, *(op.cli_path[0] for op in operations() if op.cli_path)}:
        parser_for(word)


def serve(home: Path, idle_seconds: float = IDLE_SECONDS) -> None:
    if not private_home(str(home)):
        _log(f"not serving {home}: it must be a directory of this user that only it can write")
        return
    path = home / HELPER_SOCKET
    lock = os.open(home / HELPER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return  # another helper serves (or is starting for) this home
    stamp = code_stamp()  # before importing: an upgrade during start-up is noticed
    warm_up()
    # Children share the warm heap copy-on-write: keep the collector from touching (and so
    # copying) every page of it in each child.
    gc.collect()
    gc.freeze()
    listener = _listen(path)
    identity = path.stat().st_ino
    children: set[int] = set()
    last = time.monotonic()
    try:
        while True:
            _reap(children)
            if not children and time.monotonic() - last > idle_seconds:
                _log(f"exiting: no command for {idle_seconds:g}s")
                return
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            served = _serve_one(conn, stamp, listener, lock)
            if served is None:
                return
            if served:
                children.add(served)
                last = time.monotonic()  # only a command served keeps the helper alive
    finally:
        listener.close()
        try:
            if path.stat().st_ino == identity:
                path.unlink()
        except OSError:
            pass


def _listen(path: Path) -> socket.socket:
    """The helper's socket at ``path``: only this user can connect (0600)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(16)
    listener.settimeout(1.0)
    return listener


def _serve_one(
    conn: socket.socket, stamp: tuple[float, int], listener: socket.socket, lock: int
) -> int | None:
    """Answer one caller: the pid of the child forked to run its command, 0 when it runs the
    command itself, None when the helper must exit (its code changed). A child closes the
    helper's ``listener`` and ``lock`` at once."""
    conn.settimeout(1.0)  # a caller sends its request at once
    try:
        request, fds, caller = _receive(conn)
    except (OSError, ValueError) as exc:
        _log(f"refused a request: {exc}")
        conn.close()
        return 0
    why = _stale(request, stamp)
    other = None if why else helper_context.mismatch(caller)
    if why or other or _hung_up(conn):
        _close_all(fds)
        _reply(conn, b"stale\n" if why else b"other\n")
        conn.close()
        if why:
            _log(f"exiting: {why}; the caller runs the command itself")
            return None
        if other:
            _log(f"a caller in {other}: it runs the command itself")
        return 0
    request["umask"] = helper_context.umask_of(caller)
    pid = os.fork()
    if pid == 0:
        try:
            listener.close()
            os.close(lock)  # a long command must not keep a new helper from starting
            run_child(conn, fds, request)
        finally:
            os._exit(1)  # a child never runs the helper's own clean-up
    _close_all(fds)  # the caller's pipes must close when the child is done
    conn.close()
    return pid


def _stale(request: dict[str, Any], stamp: tuple[float, int]) -> str | None:
    if request.get("python") != sys.executable:
        return f"the caller runs {request.get('python')}, not {sys.executable}"
    if code_stamp() != stamp:
        return "pyro_mcp changed on disk"
    return None


def _log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pyro cli helper: {message}\n")
    sys.stderr.flush()


def _hung_up(conn: socket.socket) -> bool:
    """The caller gave up (a timeout, Ctrl-C) before we started: do not run its command."""
    timeout = conn.gettimeout()
    conn.settimeout(0.0)  # look, do not wait
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        conn.settimeout(timeout)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int], int]:
    """One request: a 4-byte length with the caller's fds 0-2 attached, then the fields
    (``launch.encode_request``). Only this user can connect (0600 socket, checked again).
    Also returns the caller's pid."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    caller = int.from_bytes(creds[0:4], sys.byteorder)
    uid = int.from_bytes(creds[4:8], sys.byteorder)
    data, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    try:
        if uid != os.getuid():
            raise ValueError("another user")
        if len(fds) != 3 or len(data) != 4:
            raise ValueError("malformed request")
        size = int.from_bytes(data, "big")
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = bytearray()
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("truncated request")
            body += chunk
        request = decode_request(bytes(body))
    except ValueError as exc:
        _close_all(fds)
        raise ValueError(str(exc)) from exc
    return request, fds, caller


def run_child(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
    """In the forked child: become the caller's pyro process for one command."""
    from .main import _terminate  # loaded by warm_up already

    code = 1
    try:
        for signum in (signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminate)  # as run_cli does, before anything else
        for signum in request.get("ignored") or []:
            if signum != signal.SIGTERM:  # run_cli handles TERM whatever the caller did
                signal.signal(signum, signal.SIG_IGN)
        os.umask(int(request.get("umask", 0o022)))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        conn.settimeout(None)
        env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
        _reopen_std_streams(bool(env.get("PYTHONUNBUFFERED")))
        os.environ.clear()
        os.environ.update(env)
        argv = [str(a) for a in request.get("argv") or []]
        sys.argv = ["pyro", *argv]
        if not _reply(conn, f"pid {os.getpid()}\n".encode()) or _hung_up(conn):
            os._exit(1)  # the caller gave up waiting and runs the command itself
        threading.Thread(target=_watch_caller, args=(conn,), daemon=True).start()
        os.chdir(str(request.get("cwd") or "/"))
        from .main import run_cli

        try:
            code = run_cli(argv)
        except SystemExit as exc:
            code = _exit_code(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        sys.stderr.write(f"[error] {exc}\n")
        code = 1
    finally:
        # Done: from here a signal (or the caller hanging up) must not interrupt us.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        _reply(conn, f"exit {code}\n".encode())
        os._exit(code)


def _watch_caller(conn: socket.socket) -> None:
    """Signals the caller got arrive as one byte each; EOF means the caller is gone."""
    while True:
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if not data:
            os.kill(os.getpid(), signal.SIGTERM)  # stop as a Ctrl-C would: clean up
            return
        if data[0] == signal.SIGHUP:  # the terminal went away: stop, cleaning up
            os.kill(os.getpid(), signal.SIGTERM)
        elif data[0] in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            os.kill(os.getpid(), data[0])


def _reopen_std_streams(unbuffered: bool) -> None:
    """Text streams on the caller's fds, buffered as Python would buffer them there."""

    def writer(fd: int, errors: str) -> io.TextIOWrapper:
        raw = io.BufferedWriter(io.FileIO(fd, "w", closefd=False))
        return io.TextIOWrapper(
            raw,
            encoding="utf-8",
            errors=errors,
            line_buffering=fd == 2 or os.isatty(fd),
            write_through=unbuffered,
        )

    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), "utf-8")
    sys.stdout = writer(1, "surrogateescape")
    sys.stderr = writer(2, "backslashreplace")


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    sys.stderr.write(f"{value}\n")
    return 1


def _reply(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
    except OSError:
        return False
    return True


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyro_mcp.cli.helper")
    parser.add_argument("--home", required=True)
    parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS)
    args = parser.parse_args(argv)
    serve(Path(args.home), args.idle_seconds)


if __name__ == "__main__":
    main()
