"""The next command's shell, started before the command arrives.

Starting a process is the dearest part of an exec in gVisor: 7-9 ms for `/bin/sh` in a busy
sandbox and 20-40 ms once it has idled, most of it in ``execve``. So once an exec has been
answered, the agent starts a plain ``/bin/sh`` (dash) that waits for its script on stdin.
The next exec with the same directory and environment writes

    set +s; exec <>/dev/null; <read the login profile>; <the command>

to it in one write and closes the pipe. This runs what ``/bin/sh -lc <the command>`` runs,
with the same ``$0``, ``$-``, ``$#``, ``$?``, line numbers and error messages, exit codes,
signal dispositions, stdin on ``/dev/null``, no extra fd or variable, its own session, and
the login profile read when the command runs, not when the shell started.

A shell reading its script from stdin reads on when the script ends, from whatever fd 0 is
then; here that is ``/dev/null``, so it ends. A command that points the shell's own fd 0
elsewhere (``exec <file``) would have the shell read on from there, so commands that could
do that (``exec``, ``eval``, ``alias``) go to ``sh -lc``, as do those that ``sh -lc`` would
take as options (a leading ``-`` or ``+``), those that turn on ``set -v`` (it would echo the
rest of the script), ones too long for one pipe write (``PIPE_BUF``: dash reads its input
8 KiB at a time, and such a write arrives whole), other directories or environments, a
``/bin/sh`` that is not dash or was replaced, a ``/dev/null`` that is not the device, a
directory replaced since the shell started, and a shell that died or was stopped.

What still differs: ``ps`` shows the shell as ``/bin/sh``, not ``/bin/sh -lc <the command>``;
the profile is parsed after the command's first line, so an alias it defines does not apply
on that line, and a syntax error there ends the shell before the profile is read; an error
in the profile itself names the profile file; a script the command sources that points the
shell's fd 0 at a file would have the shell read on from that file; and between execs one
idle ``/bin/sh`` waits in the sandbox.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import threading
from functools import partial

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    Key = tuple[str, tuple[tuple[str, str], ...]]

# `if` rather than `&&`: a missing profile leaves $? at 0, as `sh -l` does.
PREFIX = (
    b"set +s; exec <>/dev/null; if [ -r /etc/profile ]; then . /etc/profile; fi; "
    b'if [ -r "$HOME/.profile" ]; then . "$HOME/.profile"; fi; '
)
SCRIPT_LIMIT = 4096  # PIPE_BUF: a pipe write of at most this many bytes arrives whole
START_WAIT_SECONDS = 5.0
START_DELAY_SECONDS = 0.01
# Words that could point the shell's own fd 0 elsewhere, or echo the script (set -v).
SH_LC_ONLY = re.compile(r"exec|eval|alias|verbose|\bset\b[^;&|\n]*\s[-+][a-zA-Z]*v")


def script_for(command: str) -> bytes | None:
    """What the waiting shell is sent for ``command``, or None when it must run as sh -lc."""
    if command.startswith(("-", "+")) or SH_LC_ONLY.search(command):
        return None
    script = PREFIX + os.fsencode(command)
    if len(script) > SCRIPT_LIMIT or b"\0" in script:
        return None
    return script


def start_shell(
    argv: list[str], cwd: str, env: dict[str, str], stdin: int
) -> subprocess.Popen[bytes]:
    """How every exec shell starts, ahead or not: output piped, in a session of its own."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def shell_is_dash() -> bool:
    return os.path.realpath("/bin/sh").rsplit("/", 1)[-1] == "dash"


def _usable(pid: int, cwd: str) -> bool:
    """The waiting shell is neither stopped nor gone, still sits in the directory now at
    ``cwd``, still is the ``/bin/sh`` there now, and /dev/null still is the device."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        paths = (f"/proc/{pid}/cwd", cwd, f"/proc/{pid}/exe", "/bin/sh")
        ids = [(st.st_dev, st.st_ino) for st in map(os.stat, paths)]
        null = os.stat("/dev/null")
    except (OSError, IndexError):
        return False
    return (
        state in (b"S", b"R", b"D")
        and ids[0] == ids[1]
        and ids[2] == ids[3]
        and stat.S_ISCHR(null.st_mode)
    )


def discard(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:  # not reaped: its pid (and group) cannot have been reused
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
        if proc.poll() is not None or not _usable(proc.pid, cwd):
            discard(proc)
            return None
        try:
            written = os.write(proc.stdin.fileno(), script)  # one write: read whole
        except OSError:
            written = 0
        if written != len(script):  # nothing reached it (it died): start sh -lc instead
            discard(proc)
            return None
        try:
            proc.stdin.close()  # the script is complete: the shell runs it either way
        except OSError:
            pass
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
                if self._starting or self._key != key:  # or replaced by another call's
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
                self._wanted = None  # an older call's wish is out of date
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
            proc = None
            try:
                discard(old)
                if shell_is_dash():  # a command may have made /bin/sh another shell
                    proc = start_shell(["/bin/sh"], cwd, env, subprocess.PIPE)
            except Exception:  # any failure: the next exec starts its shell itself
                proc = None
            finally:
                with self._cond:
                    self._proc, self._starting = proc, False
                    self._cond.notify_all()
