"""WorkspaceManager: the persistent-workspace operations behind every surface."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import IO, Any

from ..environments.store import InstalledEnvironment
from ..errors import StateError, ValidationError
from ..guest.chunks import CHUNK_BYTES
from ..lifetime import Lifetime, extend
from ..runtime import EngineChoice, Runtime
from . import owners, records
from . import secrets as secret_store
from . import suspend as suspension
from .archives import seed_archive
from .bounds import paged
from .handle import Handle
from .history import kept_dir, read_logs
from .layout import archive_limit
from .lifecycle import WorkspaceLifecycle, empty_tar
from .network import allow_hosts_for, network_info, save_allow_hosts
from .redaction import redact_every_workspace_operation
from .services import service_counts
from .usage import usage

# A new workspace runs no service yet: no call to its guest to count them.
NO_SERVICES = {"service_count": 0, "running_service_count": 0}


@redact_every_workspace_operation
class WorkspaceManager:
    """Create, list, status, logs, update, stop, start and delete; every other operation
    is a function over a workspace's ``handle`` (shells, services, snapshots, files …).
    The records, supervisors and expiry are its ``lifecycle``'s (composition, no mixin)."""

    def __init__(self, runtime: Runtime, lifetime: Lifetime) -> None:
        self.lifecycle = WorkspaceLifecycle(runtime, lifetime)
        self.store = self.lifecycle.store

    def handle(self, ident: Any) -> Handle:
        """The workspace ``ident`` for the operations over it (not looked up yet; named
        apart from ``workspace_id`` so it is not an operation to redact itself)."""
        return Handle(self.lifecycle, ident)

    # -- lifecycle -----------------------------------------------------------------------
    def create(
        self,
        *,
        environment: str,
        vcpu_count: int,
        mem_mib: int,
        ttl_seconds: int,
        network_policy: str,
        allow_host_compat: bool,
        seed_path: str | None,
        name: str | None,
        labels: dict[str, str] | None,
        secrets: Any = None,
        progress: Any = None,
        notify: Any = None,
        allow_hosts: Any = None,
        disk_mib: int,
        idle_stop_seconds: int = 0,
    ) -> dict[str, Any]:
        policy = records.network_policy(network_policy)
        hosts = allow_hosts_for(policy, allow_hosts)
        clean_name = records.workspace_name(name) if name is not None else None
        secret_values = secret_store.resolve(secrets)
        secret_store.check_network(secret_values, policy)
        # Nothing is stored before its secret values are masked: the name and labels neither.
        masked = secret_store.Redactor(secret.value for secret in secret_values)
        clean_name = masked.text(clean_name) if clean_name is not None else None
        clean_labels = masked.labels(records.labels(labels))
        seed, seed_info = _seed(seed_path, disk_mib, self.lifecycle.runtime.home)
        with seed:  # its private spool file, closed (gone) once the create is done
            env, choice = self._admit(environment, allow_host_compat, progress, notify, policy)
            if secret_values and not choice.profile.isolated:
                raise StateError(
                    "secrets are unavailable for host_compat workspaces "
                    "(no sandbox engine works here)"
                )
            record = self.lifecycle.new_record(
                name=clean_name,
                labels=clean_labels,
                environment=env.spec.name,
                environment_version=env.spec.version,
                vcpu_count=vcpu_count,
                mem_mib=mem_mib,
                disk_mib=disk_mib,
                ttl_seconds=ttl_seconds,
                idle_stop_seconds=idle_stop_seconds,
                network_policy=policy,
                allow_host_compat=allow_host_compat,
                engine=choice.key,
                workspace_seed=seed_info,
                secrets=[secret.public() for secret in secret_values],
            )
            self._build(record, seed, secret_values, hosts)
            # A new workspace runs no service yet: no call to its guest to count them.
            created = {**self.lifecycle.record(record["workspace_id"]), **NO_SERVICES}
            return {
                **records.payload(created),
                **network_info(self.lifecycle.layout(created["workspace_id"])),
            }

    def _admit(
        self, environment: str, allow_host_compat: bool, progress: Any, notify: Any, policy: str
    ) -> tuple[InstalledEnvironment, EngineChoice]:
        """Admitted by the cap (before any download), then the environment and engine."""
        self.lifecycle.reap_expired()
        self.lifecycle.lifetime.admit_workspace(self.store.count_active())
        return self.lifecycle.runtime.prepare(
            environment, allow_host_compat, progress, notify, need_network=policy != "off"
        )

    def _build(
        self,
        record: dict[str, Any],
        seed: IO[bytes],
        secret_values: list[secret_store.Secret],
        hosts: list[str],
    ) -> None:
        """Directory, record and running sandbox, or nothing: the create is named as this
        process's before anything exists, so if it dies part-way the next call sweeps what
        it left (lifecycle.sweep_abandoned); the name is dropped once all is done."""
        workspace_id = record["workspace_id"]
        self.store.claim(workspace_id, "create", owners.current())
        try:
            layout = self.lifecycle.layout(workspace_id)
            layout.create()
            with layout.baseline.open("xb") as baseline:
                shutil.copyfileobj(seed, baseline, CHUNK_BYTES)
            save_allow_hosts(layout, hosts)
            if secret_values:
                secret_store.store(layout.secrets_dir, secret_values)
            self.store.insert_admitted(record, self.lifecycle.lifetime.admit_workspace)
            unpacked = self.lifecycle.boot_fresh(record, layout.baseline)
            seed_info = dict(record["workspace_seed"], destination="/workspace")
            seed_info["entry_count"] = unpacked.get("entry_count", 0)
            seed_info["bytes_written"] = unpacked.get("bytes_written", 0)
            self.store.update(workspace_id, workspace_seed=seed_info)
        except BaseException:
            self.lifecycle.undo_create(workspace_id)
            raise
        self.store.release(workspace_id)  # done: from here on an ordinary workspace

    def list_all(
        self, offset: int = 0, limit: int | None = None, budget: int | None = None
    ) -> dict[str, Any]:
        self.lifecycle.reap_expired()
        rows = [self.lifecycle.refresh(r) for r in self.store.all()]
        rows.sort(key=records.sort_key)

        def entry(row: dict[str, Any]) -> dict[str, Any]:
            redactor = self.lifecycle.redactor(row["workspace_id"])
            shown: dict[str, Any] = redactor.value(records.list_entry(self._with_counts(row)))
            return shown

        page, where = paged(rows, entry, offset, limit, budget)
        return {"count": len(page), "workspaces": page, **where}

    def network_of(self, workspace_id: str) -> dict[str, Any]:
        """Its network policy and allowlist, from the record (no call to its guest)."""
        record = self.lifecycle.record(workspace_id)
        layout = self.lifecycle.layout(workspace_id)
        return {"network_policy": record["network_policy"], **network_info(layout)}

    def status(self, workspace_id: str) -> dict[str, Any]:
        record = self._with_counts(self.lifecycle.record(workspace_id))
        layout = self.lifecycle.layout(workspace_id)
        shown = {**records.payload(record), **network_info(layout), **usage(layout, record)}
        return {**shown, "suspended": suspension.suspended(layout)}

    def _with_counts(self, record: dict[str, Any]) -> dict[str, Any]:
        total, running = service_counts(self.handle(record["workspace_id"]), record)
        return {**record, "service_count": total, "running_service_count": running}

    def logs(self, workspace_id: str, **page: Any) -> dict[str, Any]:
        """One page of the history (``history.page_history``'s options), reading only the
        rows it shows."""
        self.lifecycle.record(workspace_id)
        directory = kept_dir(self.lifecycle.layout(workspace_id).root)
        redact = self.lifecycle.redactor(workspace_id).text
        return read_logs(self.store, workspace_id, directory, redact, **page)

    def delete(self, workspace_id: str) -> dict[str, Any]:
        record = self.store.get(workspace_id) if isinstance(workspace_id, str) else None
        if record is None:
            raise ValidationError(f"workspace {workspace_id!r} does not exist")
        self.lifecycle.destroy(record)
        return {"workspace_id": workspace_id, "deleted": True, "reason": "explicit_delete"}

    def stop(self, workspace_id: str, suspend: bool = False) -> dict[str, Any]:
        record = self.lifecycle.record(workspace_id)
        if suspend:
            suspension.check(record)
        if record["state"] == "started":
            self.lifecycle.stop_supervisor(record, keep_memory=suspend)
            self.store.update(workspace_id, state="stopped", supervisor_pid=None)
        self.lifecycle.touch(workspace_id)
        return self.status(workspace_id)

    def start(self, workspace_id: str) -> dict[str, Any]:
        record = self.lifecycle.record(workspace_id)
        if record["state"] != "started":
            if not self.lifecycle.admit_start(workspace_id):
                self.lifecycle.wait_started(workspace_id)  # another client is starting it right now
                self.lifecycle.touch(workspace_id)
                return self.status(workspace_id)
            try:
                self.lifecycle.spawn(workspace_id)
            except BaseException:
                self.store.update(workspace_id, state="stopped")
                raise
            finally:
                self.store.release(workspace_id)
        self.lifecycle.touch(workspace_id)
        return self.status(workspace_id)

    def update(
        self,
        workspace_id: str,
        *,
        name: str | None = None,
        clear_name: bool = False,
        labels: dict[str, str] | None = None,
        clear_labels: list[str] | None = None,
        allow_hosts: list[str] | None = None,
        ttl_seconds: int | None = None,
        idle_stop_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Name, labels, the egress allowlist (which takes effect at once) and the two
        clocks: a new expiry ``ttl_seconds`` from now, and ``idle_stop_seconds``; the
        supervisor's watch reads both from the record, so they count without a restart."""
        if name is not None and clear_name:
            raise ValidationError("use either name or clear_name, not both")
        record = self.lifecycle.record(workspace_id)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = self.lifecycle.redactor(workspace_id).text(
                records.workspace_name(name)
            )
        if clear_name:
            changes["name"] = None
        # Their ranges (to the operator's ceiling) are the Params', checked before this runs.
        if ttl_seconds is not None:
            changes.update(extend(int(ttl_seconds)))
        if idle_stop_seconds is not None:
            changes["idle_stop_seconds"] = int(idle_stop_seconds)
        new_labels = dict(record["labels"])
        new_labels.update(self.lifecycle.redactor(workspace_id).labels(records.labels(labels)))
        for key in clear_labels or []:
            new_labels.pop(records.label_key(key), None)
        if new_labels != record["labels"]:
            changes["labels"] = dict(sorted(new_labels.items()))
        hosts = None
        layout = self.lifecycle.layout(workspace_id)
        if allow_hosts is not None:
            hosts = allow_hosts_for(record["network_policy"], allow_hosts)
            if hosts == network_info(layout)["allow_hosts"]:
                hosts = None
        metadata = {k: v for k, v in changes.items() if record.get(k) != v}
        if not metadata and hosts is None:
            raise ValidationError("workspace update requested no effective metadata change")
        if hosts is not None:
            save_allow_hosts(layout, hosts)
        self.store.update(workspace_id, **metadata, last_activity_at=time.time())
        return self.status(workspace_id)


def _seed(seed_path: str | None, disk_mib: int, home: Path) -> tuple[IO[bytes], dict[str, Any]]:
    """A new workspace's /workspace as a checked tar (a file: a seed is spooled to a private
    one in ``home``, at most ``disk_mib``), and what the record says of it."""
    if seed_path is None:
        return io.BytesIO(empty_tar()), {"mode": "empty", "seed_path": None}
    archive = seed_archive(
        seed_path, label="seed_path", limit=archive_limit(disk_mib), spool_dir=home
    )
    return archive.file, {"mode": archive.mode, "seed_path": str(archive.seed_path)}
