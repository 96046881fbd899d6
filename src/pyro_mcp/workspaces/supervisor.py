"""The per-workspace supervisor: a small detached host process that owns the sandbox.

It boots the engine, holds the one agent stream, serves clients (CLI, SDK, MCP server) on a
Unix socket in the workspace's private directory with the same framed protocol, stops the
workspace when its TTL ends, and records a crash of the engine in the state database.
Run as ``python -m pyro_mcp.workspaces.supervisor --home H --cache C --workspace ID``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import lifetime
from ..engines.agent_client import AgentGone
from ..engines.base import Sandbox
from ..errors import PyroError
from ..guest.chunks import Uploads, serve
from ..guest.protocol import FrameTooLarge, ProtocolError, encode, read_frame, split_output
from ..guest.workers import Workers
from ..paths import socket_address
from ..runtime import Runtime
from . import fork_copy, guest_setup, images, suspend, system_layer, volume_mount
from . import supervisor_start as start
from .history import History
from .layout import WorkspaceLayout, remove_quietly
from .lifecycle import remove_workspace
from .paths import host_compat_args
from .ports import SERVICE_OPS, PortTable, validate_ports
from .service_records import ServiceRecords
from .store import Store
from .streams import unpack_in_guest
from .system_layer import Beside
from .watchers import InFlight, agent_timeout, answer_late, status, watch_engine, watch_ttl

if TYPE_CHECKING:  # imported when a workspace has a network (~20-40 ms of every start)
    from ..network.proxy import EgressProxy

# How long a stop waits for a reset that is booting the new sandbox.
STOP_WAIT_FOR_RESET = 150.0


class Supervisor:
    def __init__(self, runtime: Runtime, store: Store, workspace_id: str) -> None:
        self.runtime = runtime
        self.store = store
        self.workspace_id = workspace_id
        self.layout = WorkspaceLayout(runtime.home, workspace_id)
        self.sandbox: Sandbox | None = None
        self.listener: socket.socket | None = None
        self.stopping = threading.Event()
        self.host_root: str | None = None
        self.reboot_lock = threading.Lock()
        self.workers = Workers("pyro-supervisor")
        self.in_flight = InFlight()  # the idle watch waits for them (watchers.py)
        self.history = History(store, workspace_id, self.layout.secrets_dir)
        self.proxy: EgressProxy | None = None  # the guest's way out, started with a network
        self.unpacked: dict[str, Any] | None = None  # a pending seed, unpacked at boot
        self.services = ServiceRecords(self.layout.root / "services.json")
        self.resume_from: Path | None = None  # a suspended VM's memory (suspend.boot)

    # -- start-up --------------------------------------------------------------------------
    def boot(self) -> None:
        fork_copy.before_boot(self.layout)  # a fork's images in place first
        images.remove_partials(self.layout)  # and no snapshot copy a crash left
        errors = suspend.boot(self)  # resumed, or booted with its services started again
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.layout.socket.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            with socket_address(self.layout.socket) as address:
                listener.bind(address)
        finally:
            os.umask(old)
        listener.listen(64)
        self.listener = listener
        self.store.update(
            self.workspace_id,
            state="started",
            supervisor_pid=os.getpid(),
            last_error="; ".join(errors) or None,
        )

    def _boot_sandbox(self, seed: bytes | Path | None = None) -> dict[str, Any] | None:
        """A new sandbox on /workspace; ``seed`` (a reset's host-made tar) or a seed the create
        left pending unpacked into it beside the boot (volume_mount.Filling): its result."""
        record = self.store.get(self.workspace_id)
        if record is None:
            raise PyroError(f"workspace {self.workspace_id!r} does not exist")
        env = self.runtime.environment(record["environment"])
        choice = self.runtime.engine_by_key(record["engine"])
        real_vm = choice.engine.info().real_vm
        system = Beside(system_layer.boot_args, self.layout, record, env.rootfs_dir, real_vm)
        if not choice.profile.has_guest_workspace:
            self.host_root = str(self.layout.volume_dir)
        elif not real_vm:
            volume_mount.prepare(self.layout)
        filling = volume_mount.fill(self.layout, seed)
        if record["network_policy"] != "off" and self.proxy is None:
            from ..network.policy import network_dir
            from ..network.proxy import EgressProxy

            self.proxy = EgressProxy(network_dir(self.layout.root), self.layout.secrets_dir)
        try:
            sandbox = self.runtime.boot(
                choice,
                env,
                f"{self.workspace_id}-{uuid.uuid4().hex[:6]}",  # a fresh engine id every boot
                self.layout.runtime_dir,
                vcpu_count=record["vcpu_count"],
                mem_mib=record["mem_mib"],
                network=record["network_policy"] != "off",
                workspace_dir=None if real_vm else self.layout.volume_dir,
                workspace_disk=self.layout.disk if real_vm else None,
                egress_proxy=str(self.proxy.socket_path) if self.proxy else None,
                memory_image=self.resume_from,
                **system.result(),
            )
        except BaseException:
            filling.join()  # nothing is written on once this start has failed
            raise
        try:
            unpacked = filling.wait()
            guest_setup.configure(sandbox, record, choice, self.proxy, self.layout.secrets_dir)
        except BaseException:
            sandbox.kill()
            raise
        self.ports = PortTable(sandbox)
        self.sandbox = sandbox
        if self.listener is not None:  # serving already: watch the new engine too
            threading.Thread(target=watch_engine, args=(self, sandbox), daemon=True).start()
        self.unpacked = unpacked or self.unpacked  # a create's, for its start-up status
        return unpacked

    def reset(
        self, seed: bytes | Path = b"", guest_links: bool = False, snapshot: Any = None
    ) -> dict[str, Any]:
        """Reset: a fresh sandbox from the pristine environment and /workspace from ``seed``
        (a tar's bytes or file, e.g. the baseline; ``guest_links``: a named snapshot the
        guest made), or both disk images from the full snapshot in the directory
        ``snapshot`` (images.py), without restarting this supervisor.

        With a host-directory /workspace (gVisor, host compat) the old sandbox is torn down
        and a host-made seed (the baseline) unpacked into the new directory while the new
        one boots. A VM's disk and sockets live in one place, so a VM is stopped first.
        """
        with self.reboot_lock:
            record = self.store.get(self.workspace_id)
            if record is None:
                raise PyroError(f"workspace {self.workspace_id!r} does not exist")
            real_vm = self.runtime.engine_by_key(record["engine"]).engine.info().real_vm
            source = images.snapshot_at(snapshot, self.runtime.home) if snapshot else None
            old = self.sandbox  # (a snapshot gone meanwhile: said above, the sandbox kept)
            self.sandbox = None
            teardown: threading.Thread | None = None
            renewing = Beside(system_layer.renew, self.layout, record, source)  # a fresh system
            self.services.clear()  # and no services
            try:
                if old is not None:
                    for name in list(self.ports.by_service):
                        self.ports.release(name)
                if real_vm:
                    if old is not None:
                        old.kill()
                    self.layout.fresh_volume(True, record["disk_mib"], source)
                else:
                    aside = volume_mount.replace(self.layout, record, source)
                    teardown = threading.Thread(target=_teardown, args=(old, aside), daemon=True)
                    teardown.start()
                old = None  # the teardown owns it now (or it is gone)
                renewing.result()
                unpacked = self._boot_sandbox(None if real_vm or guest_links else seed or None)
                if seed and unpacked is None:  # a VM's, a guest-made snapshot's: in the guest
                    unpacked = unpack_in_guest(self.sandbox, seed, guest_links)
            finally:
                if old is not None:  # failed before handing it over: never leave it running
                    old.kill()
                if teardown is not None:
                    teardown.join()  # the old sandbox is gone before we answer
        return {"rebooted": True, "unpacked": unpacked or {}}

    # -- serving ---------------------------------------------------------------------------
    def serve(self) -> None:
        assert self.listener is not None and self.sandbox is not None
        threading.Thread(target=watch_engine, args=(self, self.sandbox), daemon=True).start()
        threading.Thread(target=watch_ttl, args=(self,), daemon=True).start()
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                break
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        writer = conn.makefile("wb")
        lock, uploads = threading.Lock(), Uploads()  # uploads: this client's, by request id

        def send(message: dict[str, Any], data: bytes = b"") -> None:
            try:
                frame = encode(message, data)
            except FrameTooLarge as exc:  # answered as an error: the stream stays in step
                frame = encode({"id": message.get("id"), "ok": False, "error": str(exc)})
            with lock:
                try:
                    writer.write(frame)
                    writer.flush()
                except (OSError, ValueError):
                    pass

        try:
            while True:
                message, data = read_frame(reader)
                if not uploads.route(message, data):  # else an upload's chunk: passed on
                    request = (self._request, message, uploads.body(message, data), send)
                    self.workers.submit(self.in_flight.enter().run, serve, *request)
        except (ProtocolError, OSError):
            pass
        finally:
            for stream in (writer, reader, conn):
                try:
                    stream.close()
                except OSError:
                    pass

    def _request(self, message: dict[str, Any], data: Any, send: Any) -> None:
        req_id = message.get("id")
        op = str(message.get("op"))
        args = dict(message.get("args") or {})
        if op == "supervisor_status":
            send({"id": req_id, "ok": True, "result": status(self)})
            return
        if op == "supervisor_reboot":  # a reset's wire name (clients of every version send it)
            try:
                seed = self.layout.baseline if args.get("baseline") else data  # read here
                result = self.reset(seed, bool(args.get("guest_links")), args.get("images"))
                send({"id": req_id, "ok": True, "result": result})
            except Exception as exc:  # any failure is answered (and stops the workspace)
                error = str(exc) if isinstance(exc, PyroError) else f"reset failed: {exc!r}"
                send({"id": req_id, "ok": False, "error": error, "kind": "failed"})
                threading.Thread(
                    target=self.shutdown, args=("stopped", str(exc)), daemon=True
                ).start()
            return
        if op == images.COPY_OP:  # a full snapshot's or a fork's copy of the disk images
            send(images.answer(self, req_id, args))
            return
        if op == "supervisor_stop":
            send({"id": req_id, "ok": True, "result": {"stopping": True}})
            stop = ("stopped", None, bool(args.get("suspend")))  # --suspend: suspend.py
            threading.Thread(target=self.shutdown, args=stop, daemon=True).start()
            return
        request = dict(args)  # as the client sent it (the history records this)
        if self.host_root is not None:
            args = host_compat_args(self.host_root, op, args)
        with self.reboot_lock:  # never talk to a sandbox that is being replaced
            sandbox = self.sandbox
        if sandbox is None:
            error = "the workspace is restarting"
            send({"id": req_id, "ok": False, "error": error, "kind": "failed"})
            return

        def on_event(kind: str, chunk: bytes) -> None:
            send({"id": req_id, "event": kind}, chunk)

        try:
            result, payload = self._call(sandbox, op, args, data, on_event)
            if op == "exec":  # recorded here, so a client that died cannot lose it
                entry = self.history.record(request, split_output(result, payload))
                # the output stays raw bytes in the frame's data (it is the same, redacted)
                result.update((k, v) for k, v in entry.items() if k not in ("stdout", "stderr"))
        except PyroError as exc:  # a mute agent is replaced before the answer (watchers.py)
            said = answer_late(self, sandbox, exc, request)
            kind = "invalid" if isinstance(exc, ValueError) else "failed"
            send({"id": req_id, "ok": False, "error": said or str(exc), "kind": kind})
            return
        send({"id": req_id, "ok": True, "result": result}, payload)

    def _call(
        self, box: Sandbox, op: str, args: dict[str, Any], data: Any = b"", emit: Any = None
    ) -> tuple[dict[str, Any], bytes]:
        """One agent call, with the services' side on the host: published ports, records."""
        request = dict(args)
        ports = validate_ports(args.pop("published_ports", None)) if op == "service_start" else []
        result, payload = box.client.call(op, args, data, emit, agent_timeout(op, args))
        if ports and result.get("state") == "running":
            result = self.ports.publish_or_fail(args["name"], ports, result)
        if op in SERVICE_OPS:
            result = self.services.after(op, request, self.ports.after(op, args, result))
        return result, payload

    # -- shutdown ------------------------------------------------------------------------------
    def _remove(self) -> None:
        remove_workspace(self.layout, self.store)

    def shutdown(self, reason: str, error: str | None = None, keep: bool = False) -> None:
        """Stop serving, record the new state at once, then tear the sandbox down (``keep``:
        suspended, its memory saved first; the state is recorded once the image is whole).

        The state is recorded before the (possibly slow) teardown, so a `start` racing with
        it boots a new sandbox (each boot has its own engine id) instead of seeing a ghost.
        """
        if self.stopping.is_set():
            return
        self.stopping.set()
        # A reset in progress gets up to STOP_WAIT_FOR_RESET to finish, so its new sandbox
        # is torn down below; one that takes longer (a huge /workspace) is left to die with
        # this process and its process group.
        locked = self.reboot_lock.acquire(timeout=STOP_WAIT_FOR_RESET)
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
            self.layout.socket.unlink(missing_ok=True)
        if reason == "stopped" and not keep:
            self.store.update(
                self.workspace_id, state="stopped", supervisor_pid=None, last_error=error
            )
        if self.sandbox is not None:
            if self.sandbox.alive():
                try:
                    self.sandbox.client.call("sync", timeout=10)
                except (PyroError, AgentGone):
                    pass
            if keep:
                suspend.save(self, self.sandbox)
            self.sandbox.stop(grace=5.0)  # (a suspended one has ended already)
        volume_mount.detach(self.layout.volume_dir)
        system_layer.detach_root(self.layout)
        if reason == "expired":
            record = self.store.get(self.workspace_id)
            # If the files cannot go, the record stays for the next reap.
            with contextlib.suppress(PyroError):
                if record is None:
                    self._remove()
                else:
                    ttl = record["ttl_seconds"]
                    lifetime.expire("workspace", self.workspace_id, ttl, self._remove, self.store)
        if locked:
            self.reboot_lock.release()
        os._exit(0)


def _teardown(sandbox: Sandbox | None, volume: Path | None) -> None:
    try:
        if sandbox is not None:
            sandbox.kill()
    finally:
        if volume is not None:
            remove_quietly(volume)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pyro-workspace-supervisor")
    for name in ("--home", "--cache", "--workspace"):
        parser.add_argument(name)
    parser.add_argument(start.SPARE_FLAG, action="store_true")  # its job comes later
    opts = parser.parse_args(argv)
    if opts.spare:
        vars(opts).update({k: v for k, v in start.wait_for_job().items() if k in vars(opts)})
    if not (opts.home and opts.cache and opts.workspace):
        parser.error("--home, --cache and --workspace are required")
    start.detach(opts.home, opts.workspace)
    volume_mount.private_namespace()  # still one thread, as unshare needs
    runtime = Runtime(home=opts.home, cache=opts.cache)
    store = Store(runtime.home / "state.db")
    supervisor = Supervisor(runtime, store, opts.workspace)
    try:
        supervisor.boot()
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        start.write_status(supervisor.layout.status, {"ok": False, "error": message})
        store.update(opts.workspace, state="stopped", supervisor_pid=None, last_error=message)
        sys.exit(1)
    booted = {"ok": True, "pid": os.getpid(), "unpacked": supervisor.unpacked}
    start.write_status(supervisor.layout.status, booted)
    supervisor.serve()


if __name__ == "__main__":
    main()
