"""The call in progress: what a surface gives a long operation to report through and to be
cancelled by (the MCP server's progress notifications and ``notifications/cancelled``).

A surface sets ``CURRENT`` around the call (a context variable: one per call, so calls that
overlap in worker threads never mix); an operation that runs long reads it with
``current()``, reports its latest output line or build phase with ``Call.report``, and
registers what ends it early with ``Call.on_cancel``. Without a surface's call, both are
no-ops, so the SDK and the CLI behave as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

T = TypeVar("T")
MAX_MESSAGE_CHARS = 200  # a progress message is the latest line, cut to this


class Call:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._message: str | None = None
        self._version = 0
        self._hooks: list[Callable[[], object]] = []
        self.cancelled = threading.Event()

    # -- progress ------------------------------------------------------------------------
    def report(self, message: str) -> None:
        """The latest phase or output line (empty lines keep the previous message)."""
        message = message.strip()
        if not message:
            return
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        with self._lock:
            self._message = message
            self._version += 1

    def report_output(self, chunk: bytes, redact: Callable[[str], str] | None = None) -> None:
        """A chunk of a command's output: its last complete or partial line (``redact``:
        the workspace's secret values masked, as in every result)."""
        lines = chunk.decode("utf-8", errors="replace").splitlines()
        for line in reversed(lines):
            if line.strip():
                self.report(redact(line) if redact is not None else line)
                return

    def latest(self) -> tuple[int, str | None]:
        """(a number that grows with each report, the latest message)."""
        with self._lock:
            return self._version, self._message

    # -- cancel --------------------------------------------------------------------------
    def cancel(self) -> None:
        """End the call early: every registered hook runs once (in this thread)."""
        with self._lock:
            if self.cancelled.is_set():
                return
            self.cancelled.set()
            hooks = list(self._hooks)
        for hook in hooks:
            with contextlib.suppress(Exception):  # the call's own result says what happened
                hook()

    @contextlib.contextmanager
    def on_cancel(self, hook: Callable[[], object]) -> Iterator[None]:
        """Run ``hook`` if the call is cancelled while inside this block (at once if it
        already was)."""
        with self._lock:
            already = self.cancelled.is_set()
            if not already:
                self._hooks.append(hook)
        if already:
            with contextlib.suppress(Exception):
                hook()
        try:
            yield
        finally:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)


CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("pyro_call", default=None)


def current() -> Call | None:
    return CURRENT.get()


def report(message: str) -> None:
    """Report a phase to the current call, if a surface is listening."""
    call = CURRENT.get()
    if call is not None:
        call.report(message)


def listen(
    on_output: Callable[[str, bytes], None] | None,
    redact: Callable[[str], str] | None = None,
) -> Callable[[str, bytes], None] | None:
    """``on_output`` that also reports each chunk's last line (``redact``-ed) to the current
    call."""
    call = CURRENT.get()
    if call is None:
        return on_output

    def both(kind: str, chunk: bytes) -> None:
        call.report_output(chunk, redact)
        if on_output is not None:
            on_output(kind, chunk)

    return both


@contextlib.contextmanager
def cancellable(send: Callable[[str, dict[str, Any]], object]) -> Iterator[str | None]:
    """The cancel key for an exec's arguments (None outside a surface's call): while inside
    the block, cancelling the call sends the agent ``exec_cancel`` with it through ``send``
    (the agent kills the command's process group and the exec answers what ran so far)."""
    if CURRENT.get() is None:
        yield None
        return
    key = os.urandom(8).hex()
    with on_cancel(lambda: send("exec_cancel", {"cancel_key": key})):
        yield key


@contextlib.contextmanager
def on_cancel(hook: Callable[[], object]) -> Iterator[bool]:
    """Run ``hook`` if the current call (if any: yields whether there is one) is cancelled
    while inside the block."""
    call = CURRENT.get()
    if call is None:
        yield False
        return
    with call.on_cancel(hook):
        yield True


def phases(
    progress: Callable[[str, str], None] | None,
) -> Callable[[str, str], None] | None:
    """An environment build's ``progress(phase, detail)`` that also reports each phase to
    the current call (a first create that builds its environment says what it is doing)."""
    call = CURRENT.get()
    if call is None:
        return progress

    def both(phase: str, detail: str) -> None:
        call.report(f"{phase}: {detail}")
        if progress is not None:
            progress(phase, detail)

    return both


CANCEL_WAIT_SECONDS = 10.0  # how long a Ctrl-C'd call may take to answer once cancelled


def interruptible(work: Callable[[], T]) -> T:
    """Run ``work`` as a call in a thread of its own (the CLI's exec): a Ctrl-C cancels the
    call and waits for its answer (an exec's output so far, cancelled), which is returned;
    a second Ctrl-C, or a call that does not answer, is raised as before."""
    call = Call()
    outcome: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: one interrupted by Ctrl-C may lie after

    def run() -> None:
        CURRENT.set(call)  # this thread's own context
        try:
            outcome["result"] = work()
        except BaseException as exc:  # raised in the caller's thread below
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="pyro-call").start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        call.cancel()
        if not done.wait(CANCEL_WAIT_SECONDS):
            raise
    if "error" in outcome:
        raise outcome["error"]
    return cast(T, outcome["result"])
