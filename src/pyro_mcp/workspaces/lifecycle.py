"""Workspace lifecycle on the host: create, list, update, status, logs, stop, start, delete.

The host side never talks to an engine directly: each running workspace has a supervisor
process (see supervisor.py) reached over its Unix socket.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, cast

from .. import lifetime, validation
from ..engines.agent_client import AgentCallError, AgentClient
from ..errors import NotFoundError, SandboxError, StateError, ValidationError
from ..hostcmd import start_detached
from ..lifetime import Lifetime
from ..paths import socket_address
from ..runtime import Runtime
from . import fork_copy, owners, suspend
from . import secrets as secret_store
from .handle import Handle
from .layout import WorkspaceLayout, disk_full, sweep, uses_image
from .store import Store
from .streams import STREAM_TIMEOUT, tar_source
from .supervisor_start import SPARES

SUPERVISOR_START_TIMEOUT = 300.0
SUPERVISOR_MODULE = "pyro_mcp.workspaces.supervisor"
STOP_TIMEOUT = 30.0


def empty_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:"):
        pass
    return buf.getvalue()


def remove_workspace(layout: WorkspaceLayout, store: Store) -> None:
    """A workspace whose sandbox is gone: files first (a failure keeps the record, for a
    retry), then the record."""
    layout.remove()
    store.delete(layout.root.name)


class WorkspaceLifecycle:
    def __init__(self, runtime: Runtime, lifetime: Lifetime) -> None:
        self.runtime = runtime
        self.lifetime = lifetime
        self.store = lifetime.store
        self._clients: dict[str, tuple[int | None, AgentClient]] = {}
        self._lock = threading.Lock()

    # -- records -------------------------------------------------------------------------
    def layout(self, workspace_id: str) -> WorkspaceLayout:
        return WorkspaceLayout(self.runtime.home, workspace_id)

    def record(self, workspace_id: str, *, refresh: bool = True) -> dict[str, Any]:
        if not isinstance(workspace_id, str) or not workspace_id:
            raise NotFoundError("workspace_id is required")
        self.sweep_abandoned(workspace_id)
        record = self.store.get(workspace_id)
        if record is None:
            gone = self.store.expired(workspace_id)
            if gone is not None:
                raise lifetime.expired_error("workspace", workspace_id, gone["ttl_seconds"])
            raise NotFoundError(f"workspace {workspace_id!r} does not exist")
        if lifetime.due(record["expires_at"]):
            self._expire(record)
            raise lifetime.expired_error("workspace", workspace_id, record["ttl_seconds"])
        if refresh:
            record = self.refresh(record)
        return record

    def supervised(self, record: dict[str, Any]) -> bool:
        """Whether the record's supervisor process is alive (and is that one)."""
        home = self.runtime.home
        return owners.is_supervisor(home, record["workspace_id"], record["supervisor_pid"])

    def refresh(self, record: dict[str, Any]) -> dict[str, Any]:
        """A workspace whose supervisor died is stopped, whatever the record said."""
        if (
            record["state"] == "starting"
            and (time.time() - float(record["last_activity_at"]) > SUPERVISOR_START_TIMEOUT + 60)
            and not self.supervised(record)
        ):
            error = "the start of this workspace was interrupted"
            self.store.update(record["workspace_id"], state="stopped", last_error=error)
            return dict(record, state="stopped", last_error=error)
        if record["state"] == "started" and not self.supervised(record):
            error = record["last_error"] or "the workspace supervisor is no longer running"
            self.store.update(
                record["workspace_id"], state="stopped", supervisor_pid=None, last_error=error
            )
            self.drop_client(record["workspace_id"])
            record = dict(record, state="stopped", supervisor_pid=None, last_error=error)
        return record

    def touch(self, workspace_id: str, when: float | None = None) -> float:
        """The activity rule: every call that acts on a workspace bumps last_activity_at;
        pure reads (status, list, logs, file list/read, diff, export …) never do."""
        stamp = time.time() if when is None else when
        self.store.update(workspace_id, last_activity_at=stamp)
        return stamp

    def redactor(self, workspace_id: Any) -> secret_store.Redactor:
        """The workspace's redactor (none for something that cannot name a workspace)."""
        try:
            validation.identifier("workspace", workspace_id)
        except ValidationError:
            return secret_store.Redactor(())
        return secret_store.redactor(self.layout(workspace_id).secrets_dir)

    def redact(self, workspace_id: str, text: str) -> str:
        """Model-facing text never shows a secret value (reads and diffs too, unlike 3.x)."""
        return self.redactor(workspace_id).text(text)

    def reap_expired(self) -> list[str]:
        self.sweep_abandoned()
        sweep(self.runtime.home)
        now = time.time()
        reaped = []
        for record in self.store.all():
            if lifetime.due(record["expires_at"], now):
                self._expire(record)
                reaped.append(record["workspace_id"])
        return reaped

    def _expire(self, record: dict[str, Any]) -> None:
        workspace_id, ttl = record["workspace_id"], record["ttl_seconds"]
        lifetime.expire("workspace", workspace_id, ttl, lambda: self.destroy(record), self.store)

    # -- creates and starts whose process died part-way -----------------------------------
    def sweep_abandoned(self, workspace_id: str | None = None) -> None:
        """Finish what a killed create or start left behind (its owner is gone): a create is
        undone whole, a start whose supervisor never came up ends stopped. Every step can
        be repeated, so sweeps racing each other or killed part-way are harmless."""
        for claim in self.store.owners(workspace_id):
            if owners.alive(claim["owner"]):
                continue
            if claim["kind"] == "create":
                self.undo_create(claim["workspace_id"])
            else:
                self._abandoned_start(claim["workspace_id"])

    def undo_create(self, workspace_id: str) -> None:
        """Remove every trace of an unfinished create: supervisor (booting or not), engine,
        directory, then the record with its owner's name (so a kill here is swept again)."""
        layout = self.layout(workspace_id)
        owners.end_processes(self.runtime.home, workspace_id, layout.root)
        self.drop_client(workspace_id)
        layout.remove()
        self.store.delete(workspace_id)

    def _abandoned_start(self, workspace_id: str) -> None:
        record = self.store.get(workspace_id)
        if record is not None and record["state"] == "starting":
            if owners.supervisors(self.runtime.home, workspace_id):
                return  # still booting: the supervisor records how that ends
            error = "the start of this workspace was interrupted"
            self.store.update(workspace_id, state="stopped", supervisor_pid=None, last_error=error)
        self.store.release(workspace_id)

    # -- supervisor ----------------------------------------------------------------------
    def spawn(self, workspace_id: str) -> dict[str, Any]:  # the supervisor's start-up status
        return self.wait_status(workspace_id, self.launch(workspace_id))

    def launch(self, workspace_id: str) -> subprocess.Popen[bytes]:
        """The workspace's supervisor started, not waited for (``wait_status``): a fork
        launches it while it copies the images the supervisor waits for (fork_copy.py)."""
        self.drop_client(workspace_id)
        layout = self.layout(workspace_id)
        layout.status.unlink(missing_ok=True)
        job = {"home": str(self.runtime.home), "cache": str(self.runtime.cache)}
        job["workspace"] = workspace_id
        first = SPARES.take({**job, "log": str(layout.log), "cwd": str(layout.root)})
        if first is None:  # none started ahead (or not for this environment)
            options = [arg for key, value in job.items() for arg in (f"--{key}", value)]
            cmd = [sys.executable, "-m", SUPERVISOR_MODULE, *options]
            first = start_detached(cmd, layout.log, cwd=layout.root)
        return first

    def wait_status(self, workspace_id: str, first: subprocess.Popen[bytes]) -> dict[str, Any]:
        """How the boot of the supervisor ``launch`` started ended (raises if it failed)."""
        layout = self.layout(workspace_id)
        # It forks the real supervisor and exits 0 at once; anything else (a spare killed
        # before it read its job) leaves no process that would ever write the status.
        code = first.wait()
        deadline = time.monotonic() + SUPERVISOR_START_TIMEOUT
        while time.monotonic() < deadline:
            if layout.status.exists():
                status = json.loads(layout.status.read_text())
                if status.get("ok"):
                    SPARES.prepare(SUPERVISOR_MODULE)  # for the next one
                    return cast(dict[str, Any], status)
                raise SandboxError(f"workspace {workspace_id!r} failed to start: {status['error']}")
            if code != 0:
                raise SandboxError(
                    f"workspace {workspace_id!r} failed to start: its supervisor ended "
                    f"before it began (exit status {code})"
                )
            time.sleep(0.005)
        raise SandboxError(f"workspace {workspace_id!r} did not start within the time limit")

    def client(self, workspace_id: str) -> AgentClient:
        """A connection to the workspace's current supervisor (a cached one is dropped when
        the supervisor changed, e.g. a dying one after a crash and its successor)."""
        record = self.store.get(workspace_id)
        pid = record["supervisor_pid"] if record else None
        with self._lock:
            cached = self._clients.get(workspace_id)
            if cached is not None and not cached[1].closed and cached[0] == pid:
                return cached[1]
            if cached is not None:
                cached[1].close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with socket_address(self.layout(workspace_id).socket) as address:
                    sock.connect(address)
            except OSError as exc:
                sock.close()
                raise StateError(f"workspace {workspace_id!r} is not running ({exc})") from exc
            client = AgentClient(
                sock.makefile("rb"), sock.makefile("wb"), name=f"workspace {workspace_id}"
            )
            self._clients[workspace_id] = (pid, client)
            return client

    def drop_client(self, workspace_id: str) -> None:
        with self._lock:
            cached = self._clients.pop(workspace_id, None)
        if cached is not None:
            cached[1].close()

    def require_started(self, workspace_id: str, action: str) -> dict[str, Any]:
        record = self.record(workspace_id)
        if record["state"] != "started":
            raise StateError(
                f"workspace {workspace_id!r} must be in 'started' state before {action} "
                f"(it is {record['state']}; run 'pyro workspace start {workspace_id}')"
            )
        return record

    def admit_start(self, workspace_id: str) -> bool:
        """A stopped workspace becomes 'starting' as this process's if the cap has a slot
        (start and reset alike), once no fork is copying its disks (fork_copy.py); False if
        another client is starting it right now."""
        deadline = time.monotonic() + SUPERVISOR_START_TIMEOUT
        while True:
            admitted = self.store.mark_starting_admitted(
                workspace_id, self.lifetime.admit_workspace, owners.current()
            )
            if admitted or not fork_copy.copying(self.store, workspace_id):
                return admitted
            if time.monotonic() > deadline:
                return False
            time.sleep(fork_copy.POLL_SECONDS)
            self.sweep_abandoned(workspace_id)  # a copier that died

    def wait_started(self, workspace_id: str) -> None:
        deadline = time.monotonic() + SUPERVISOR_START_TIMEOUT
        while time.monotonic() < deadline:
            self.sweep_abandoned(workspace_id)  # the other client may have died
            record = self.store.get(workspace_id)
            if record is None or record["state"] != "starting":
                return
            time.sleep(0.02)

    def stop_supervisor(self, record: dict[str, Any], keep_memory: bool = False) -> None:
        """``keep_memory``: a QEMU VM's memory saved first (stop --suspend, suspend.py)."""
        workspace_id = record["workspace_id"]
        pid = record["supervisor_pid"]
        if self.supervised(record):
            try:
                args = {"suspend": True} if keep_memory else None
                self.client(workspace_id).call("supervisor_stop", args, timeout=10)
            except (StateError, SandboxError):
                pass
            wait = suspend.STOP_WAIT_SECONDS if keep_memory else STOP_TIMEOUT
            deadline = time.monotonic() + wait
            while self.supervised(record) and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.supervised(record):
                with contextlib.suppress(ProcessLookupError):  # it may end just now
                    os.killpg(pid, signal.SIGKILL)
        self.drop_client(workspace_id)

    def destroy(self, record: dict[str, Any]) -> None:
        self.stop_supervisor(record)
        remove_workspace(self.layout(record["workspace_id"]), self.store)

    # -- create --------------------------------------------------------------------------
    def new_record(self, **fields: Any) -> dict[str, Any]:
        now = time.time()
        ttl = fields["ttl_seconds"]  # its range: the Param (operations/params.py TtlSeconds)
        return {
            "workspace_id": validation.new_id(),
            "created_at": now,
            "last_activity_at": now,
            "expires_at": now + ttl,
            "state": "starting",
            "command_count": 0,
            "reset_count": 0,
            "last_command": None,
            "last_reset_at": None,
            "last_error": None,
            "supervisor_pid": None,
            **fields,
            "ttl_seconds": ttl,
            "idle_stop_seconds": validation.idle_stop_seconds(fields.get("idle_stop_seconds", 0)),
        }

    def boot_fresh(
        self, record: dict[str, Any], seed: bytes | Path, guest_links: bool = False
    ) -> dict[str, Any]:
        """Fresh /workspace, supervisor up, seed (a tar's bytes, or a tar file: streamed,
        any size) unpacked. Raises with everything cleaned."""
        workspace_id = record["workspace_id"]
        layout = self.layout(workspace_id)
        real_vm = self.runtime.engine_by_key(record["engine"]).engine.info().real_vm
        layout.fresh_volume(uses_image(record["engine"]), record["disk_mib"])
        suspend.forget(layout)  # a reset of a suspended workspace: a fresh system, no memory
        if not real_vm and not guest_links:
            # Filled before the sandbox exists: by its supervisor, the one that sees gVisor's
            # mounted image (volume_mount.fill), or here for a plain directory.
            if uses_image(record["engine"]):
                layout.leave_seed(seed)
                return dict(self.spawn(workspace_id).get("unpacked") or {})
            result = layout.unpack_into_volume(seed)
            self.spawn(workspace_id)
            return result
        self.spawn(workspace_id)
        args = {"dest": "/workspace", "guest_links": guest_links}
        with tar_source(seed) as data:
            try:
                result, _ = Handle(self, workspace_id).call("tar_in", args, data, STREAM_TIMEOUT)
            except AgentCallError as exc:
                raise disk_full(exc, record["disk_mib"]) from None
        return result
