"""What a workspace's supervisor watches while it serves: its engine process, the agent's
stream, and the workspace's lifetime; each ends or restarts the sandbox and says why."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from .. import lifetime
from ..engines.base import Sandbox

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
    with supervisor.reboot_lock:
        if sandbox is not supervisor.sandbox or supervisor.stopping.is_set():
            return True  # a reset or stop took over
        supervisor.sandbox = None
        # What the engine left (runsc's state, cgroups) is cleaned up beside the new boot:
        # the workspace answers again sooner.
        threading.Thread(target=sandbox.kill, daemon=True).start()
        try:
            supervisor._boot_sandbox()
        except Exception:  # reported as the stop's reason below
            return False
    supervisor.store.update(
        supervisor.workspace_id,
        last_error=f"the sandbox went over its {limit} and was restarted: /workspace is "
        "intact; its processes, shells and services were ended",
    )
    return True


def watch_agent(supervisor: Supervisor, sandbox: Sandbox) -> None:
    """A broken agent stream with the engine still up: no call can be answered any
    more, so the workspace is stopped and says why (never "started" and mute)."""
    sandbox.client.ended.wait()
    with contextlib.suppress(subprocess.TimeoutExpired):
        sandbox.process.wait(timeout=2.0)  # an engine on its way out: watch_engine
    if sandbox is supervisor.sandbox and sandbox.alive() and not supervisor.stopping.is_set():
        reason = sandbox.client.close_reason
        supervisor.shutdown("stopped", error=f"the sandbox agent's stream broke ({reason})")


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
        ):
            idle = record["idle_stop_seconds"]
            supervisor.shutdown("stopped", error=f"idle stop: no activity for {idle}s")
            return
        wait = min(float(record["expires_at"]) - now, LIFETIME_POLL_SECONDS)
        supervisor.stopping.wait(max(wait, 0.0))
