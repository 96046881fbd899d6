"""How a workspace's supervisor process starts, and says how its start ended (a status file
its spawner waits for).

A supervisor started ahead of need (a spare): Python's start-up and pyro's imports (~0.1 s of CPU)
are done before a workspace wants its supervisor, so a create, start or fork that finds the
spare waits only for the sandbox's boot.

A process that spawns supervisors (an SDK, the MCP server, the CLI helper) keeps at most one
spare, started after each spawn it made. The spare holds no workspace and no home: it waits
for its job (one JSON line: home, cache, workspace, log, cwd) on a pipe from its spawner and
ends when that pipe closes, so it never outlives the process that started it. It is used
only while this process's environment is the one it was started with (a changed ``PYRO_*``
setting starts the supervisor afresh).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

SPARE_FLAG = "--spare"


def _environment_key() -> str:
    items = "\0".join(f"{k}={v}" for k, v in sorted(os.environ.items()))
    return hashlib.sha256(f"{sys.executable}\0{items}".encode()).hexdigest()


class Spares:
    """This process's spare supervisor (at most one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: tuple[str, int, subprocess.Popen[bytes]] | None = None
        self.enabled = True  # off for a one-command CLI process: it would end unused
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """In a forked child (multiprocessing's fork, the CLI helper's command): the parent's
        spare is not its own. Its pipe's copy is closed, or the spare would outlive its
        starter as long as the child lives; the lock is new (another thread may have held it)."""
        self._lock = threading.Lock()
        spare, self._spare = self._spare, None
        if spare is not None and spare[2].stdin is not None:
            with contextlib.suppress(OSError):
                spare[2].stdin.close()

    def waiting(self) -> int | None:
        """The pid of the spare waiting for a job, if there is one."""
        with self._lock:
            return self._spare[2].pid if self._spare is not None else None

    def take(self, job: dict[str, str]) -> subprocess.Popen[bytes] | None:
        """The spare, given ``job`` (it then forks the supervisor and exits, as a freshly
        started one does); None when there is no usable spare."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return None
        key, pid, proc = spare
        if key != _environment_key() or pid != os.getpid() or proc.poll() is not None:
            _discard(proc)
            return None
        stdin: IO[bytes] | None = proc.stdin
        try:
            assert stdin is not None
            stdin.write(json.dumps(job).encode() + b"\n")
            stdin.close()
        except (OSError, ValueError):  # it ended meanwhile
            _discard(proc)
            return None
        return proc

    def prepare(self, module: str) -> None:
        """Start the next spare (unless one is waiting); never fails the caller."""
        with self._lock:
            if self._spare is not None or not self.enabled:
                return
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", module, SPARE_FLAG],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd="/",
                )
            except OSError:
                return
            self._spare = (_environment_key(), os.getpid(), proc)


def _discard(proc: subprocess.Popen[bytes]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()  # it ends at the pipe's end
    except OSError:
        pass
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


SPARES = Spares()


def wait_for_job() -> dict[str, Any]:
    """In the spare: its job, read from the spawner's pipe, with its output going to the
    workspace's log and its working directory the workspace's; it exits if the pipe ends
    first (its spawner is gone)."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        os._exit(0)
    job: dict[str, Any] = json.loads(line)
    log = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (log, 1), (log, 2)):
        os.dup2(fd, target)
    os.close(null)
    os.close(log)
    os.chdir(Path(job["cwd"]))
    return job


def write_status(path: Path, status: dict[str, Any]) -> None:
    """The start-up status the spawner waits for (lifecycle.spawn), written whole."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    tmp.replace(path)


def detach(home: str, workspace_id: str) -> None:
    """Become the supervisor in a new session: this process forks it, notes its identity
    (owners.supervisors finds it by that, whatever its command line) and exits; the spawner
    reaps this process at once, so no zombie is left later."""
    from .owners import record_supervisor

    pid = os.fork()
    if pid > 0:
        try:
            record_supervisor(Path(home), workspace_id, pid)
        finally:
            os._exit(0)
    os.setsid()
