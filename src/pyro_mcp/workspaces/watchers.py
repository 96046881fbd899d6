"""What a workspace's supervisor watches while it serves: its engine process, the agent's
stream, and the workspace's lifetime; each ends or restarts the sandbox and says why."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import lifetime
from ..engines.agent_client import AgentGone, AgentTimeout
from ..engines.base import Sandbox
from ..errors import PyroError
from ..validation import MAX_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from .supervisor import Supervisor


def watch_engine(supervisor: Supervisor, sandbox: Sandbox) -> None:
    threading.Thread(target=watch_agent, args=(supervisor, sandbox), daemon=True).start()
    code = sandbox.process.wait()
    if sandbox is not supervisor.sandbox or supervisor.stopping.is_set():
        return
    limit = sandbox.limit_exceeded()
    if limit is not None and restart_after_limit(supervisor, sandbox, limit):
        return
    error = f"backing guest process is no longer running (exit {code})"
    supervisor.shutdown("stopped", error=error)


def restart_after_limit(supervisor: Supervisor, sandbox: Sandbox, limit: str) -> bool:
    """A sandbox the engine's backstop ended (the guest went past a limit faster than
    the agent could hold it): boot a fresh one on the same /workspace and say why."""
    return restart(supervisor, sandbox, f"the sandbox went over its {limit}")


def restart(supervisor: Supervisor, sandbox: Sandbox, why: str) -> bool:
    """Replace ``sandbox`` by a fresh one on the same disks, saying ``why`` in the record's
    last_error; False when the new one could not boot."""
    with supervisor.reboot_lock:
        if sandbox is not supervisor.sandbox or supervisor.stopping.is_set():
            return True  # a reset or stop took over
        supervisor.sandbox = None
        if sandbox.alive():  # a mute one: ended first, so nothing of it outlives this process
            sandbox.kill()
        else:  # what the engine left (runsc's state, cgroups) goes beside the new boot
            threading.Thread(target=sandbox.kill, daemon=True).start()
        try:
            supervisor._boot_sandbox()
        except Exception:  # reported as the stop's reason below
            return False
    supervisor.store.update(
        supervisor.workspace_id,
        last_error=f"{why} and was restarted: /workspace is intact; its processes, shells "
        "and services were ended",
    )
    return True


# How long a sandbox whose agent let a call run out of time gets to answer a ping.
PING_SECONDS = 5.0
# How long past an exec's own time limit its agent may take to answer (it kills the command
# at that limit): well inside the 30 s a client waits beyond it, so a mute sandbox is
# replaced (ping, fresh boot) before the client gives up.
EXEC_ANSWER_SLACK = 10.0


# Calls a live agent answers at once, whatever the guest holds (bounded reads and writes,
# records): a mute agent is found by them too, well inside a client's 60 s wait.
QUICK_OPS = frozenset(("file_read", "file_write", "service_status", "service_list"))
QUICK_ANSWER_SECONDS = 30.0


def agent_timeout(op: str, args: dict[str, Any]) -> float | None:
    """How long the supervisor waits for the agent's answer: an exec's own limit and slack,
    a quick call's QUICK_ANSWER_SECONDS; other calls as long as they take."""
    if op in QUICK_OPS:
        return QUICK_ANSWER_SECONDS
    if op != "exec":
        return None
    try:  # a raw client's limit is checked by the agent: one it refuses, no wait here
        limit = float(args.get("timeout_seconds") or 30)
    except (TypeError, ValueError):
        return None
    return limit + EXEC_ANSWER_SLACK if 0 < limit <= MAX_TIMEOUT_SECONDS else None


def restart_if_mute(supervisor: Supervisor, sandbox: Sandbox, late: AgentTimeout) -> str:
    """The agent let a call run out of time: if it does not answer a ping either, it cannot
    answer anything (a guest that starves it: a root fork bomb in a VM), so a fresh sandbox
    replaces it, or the workspace stops; never "started" and mute. What to answer the call."""
    why = f"the sandbox did not answer {late.op!r} within {late.timeout:g}s"
    if sandbox is not supervisor.sandbox or supervisor.stopping.is_set():
        return why
    try:
        sandbox.client.call("hello", {}, timeout=PING_SECONDS)
        return why  # alive: only that call was slow
    except AgentGone:
        if sandbox.client.delivering:  # our reader waits on a client that is not reading:
            return f"{why} (its answers wait behind a client that stopped reading)"
    except PyroError:
        return why
    why = f"{why}, nor a ping within {PING_SECONDS:g}s"
    if not restart(supervisor, sandbox, f"the sandbox stopped answering ({why})"):
        error = f"the sandbox stopped answering ({why})"
        threading.Thread(target=stop_after_answers, args=(supervisor, error), daemon=True).start()
        return f"{why}: the workspace was stopped"
    return f"{why}: it was restarted (/workspace is intact, its processes were ended)"


# How long a stop waits for the answers in flight (the one that says why among them).
ANSWERS_SECONDS = 5.0


def stop_after_answers(supervisor: Supervisor, error: str) -> None:
    """Stop the workspace once the requests in flight are answered (a stop ends this
    process: called from a request, it ended it before its answer); stopped at once in
    its record, as shutdown does first."""
    supervisor.store.update(
        supervisor.workspace_id, state="stopped", supervisor_pid=None, last_error=error
    )
    deadline = time.monotonic() + ANSWERS_SECONDS
    while supervisor.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    supervisor.shutdown("stopped", error=error)


def answer_late(
    supervisor: Supervisor, sandbox: Sandbox, late: PyroError, request: dict[str, Any]
) -> str | None:
    """A call the agent did not answer in time: the sandbox replaced if it is mute
    (restart_if_mute); an exec's entry still goes in the history, as one that ran out of
    time (exit 124, its output lost: "the complete exec history"). What to answer (None:
    another failure, answered as it is)."""
    if not isinstance(late, AgentTimeout):
        return None
    said = restart_if_mute(supervisor, sandbox, late)
    if late.op == "exec":
        result = {"exit_code": 124, "duration_ms": int(late.timeout * 1000), "stderr": said}
        with contextlib.suppress(PyroError):  # a workspace gone meanwhile: nothing to keep
            supervisor.history.record(request, result)
    return said


def watch_agent(supervisor: Supervisor, sandbox: Sandbox) -> None:
    """A broken agent stream with the engine still up: no call can be answered any
    more, so the workspace is stopped and says why (never "started" and mute)."""
    sandbox.client.ended.wait()
    with contextlib.suppress(subprocess.TimeoutExpired):
        sandbox.process.wait(timeout=2.0)  # an engine on its way out: watch_engine
    if sandbox is supervisor.sandbox and sandbox.alive() and not supervisor.stopping.is_set():
        reason = sandbox.client.close_reason
        supervisor.shutdown("stopped", error=f"the sandbox agent's stream broke ({reason})")


def status(supervisor: Supervisor) -> dict[str, Any]:
    """A supervisor's answer to supervisor_status, also while a reset or a restart boots
    its new sandbox (then the one it boots: asked with none, the request died unanswered)."""
    with supervisor.reboot_lock:
        sandbox = supervisor.sandbox
    alive = sandbox is not None and sandbox.alive()
    return {
        "pid": os.getpid(),
        "engine_pid": sandbox.pid if sandbox else None,
        "engine_alive": alive,
        "hello": sandbox.hello if sandbox else None,
        "streams": True,  # reads the baseline itself for a reset (supervisor_reboot)
    }


class InFlight:
    """The requests a supervisor is answering, from their frame to their answer (an exec
    is recorded in the history after the guest answered it): the idle watch never stops
    a workspace while one is, the agent's pending calls alone leave gaps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __bool__(self) -> bool:
        return self._count > 0

    def run(self, work: Callable[..., object], *args: object) -> None:
        try:
            work(*args)
        finally:
            with self._lock:
                self._count -= 1

    def enter(self) -> InFlight:
        """Count a request as it is read (before it waits for a worker)."""
        with self._lock:
            self._count += 1
        return self


# How often the lifetime watch reads the record: an extension, a new idle_stop_seconds and
# new activity count within this long, without a restart (one indexed read each time).
LIFETIME_POLL_SECONDS = 1.0


def watch_ttl(supervisor: Supervisor) -> None:
    """Both clocks of lifetime.py, read from the record each round: at ``expires_at`` the
    workspace is deleted, past its idle stop it is stopped (a call still being answered,
    a long exec, counts as activity)."""
    since = time.time()
    while not supervisor.stopping.is_set():
        record = supervisor.store.get(supervisor.workspace_id)
        if record is None:
            supervisor.shutdown("deleted")
            return
        now = time.time()
        if lifetime.due(record["expires_at"], now):
            supervisor.shutdown("expired")
            return
        sandbox = supervisor.sandbox
        if (
            lifetime.idle_due(record, now, since)
            and sandbox is not None
            and not sandbox.client.busy
            and not supervisor.in_flight
        ):
            idle = record["idle_stop_seconds"]
            supervisor.shutdown("stopped", error=f"idle stop: no activity for {idle}s")
            return
        wait = min(float(record["expires_at"]) - now, LIFETIME_POLL_SECONDS)
        supervisor.stopping.wait(max(wait, 0.0))
