"""Run one shell command in the guest: bounded, streamed, killed as a group on timeout."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections import OrderedDict

from . import limits, netenv, secrets
from .prestart import NextShell, start_shell

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Emit = Callable[[str, bytes], None]


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MAX_OUTPUT = 1024 * 1024
CHUNK = 64 * 1024
DRAIN_IDLE_SECONDS = 0.2
DRAIN_MAX_SECONDS = 2.0


class Capture:
    """Keeps the first ``limit`` bytes of a stream and counts what it drops."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - self.kept
        if room > 0:
            part = chunk[:room]
            self.parts.append(part)
            self.kept += len(part)
        self.dropped += max(0, len(chunk) - max(room, 0))

    def data(self) -> bytes:
        return b"".join(self.parts)

    def text(self) -> str:
        return self.data().decode("utf-8", errors="replace")


def base_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "PYRO_SANDBOX": "1",
        "PYRO_UID": str(os.getuid()),
        **netenv.PROXY_ENV,
    }
    if extra:
        env.update(extra)
    return env


# The shell for the next exec, started ahead (enabled by the sandboxed agent only).
NEXT_SHELL = NextShell()


def shell_status(returncode: int) -> int:
    """A return code as a shell reports it: 128+N when signal N ended the process."""
    return returncode if returncode >= 0 else 128 - returncode


def finish(exit_code: int, started: float, timed_out: float | None, take: Emit) -> dict[str, Any]:
    """The fields every exec result has (the agent's, and a gVisor one-shot run's on the
    host). ``timed_out``: the timeout the command ran out of; it then exits 124 and a note
    saying so goes to its stderr through ``take``."""
    if timed_out is not None:
        exit_code = 124
        take("stderr", f"command timed out after {_fmt_seconds(timed_out)}s\n".encode())
    return {
        "exit_code": shell_status(exit_code),
        "duration_ms": int((time.monotonic() - started) * 1000),
        "timed_out": timed_out is not None,
    }


def command_env(args: dict[str, Any]) -> dict[str, str]:
    return {**base_env(args.get("env")), **secrets.env_for(args.get("secret_env"))}


def prepare_next(args: dict[str, Any]) -> None:
    """Once an exec was answered: start the shell the next exec like it will use."""
    if NEXT_SHELL.enabled:  # nothing to build on the host (host_compat)
        NEXT_SHELL.prepare(args.get("cwd") or "/", command_env(args))


# Running execs that a client may cancel, by the key it gave (``exec_cancel``), and the keys
# of cancels that came first (their exec has not arrived) or too late (it had ended): the
# latter are never claimed, so the oldest give way once there are too many.
CANCELS: dict[str, threading.Event] = {}
EARLY_CANCELS: OrderedDict[str, None] = OrderedDict()
MAX_EARLY_CANCELS = 1024
CANCELS_LOCK = threading.Lock()
CANCELLED_EXIT_CODE = 130  # as a shell reports a command ended by Ctrl-C


def cancel(key: str) -> bool:
    """Cancel the exec with ``key``: True if it was running. One that has not arrived yet
    (the cancel overtook it) is cancelled as it starts."""
    with CANCELS_LOCK:
        running = CANCELS.get(key)
        if running is not None:
            running.set()
            return True
        EARLY_CANCELS[key] = None
        while len(EARLY_CANCELS) > MAX_EARLY_CANCELS:
            EARLY_CANCELS.popitem(last=False)
        return False


def _cancel_event(key: str) -> threading.Event:
    """The event an exec's cancel sets (already set if its cancel came first)."""
    event = threading.Event()
    if key:
        with CANCELS_LOCK:
            if EARLY_CANCELS.pop(key, 0) is None:
                event.set()
            CANCELS[key] = event
    return event


def mark_cancelled(result: dict[str, Any], take: Emit) -> None:
    """A command the client cancelled (its group killed): exit 130, ``cancelled``, and a
    note on its stderr through ``take`` (the agent's exec, a gVisor one-shot run's)."""
    take("stderr", b"command cancelled by the client\n")
    result.update(exit_code=CANCELLED_EXIT_CODE, cancelled=True)


def _start(args: dict[str, Any], cwd: str, env: dict[str, str], stdin: bytes) -> Any:
    command = args["command"]
    proc = None if stdin else NEXT_SHELL.take(cwd, env, command)
    if proc is not None:
        return proc
    if not args.get("mkdir_cwd") and not os.path.isdir(cwd):
        raise ValueError(f"cwd {cwd!r} is not a directory")
    try:
        proc = start_shell(
            ["/bin/sh", "-lc", command], cwd, env, subprocess.PIPE if stdin else subprocess.DEVNULL
        )
    except OSError as exc:
        raise RuntimeError(f"cannot start command: {exc}") from exc
    if stdin:
        threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True).start()
    return proc


def _feed_stdin(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
    except OSError:
        pass  # the command ended (or closed its stdin) without reading it all
    try:
        proc.stdin.close()
    except OSError:
        pass


def run_command(
    args: dict[str, Any], emit: Emit, stdin: bytes = b""
) -> tuple[dict[str, Any], bytes]:
    """Run ``args["command"]`` (``stdin``: its input, else /dev/null); the result carries
    the lengths, the data stdout + stderr.

    Output travels as raw bytes in the frame's data part: JSON-escaping control bytes
    would make 1 MiB of kept output up to 6 MiB of JSON.
    """
    cwd = args.get("cwd") or "/"
    timeout = float(args.get("timeout_seconds") or 30)
    limit = int(args.get("max_output_bytes") or DEFAULT_MAX_OUTPUT)
    if args.get("mkdir_cwd"):
        os.makedirs(cwd, exist_ok=True)
    env = command_env(args)
    key = str(args.get("cancel_key") or "")
    cancelled = _cancel_event(key)
    started = time.monotonic()
    try:
        proc = _start(args, cwd, env, stdin)
        pump = Pump(limit, emit if args.get("stream") else None)
        timed_out = pump.run(proc, started + timeout, cancelled)
        exit_code = proc.wait()
    finally:
        with CANCELS_LOCK:
            CANCELS.pop(key, None)
    for note in limits.notes_for(proc.pid, started):  # the command's session: its pid
        pump.take("stderr", note.encode())
    was_cancelled = timed_out and cancelled.is_set()  # killed for the cancel, not ended
    ran_out = timeout if timed_out and not was_cancelled else None
    result = finish(exit_code, started, ran_out, pump.take)
    if was_cancelled:
        mark_cancelled(result, pump.take)
    for name, cap in pump.captures.items():
        result[f"{name}_bytes"] = cap.kept
        result[f"{name}_truncated"] = cap.dropped > 0
        result[f"{name}_dropped_bytes"] = cap.dropped
    return result, pump.captures["stdout"].data() + pump.captures["stderr"].data()


class Pump:
    """Reads a command's stdout and stderr until it exits (or times out), then everything
    already in the pipes, then what background children still write for a short while."""

    def __init__(self, limit: int, emit: Emit | None) -> None:
        self.captures = {"stdout": Capture(limit), "stderr": Capture(limit)}
        self.redactors = {"stdout": secrets.StreamRedactor(), "stderr": secrets.StreamRedactor()}
        self.emit = emit

    def take(self, name: str, chunk: bytes) -> None:
        self.captures[name].add(chunk)
        if self.emit is not None:
            self.emit(name, chunk)

    def _feed(self, name: str, chunk: bytes) -> None:
        safe = self.redactors[name].feed(chunk) if chunk else self.redactors[name].flush()
        if safe:
            self.take(name, safe)

    def run(self, proc: subprocess.Popen[bytes], deadline: float, cancel: threading.Event) -> bool:
        """Pump until done; True when the command ran out of time or was cancelled (its
        group is killed)."""
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ, name)
        timed_out = False
        exited_at: float | None = None
        quiet_since = time.monotonic()
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = quiet_since = now
                self._read_ready(sel, now + DRAIN_MAX_SECONDS)  # all it wrote is in the pipes
                continue
            if exited_at is not None and (
                now - quiet_since > DRAIN_IDLE_SECONDS or now - exited_at > DRAIN_MAX_SECONDS
            ):
                break  # background children may hold the pipes open; do not wait for them
            if exited_at is None and (now >= deadline or cancel.is_set()):
                timed_out = True
                _kill_group(proc)
                continue  # the next round sees it exited and reads what is left
            wait = min(0.05, max(0.0, deadline - now))
            if any([self._read(sel, key) for key, _ in sel.select(timeout=wait)]):
                quiet_since = time.monotonic()
        sel.close()
        for name in self.captures:
            self._feed(name, b"")
        proc.stdout.close()
        proc.stderr.close()
        return timed_out

    def _read(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> bool:
        """One read from a ready pipe; True when it gave data."""
        try:
            chunk = os.read(key.fd, CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            sel.unregister(key.fileobj)
            return False
        self._feed(key.data, chunk)
        return True

    def _read_ready(self, sel: selectors.BaseSelector, until: float) -> None:
        """Read each pipe until it is empty right now (or EOF), within ``until``."""
        for key in list(sel.get_map().values()):
            while time.monotonic() < until and self._read(sel, key):
                pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group until it is empty (for at most ~2 s): a fork
    storm's members born after one signal would live on."""
    for attempt in range(100):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        if attempt == 0:
            proc.wait()  # the leader reaped: the group lives on only in its other members
        else:
            time.sleep(0.02)
    proc.wait()


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
