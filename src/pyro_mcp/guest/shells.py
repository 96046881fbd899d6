"""Guest-side PTY shells: interactive bash sessions whose output keeps flowing into a
buffer whether or not anyone is reading it."""

from __future__ import annotations

import codecs
import fcntl
import os
import signal
import struct
import termios
import threading
import time

from . import netenv, paths, secrets
from .execution import shell_status

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


MAX_BUFFER_CHARS = 4 * 1024 * 1024
SIGNALS = {
    "HUP": signal.SIGHUP,
    "INT": signal.SIGINT,
    "TERM": signal.SIGTERM,
    "KILL": signal.SIGKILL,
}


class Shell:
    def __init__(self, shell_id: str, cwd: str, cols: int, rows: int, env: dict[str, str]) -> None:
        self.shell_id = shell_id
        self.cwd = cwd
        self.cols = cols
        self.rows = rows
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.lock = threading.Lock()
        self.chunks: list[str] = []
        self.length = 0  # characters ever produced (the cursor space)
        self.base = 0  # characters dropped from the front of the buffer
        self.text = ""
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        argv = [shell, "--noprofile", "--norc", "-i"] if shell.endswith("bash") else [shell, "-i"]
        pid, fd = os.forkpty()
        if pid == 0:  # child: becomes the session leader with the PTY as its terminal
            try:
                os.chdir(cwd)
                os.execve(shell, argv, env)  # noqa: S606
            finally:
                os._exit(127)
        self.pid = pid
        self.fd = fd
        self.resize(cols, rows)
        self.redactor = secrets.StreamRedactor()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        threading.Thread(target=self._pump, daemon=True).start()

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _append(self, data: bytes, final: bool = False) -> None:
        text = self.decoder.decode(data, final=final)
        if not text:
            return
        with self.lock:
            self.text += text
            self.length += len(text)
            if len(self.text) > MAX_BUFFER_CHARS:
                drop = len(self.text) - MAX_BUFFER_CHARS
                self.text = self.text[drop:]
                self.base += drop

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            self._append(self.redactor.feed(data))
        self._append(self.redactor.flush(), final=True)
        _, status = os.waitpid(self.pid, 0)
        with self.lock:
            code = os.waitstatus_to_exitcode(status)
            self.exit_code = shell_status(code)  # as exec and services: 137 for KILL
            self.ended_at = time.time()
        try:
            os.close(self.fd)
        except OSError:
            pass

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def summary(self) -> dict[str, Any]:
        return {
            "shell_id": self.shell_id,
            "cwd": self.cwd,
            "cols": self.cols,
            "rows": self.rows,
            "state": "running" if self.running else "stopped",
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
        }

    def read(self, cursor: int, max_chars: int) -> dict[str, Any]:
        with self.lock:
            cursor = max(self.base, min(cursor, self.length))
            start = cursor - self.base
            output = self.text[start : start + max_chars]
            next_cursor = cursor + len(output)
            return {
                **self.summary(),
                "cursor": cursor,
                "next_cursor": next_cursor,
                "output": output,
                "truncated": next_cursor < self.length,
                "length": self.length,
            }

    def write(self, data: str) -> None:
        if not self.running:
            raise ValueError(f"shell {self.shell_id} has exited")
        payload = data.encode("utf-8")
        while payload:
            written = os.write(self.fd, payload)
            payload = payload[written:]

    def signal(self, name: str) -> None:
        sig = SIGNALS.get(name)
        if sig is None:
            raise ValueError(f"signal must be one of: {', '.join(SIGNALS)}")
        if not self.running:
            raise ValueError(f"shell {self.shell_id} has exited")
        if sig == signal.SIGINT:  # exactly what Ctrl-C does: the line discipline decides
            os.write(self.fd, b"\x03")
            return
        try:  # like a keyboard: the terminal's foreground job, else the shell's group
            group = os.tcgetpgrp(self.fd)
        except OSError:
            group = self.pid
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self.running:
            for sig, wait in ((signal.SIGHUP, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while self.running and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not self.running:
                    break


SHELLS: dict[str, Shell] = {}


def get(shell_id: str) -> Shell:
    shell = SHELLS.get(shell_id)
    if shell is None:
        raise ValueError(f"shell {shell_id!r} does not exist")
    return shell


def open_shell(args: dict[str, Any]) -> dict[str, Any]:
    root = str(args.get("root") or paths.ROOT)
    cwd = paths.normalize(str(args.get("cwd") or root), root=root)
    os.close(paths.open_dir(cwd, root=root))  # exists, and no symlinked parents
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": str(args.get("term") or "xterm-256color"),
        "PS1": "pyro$ ",
        "PROMPT_COMMAND": "",
        "PYRO_SANDBOX": "1",
        **netenv.PROXY_ENV,
        **secrets.env_for(args.get("secret_env")),
    }
    shell = Shell(str(args["shell_id"]), cwd, int(args["cols"]), int(args["rows"]), env)
    SHELLS[shell.shell_id] = shell
    return shell.summary()


def close_shell(shell_id: str) -> dict[str, Any]:
    shell = get(shell_id)
    shell.close()
    SHELLS.pop(shell_id, None)
    return {**shell.summary(), "closed": True}
