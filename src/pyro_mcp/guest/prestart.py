"""The next command's shell, started before the command arrives.

Starting a process is the dearest part of an exec in gVisor: 7-9 ms for `/bin/sh` in a busy
sandbox and 20-40 ms once it has idled, most of it in ``execve``. So once an exec has been
answered, the agent starts a plain ``/bin/sh`` that waits for its script on stdin. The next
exec with the same directory and environment writes

    set +s; exec <>/dev/null; <read the login profile>; <the command>

to it in one write and closes the pipe. This runs what ``/bin/sh -lc <the command>`` runs,
with the same ``$0``, ``$-``, ``$#``, line numbers and error messages, exit codes, signal
dispositions, stdin on ``/dev/null``, no extra fd or variable, its own session, and the
login profile read when the command runs, not when the shell started. The differences:

- the profile is parsed after the command's first line, so an alias it defines does not
  apply on that line, and a syntax error there ends the shell before the profile is read;
- ``ps`` shows the shell as ``/bin/sh``, not ``/bin/sh -lc <the command>``;
- a lone external command runs as the shell's child, where ``sh -c`` would exec it in place;
- between execs, the waiting shell is one more ``/bin/sh`` process in the sandbox.

The script must reach the shell in a single read: dash reads its input 8 KiB at a time, and
a pipe delivers a write of at most ``PIPE_BUF`` bytes whole. Longer commands, a ``/bin/sh``
that is not dash, another directory or environment, a directory or ``/bin/sh`` replaced
since the shell started and a shell that died while waiting all fall back to starting
``/bin/sh -lc`` as usual.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from functools import partial

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    Key = tuple[str, tuple[tuple[str, str], ...]]

PREFIX = (
    b"set +s; exec <>/dev/null; [ -r /etc/profile ] && . /etc/profile; "
    b'[ -r "$HOME/.profile" ] && . "$HOME/.profile"; '
)
SCRIPT_LIMIT = 4096  # PIPE_BUF: a pipe write of at most this many bytes arrives whole
START_WAIT_SECONDS = 5.0
START_DELAY_SECONDS = 0.01


def script_for(command: str) -> bytes | None:
    """What the waiting shell is sent for ``command``, or None when it cannot run it."""
    script = PREFIX + os.fsencode(command)
    if len(script) > SCRIPT_LIMIT or b"\0" in script:
        return None
    return script


def shell_is_dash() -> bool:
    return os.path.realpath("/bin/sh").rsplit("/", 1)[-1] == "dash"


def _unchanged(pid: int, cwd: str) -> bool:
    """The waiting shell still sits in the directory now at ``cwd`` and still is the
    ``/bin/sh`` there now (a command may have replaced either since it started)."""
    try:
        stats = [os.stat(path) for path in (f"/proc/{pid}/cwd", cwd, f"/proc/{pid}/exe", "/bin/sh")]
    except OSError:
        return False
    ids = [(st.st_dev, st.st_ino) for st in stats]
    return ids[0] == ids[1] and ids[2] == ids[3]


def discard(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


class NextShell:
    """At most one waiting shell, for the directory and environment of the last exec.

    The agent asks for the next shell once an exec has been answered: started any earlier, it
    would compete with the command and its reply for the CPU and the interpreter lock (that
    measured slower). A thread of its own starts it 10 ms later, unless another exec began
    meanwhile: calls that close together come from a loop, and a shell started between them
    would only compete with the next one (a 10 ms delay measured ~1 ms faster back to back
    than none, and the same when calls are 50 ms apart). An exec that arrives while the
    shell is starting waits for it rather than starting another.
    """

    def __init__(self) -> None:
        self.enabled = False
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._key: Key | None = None  # what _proc was started for, or is being started for
        self._starting = False
        self._claimed = False  # an exec waits for the shell being started
        self._wanted: tuple[Key, str, dict[str, str]] | None = None
        self._execs = 0  # execs begun, to see whether one came while a start was due
        self._thread: threading.Thread | None = None

    def enable(self) -> None:
        self.enabled = shell_is_dash()

    def take(self, cwd: str, env: dict[str, str], command: str) -> subprocess.Popen[bytes] | None:
        """The waiting shell, already running ``command``; None to start one as usual."""
        script = script_for(command) if self.enabled else None
        if script is None:
            return None
        proc = self._claim((cwd, tuple(sorted(env.items()))))
        if proc is None:
            return None
        assert proc.stdin is not None
        if proc.poll() is not None or not _unchanged(proc.pid, cwd):
            discard(proc)
            return None
        try:
            os.write(proc.stdin.fileno(), script)  # one write: the shell reads it whole
            proc.stdin.close()
        except OSError:
            discard(proc)
            return None
        return proc

    def _claim(self, key: Key) -> subprocess.Popen[bytes] | None:
        with self._cond:
            self._execs += 1
            self._cond.notify_all()
            if self._key != key:
                return None
            if self._starting:
                if self._claimed:
                    return None  # another exec waits for it already
                self._claimed = True  # half started: nearer than a new one
                self._cond.wait_for(lambda: not self._starting, timeout=START_WAIT_SECONDS)
                self._claimed = False
                if self._starting:
                    return None
            proc, self._proc = self._proc, None
            return proc

    def prepare(self, cwd: str, env: dict[str, str]) -> None:
        """Start the shell for the next exec like this one (called once it was answered)."""
        if not self.enabled:
            return
        key = (cwd, tuple(sorted(env.items())))
        with self._cond:
            if self._proc is not None and self._key == key:
                return
            self._wanted = (key, cwd, env)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._starter, name="pyro-next-shell", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _exec_since(self, execs: int) -> bool:
        return self._execs != execs

    def _starter(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None)
                assert self._wanted is not None
                (key, cwd, env), self._wanted = self._wanted, None
                if self._proc is not None and self._key == key:
                    continue
                execs = self._execs
                if self._cond.wait_for(partial(self._exec_since, execs), START_DELAY_SECONDS):
                    continue  # calls come back to back: it would only compete
                old, self._proc, self._key, self._starting = self._proc, None, key, True
            discard(old)
            proc = None
            try:
                proc = subprocess.Popen(
                    ["/bin/sh"],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError:
                pass  # the next exec starts its shell itself, and reports any error
            with self._cond:
                self._proc, self._starting = proc, False
                self._cond.notify_all()
