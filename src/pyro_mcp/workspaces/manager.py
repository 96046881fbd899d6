"""WorkspaceManager: the persistent-workspace operations behind every surface."""

from __future__ import annotations

from typing import Any

from .. import hostpaths, validation
from ..engines.agent_client import AgentInvalid
from ..errors import StateError, ValidationError
from ..guest.protocol import split_output
from ..hostpaths import NewEntry
from ..runtime import Runtime
from . import owners, records
from . import secrets as secret_store
from .archives import extract_export, seed_archive, validate_members
from .content import file_content
from .diff import diff_trees
from .disk import DiskMixin
from .history import FIELDS as HISTORY_FIELDS
from .history import History
from .lifecycle import empty_tar
from .network import NetworkMixin
from .patch import parse_patch, plan_patch, summarize_patch
from .paths import normalize_workspace_path
from .redaction import redact_every_workspace_operation
from .services import ServiceMixin
from .shells import ShellMixin
from .snapshots import SnapshotMixin
from .store import Store

MAX_READ_BYTES = 1024 * 1024
MAX_WRITE_BYTES = 1024 * 1024
EXEC_SLACK_SECONDS = 30.0


@redact_every_workspace_operation
class WorkspaceManager(NetworkMixin, SnapshotMixin, ShellMixin, ServiceMixin, DiskMixin):
    def __init__(self, runtime: Runtime, max_active: int, active_vms: Any) -> None:
        super().__init__(runtime, Store(runtime.home / "state.db"))
        self.max_active = max_active
        self.active_vms = active_vms  # callable: how many ephemeral VMs this process runs

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
    ) -> dict[str, Any]:
        vcpu = validation.vcpu_count(vcpu_count)
        mem = validation.mem_mib(mem_mib)
        disk = validation.disk_mib(disk_mib)
        policy = records.network_policy(network_policy)
        hosts = self.allow_hosts_for(policy, allow_hosts)
        clean_name = records.workspace_name(name) if name is not None else None
        secret_values = secret_store.resolve(secrets)
        # Nothing is stored before its secret values are masked: labels neither.
        masked = secret_store.Redactor(value for _, value, _ in secret_values)
        clean_labels = masked.value(records.labels(labels))
        seed_info: dict[str, Any] = {"mode": "empty", "seed_path": None}
        seed = empty_tar()
        if seed_path is not None:
            archive = seed_archive(seed_path, label="seed_path")
            seed = archive.tar_bytes
            seed_info = {"mode": archive.mode, "seed_path": str(archive.seed_path)}
        self.reap_expired()
        self.check_capacity(self.max_active, self.active_vms())
        allow_host_compat = validation.boolean("allow_host_compat", allow_host_compat)
        env = self.runtime.environment(environment, progress)
        choice = self.runtime.choose_engine(
            env, allow_host_compat, notify, need_network=policy != "off"
        )
        if secret_values and not choice.profile.isolated:
            raise StateError(
                "secrets are unavailable for host_compat workspaces (no sandbox engine works here)"
            )
        record = self.new_record(
            name=clean_name,
            labels=clean_labels,
            environment=env.spec.name,
            environment_version=env.spec.version,
            vcpu_count=vcpu,
            mem_mib=mem,
            disk_mib=disk,
            ttl_seconds=ttl_seconds,
            network_policy=policy,
            allow_host_compat=allow_host_compat,
            engine=choice.key,
            workspace_seed=seed_info,
            secrets=[{"name": n, "source_kind": k} for n, _v, k in secret_values],
        )
        self._build(record, seed, secret_values, hosts)
        # A new workspace runs no service yet: no call to its guest to count them.
        created = {**self.record(record["workspace_id"]), "service_count": 0}
        created["running_service_count"] = 0
        return {**records.payload(created), **self.network_info(created)}

    def _build(
        self,
        record: dict[str, Any],
        seed: bytes,
        secret_values: list[tuple[str, str, str]],
        hosts: list[str],
    ) -> None:
        """Directory, record and running sandbox, or nothing: the create is named as this
        process's before anything exists, so if it dies part-way the next call sweeps what
        it left (lifecycle.sweep_abandoned); the name is dropped once all is done."""
        workspace_id = record["workspace_id"]
        self.store.claim(workspace_id, "create", owners.current())
        try:
            layout = self.layout(workspace_id)
            layout.create()
            layout.baseline.write_bytes(seed)
            self.save_allow_hosts(workspace_id, hosts)
            if secret_values:
                secret_store.store(layout.secrets_dir, secret_values)
            self.store.insert_within_capacity(record, self.max_active, self.active_vms())
            unpacked = self.boot_fresh(record, seed)
            seed_info = dict(record["workspace_seed"], destination="/workspace")
            seed_info["entry_count"] = unpacked.get("entry_count", 0)
            seed_info["bytes_written"] = unpacked.get("bytes_written", 0)
            self.store.update(workspace_id, workspace_seed=seed_info)
        except BaseException:
            self.undo_create(workspace_id)
            raise
        self.store.release(workspace_id)  # done: from here on an ordinary workspace

    def list_all(self) -> dict[str, Any]:
        self.reap_expired()
        rows = [self._refresh(r) for r in self.store.all()]
        rows.sort(key=records.sort_key)
        entries = [
            self.redactor(r["workspace_id"]).value(records.list_entry(self._with_counts(r)))
            for r in rows
        ]
        return {"count": len(rows), "workspaces": entries}

    def status(self, workspace_id: str) -> dict[str, Any]:
        record = self._with_counts(self.record(workspace_id))
        return {**records.payload(record), **self.network_info(record)}

    def _with_counts(self, record: dict[str, Any]) -> dict[str, Any]:
        total, running = self.service_counts(record)
        return {**record, "service_count": total, "running_service_count": running}

    def logs(self, workspace_id: str) -> dict[str, Any]:
        self.record(workspace_id)
        entries = self.store.commands(workspace_id)
        for entry in entries:
            entry.pop("workspace_id", None)
            entry["stdout_file"] = entry["stderr_file"] = None
        return {"workspace_id": workspace_id, "count": len(entries), "entries": entries}

    def delete(self, workspace_id: str) -> dict[str, Any]:
        record = self.store.get(workspace_id) if isinstance(workspace_id, str) else None
        if record is None:
            raise ValidationError(f"workspace {workspace_id!r} does not exist")
        self._destroy(record)
        return {"workspace_id": workspace_id, "deleted": True, "reason": "explicit_delete"}

    def stop(self, workspace_id: str) -> dict[str, Any]:
        record = self.record(workspace_id)
        if record["state"] == "started":
            self.stop_supervisor(record)
            self.store.update(workspace_id, state="stopped", supervisor_pid=None)
        self.touch(workspace_id)
        return self.status(workspace_id)

    def start(self, workspace_id: str) -> dict[str, Any]:
        record = self.record(workspace_id)
        if record["state"] != "started":
            if not self.store.mark_starting_within_capacity(
                workspace_id, self.max_active, self.active_vms(), owners.current()
            ):
                self.wait_started(workspace_id)  # another client is starting it right now
                self.touch(workspace_id)
                return self.status(workspace_id)
            try:
                self.spawn(workspace_id)
            except BaseException:
                self.store.update(workspace_id, state="stopped")
                raise
            finally:
                self.store.release(workspace_id)
        self.touch(workspace_id)
        return self.status(workspace_id)

    # -- exec and files ------------------------------------------------------------------
    def exec(
        self,
        workspace_id: str,
        command: str,
        timeout_seconds: float,
        on_output: Any = None,
        secret_env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        command = validation.command(command)
        timeout = validation.timeout_seconds(timeout_seconds)
        record = self.require_started(workspace_id, "workspace_exec")
        env_map = secret_store.env_mapping(secret_env, [s["name"] for s in record["secrets"]])
        args = {
            "command": command,
            "timeout_seconds": timeout,
            "cwd": "/workspace",
            "mkdir_cwd": True,
            "stream": on_output is not None,
            "secret_env": env_map,
        }
        result = split_output(
            *self.call(
                workspace_id, "exec", args, timeout=timeout + EXEC_SLACK_SECONDS, on_event=on_output
            )
        )
        # The supervisor recorded the entry (redacted) before answering: see history.py.
        if "sequence" not in result:  # a supervisor started by an older version does not
            history = History(self.store, workspace_id, self.layout(workspace_id).secrets_dir)
            result = history.record(args, result)
        return {
            "workspace_id": workspace_id,
            "environment": record["environment"],
            "environment_version": record["environment_version"],
            **{key: result[key] for key in HISTORY_FIELDS},
            "sequence": result["sequence"],
            "timed_out": bool(result.get("timed_out")),
            "stdout_truncated": bool(result.get("stdout_truncated")),
            "stderr_truncated": bool(result.get("stderr_truncated")),
        }

    def sync_push(self, workspace_id: str, source_path: str, dest: str) -> dict[str, Any]:
        record = self.require_started(workspace_id, "workspace_sync_push")
        destination = normalize_workspace_path(dest)
        archive = seed_archive(source_path, label="source_path")
        result, _ = self.call(workspace_id, "tar_in", {"dest": destination}, data=archive.tar_bytes)
        self.touch(workspace_id)
        return {
            "workspace_id": workspace_id,
            "execution_mode": records.execution_mode(record["engine"]),
            "workspace_sync": {
                "mode": archive.mode,
                "source_path": str(archive.seed_path),
                "destination": destination,
                "entry_count": result.get("entry_count", 0),
                "bytes_written": result.get("bytes_written", 0),
            },
        }

    def file_list(self, workspace_id: str, path: str, recursive: bool) -> dict[str, Any]:
        record = self.require_started(workspace_id, "workspace_file_list")
        result, _ = self.call(
            workspace_id,
            "file_list",
            {"path": normalize_workspace_path(path), "recursive": bool(recursive)},
        )
        entries = [
            {k: e[k] for k in ("path", "artifact_type", "size_bytes", "link_target")}
            for e in result["entries"]
        ]
        return {
            "workspace_id": workspace_id,
            "path": result["path"],
            "recursive": bool(recursive),
            "entries": entries,
            "truncated": result.get("truncated", False),
            **({"special_files": result["special_files"]} if "special_files" in result else {}),
            "execution_mode": records.execution_mode(record["engine"]),
        }

    def file_read(
        self, workspace_id: str, path: str, max_bytes: int, encoding: str = "utf-8"
    ) -> dict[str, Any]:
        limit = validation.int_in_range("max_bytes", max_bytes, 1, MAX_READ_BYTES)
        how = validation.file_encoding(encoding)
        record = self.require_started(workspace_id, "workspace_file_read")
        result, content = self.call(
            workspace_id, "file_read", {"path": normalize_workspace_path(path), "max_bytes": limit}
        )
        # A pure read: last_activity_at is left alone (the 3.6.0 regression, §2.18).
        return {
            "workspace_id": workspace_id,
            "path": result["path"],
            "size_bytes": result["size_bytes"],
            "max_bytes": limit,
            "truncated": result["truncated"],
            "execution_mode": records.execution_mode(record["engine"]),
            **file_content(
                content, result["truncated"], how, lambda text: self.redact(workspace_id, text)
            ),
        }

    def file_write(self, workspace_id: str, path: str, text: str) -> dict[str, Any]:
        data = validation.text("text", text, allow_nul=True).encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise ValidationError(f"text is larger than {MAX_WRITE_BYTES} bytes (1 MiB)")
        record = self.require_started(workspace_id, "workspace_file_write")
        result, _ = self.call(
            workspace_id, "file_write", {"path": normalize_workspace_path(path)}, data=data
        )
        self.touch(workspace_id)
        return {
            "workspace_id": workspace_id,
            "path": result["path"],
            "size_bytes": result["size_bytes"],
            "bytes_written": result["bytes_written"],
            "execution_mode": records.execution_mode(record["engine"]),
        }

    def patch_apply(self, workspace_id: str, patch: str) -> dict[str, Any]:
        patches = parse_patch(patch)
        record = self.require_started(workspace_id, "workspace_patch_apply")

        def read(path: str) -> str | None:
            try:
                result, content = self.call(
                    workspace_id, "file_read", {"path": path, "max_bytes": MAX_READ_BYTES}
                )
            except AgentInvalid as exc:
                if "does not exist" in str(exc):
                    return None
                raise ValidationError(f"cannot patch {path}: {exc}") from exc
            if result["truncated"]:
                raise ValidationError(f"cannot patch {path}: larger than 1 MiB")
            try:
                return content.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"cannot patch {path}: not UTF-8 text") from None

        plan = plan_patch(patches, read)  # every file computed before anything is written
        for path, text, _status in plan:
            if text is not None:
                self.call(workspace_id, "file_write", {"path": path}, data=text.encode())
        for path, text, _status in plan:
            if text is None:
                self.call(workspace_id, "file_delete", {"path": path})
        self.touch(workspace_id)
        return {
            "workspace_id": workspace_id,
            **summarize_patch(plan),
            "patch": patch,
            "execution_mode": records.execution_mode(record["engine"]),
        }

    def export(self, workspace_id: str, path: str, output_path: str) -> dict[str, Any]:
        record = self.require_started(workspace_id, "workspace_export")
        target = hostpaths.resolve(output_path, "output_path")
        # Refused before the guest does any work (undoing any parent the check made).
        NewEntry(target, "output_path").close(failed=True)
        info, data = self.call(
            workspace_id, "tar_out", {"path": normalize_workspace_path(path)}, timeout=600
        )
        validate_members(data)
        result = extract_export(data, target, artifact_type=info["artifact_type"])
        return {
            "workspace_id": workspace_id,
            "workspace_path": info["workspace_path"],
            "output_path": target.shown,
            "artifact_type": result["artifact_type"],
            "entry_count": result["entry_count"],
            "bytes_written": result["bytes_written"],
            "execution_mode": records.execution_mode(record["engine"]),
        }

    def _current_tree(self, workspace_id: str) -> bytes:
        _info, data = self.call(workspace_id, "tar_out", {"path": "/workspace"}, timeout=600)
        validate_members(data, guest_links=True)
        return data

    def diff(self, workspace_id: str) -> dict[str, Any]:
        self.require_started(workspace_id, "workspace_diff")
        baseline = self.layout(workspace_id).baseline.read_bytes()
        result = diff_trees(baseline, self._current_tree(workspace_id))
        return {"workspace_id": workspace_id, **result}
