"""Fork: a new workspace (new id) from another's live state or from one of its snapshots.

The child gets copies of the source's two disk images, /workspace's and the system layer's
(images.py: quiesced while copied, the source keeps running; a reflink on btrfs/XFS homes;
a stopped source's are copied on the host while no client may start it, fork_copy.py),
or those of the named snapshot; from the baseline (or a 3.6 tar snapshot) a fresh system and
that tar, as a reset would. It keeps the source's engine, environment, vCPUs, memory, disk
size, TTL, idle stop, network policy and allowlist, secrets (their files are copied), labels
and baseline, unless the fork overrides the name or labels; it is started, and counts
against the workspace cap like a create. Services and shells are not copied: the child
boots a fresh system on the copied layer. A fork that fails leaves no record and no
directory (the create's own undo: lifecycle.undo_create).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StateError
from ..network import policy
from . import fork_copy, images, owners, records, snapshots
from . import secrets as secret_store
from .handle import Handle
from .layout import WorkspaceLayout
from .network import network_info, save_allow_hosts

if TYPE_CHECKING:
    from .manager import WorkspaceManager

# What a child carries over from its source's record (besides name and labels).
CARRIED = (
    "environment",
    "environment_version",
    "vcpu_count",
    "mem_mib",
    "disk_mib",
    "ttl_seconds",
    "idle_stop_seconds",
    "network_policy",
    "allow_host_compat",
    "engine",
    "workspace_seed",
    "secrets",
)


def fork(
    manager: WorkspaceManager,
    workspace_id: str,
    snapshot: str | None = None,
    name: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The child's payload and ``forked_from``; its errors never show a secret value (the
    child's are the source's)."""
    ws = Handle(manager.lifecycle, workspace_id)
    try:
        result = _fork(manager, ws, snapshot, name, labels)
    except Exception as exc:
        ws.redactor.error(exc)
        raise
    return dict(ws.redactor.value(result))


def _fork(
    manager: WorkspaceManager,
    ws: Handle,
    snapshot: str | None,
    name: str | None,
    labels: dict[str, str] | None,
) -> dict[str, Any]:
    lifecycle, workspace_id = manager.lifecycle, ws.id
    record = ws.record()
    if not snapshots.full_snapshots(ws, record):
        raise StateError(f"workspace {workspace_id!r} cannot be forked (its engine has no disks)")
    source = None if snapshot is None else snapshots.source(ws, snapshot)
    carried = dict(record["labels"])
    carried.update(ws.redactor.labels(records.labels(labels)))
    child = lifecycle.new_record(
        name=ws.redactor.text(records.workspace_name(name)) if name is not None else record["name"],
        labels=dict(sorted(carried.items())),
        **{key: record[key] for key in CARRIED},
    )
    lifecycle.reap_expired()  # (the cap admits the child in _build, with its insert)
    if source is not None:
        _build(manager, ws, child, source)
    else:
        with fork_copy.held(ws, record) as live:  # a stopped source: nobody starts it meanwhile
            _build(manager, ws, child, None, live)
    created = {**lifecycle.record(child["workspace_id"]), "service_count": 0}
    created["running_service_count"] = 0
    layout = lifecycle.layout(child["workspace_id"])
    forked_from = {"workspace_id": workspace_id, "snapshot_name": snapshot}
    return {**records.payload(created), **network_info(layout), "forked_from": forked_from}


def _build(
    manager: WorkspaceManager,
    ws: Handle,
    child: dict[str, Any],
    source: snapshots.Source | None,
    live: bool = True,
) -> None:
    """The child's directory, record and running sandbox, or nothing (as a create's)."""
    lifecycle, store = manager.lifecycle, manager.store
    child_id = child["workspace_id"]
    store.claim(child_id, "create", owners.current())
    try:
        layout = lifecycle.layout(child_id)
        layout.create()
        with secret_store.locked(ws.layout.secrets_dir):  # the record's list and files agree
            child["secrets"] = ws.record()["secrets"]
            _carry_files(ws.layout, layout)
        store.insert_admitted(child, lifecycle.lifetime.admit_workspace)
        if source is None or source.images is not None:
            _boot_on_copies(manager, ws, layout, source, live)
        else:  # the baseline, or a tar snapshot of 3.6: a fresh system and that tar
            lifecycle.boot_fresh(child, source.seed, guest_links=source.kind == "named")
    except BaseException:
        lifecycle.undo_create(child_id)
        raise
    store.release(child_id)


def _boot_on_copies(
    manager: WorkspaceManager,
    ws: Handle,
    layout: WorkspaceLayout,
    source: snapshots.Source | None,
    live: bool,
) -> None:
    """The child's supervisor launched first, its Python start-up beside the copy of the
    images it waits for (fork_copy.Staging). On a failure the caller undoes it all (a
    child's supervisor woken meanwhile finds the staging directory and fails)."""
    lifecycle, child_id = manager.lifecycle, layout.root.name
    staging = fork_copy.Staging(layout)
    first = None
    try:
        first = lifecycle.launch(child_id)
        _images(ws, staging.images, source, live)
        staging.done()
        lifecycle.wait_status(child_id, first)
    finally:
        staging.close()
        if first is not None:
            first.wait()  # reaped (it exits at once, or was ended by the undo)


def _carry_files(parent: WorkspaceLayout, layout: WorkspaceLayout) -> None:
    """The baseline (a hard link: it is never written), secrets and the allowlist."""
    try:
        os.link(parent.baseline, layout.baseline)
    except OSError:
        shutil.copyfile(parent.baseline, layout.baseline)
    if parent.secrets_dir.is_dir():
        shutil.copytree(parent.secrets_dir, layout.secrets_dir, symlinks=True)
    with contextlib.suppress(ValueError):  # an unreadable list: the child has none
        save_allow_hosts(layout, policy.load(policy.network_dir(parent.root)))


def _images(ws: Handle, dest: Path, source: snapshots.Source | None, live: bool) -> None:
    """The child's two disk images into the new directory ``dest``: the source's (copied
    live by its supervisor, or on the host from a stopped one: fork_copy.py), or those of
    a snapshot."""
    if live and source is None:
        snapshots.copy_live(ws, dest)
        return
    dest.mkdir(mode=0o700)
    if source is not None and source.images is not None:
        with snapshots.copying(source.images):  # one deleted meanwhile: in one line
            images.restore_images(source.images, dest)
    else:
        fork_copy.copy_stopped(ws.layout, dest)
