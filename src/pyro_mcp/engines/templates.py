"""Boot templates for VM engines: a saved, booted, idle VM that later VMs resume from.

The first boot of a given configuration is a real cold boot; right after its agent answers,
the VM is paused, its state saved (QMP ``migrate`` to a file) and resumed. Later VMs of the
same configuration start QEMU with ``-incoming`` from that file: no kernel boot, no agent
start-up. This is safe because the root image is read-only and all writable state (the
overlay's tmpfs upper layer) is in the saved RAM. Restored guests get the host's clock and
fresh entropy in their first ``hello``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from .qmp import Qmp

MIGRATE_TIMEOUT = 60.0


def template_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def template_path(root: Path, key: str) -> Path:
    return root / key


def is_ready(path: Path) -> bool:
    return (path / "state").is_file() and (path / "initrd.cpio.gz").is_file()


def incoming_argument(path: Path) -> list[str]:
    """QEMU's arguments to load a saved state: a template's (a directory) or a file."""
    state = path if path.is_file() else path / "state"
    return ["-incoming", f"exec:cat {shlex.quote(str(state))}"]


def partial_path(target: Path) -> Path:
    """Where ``save_state`` writes before the state is whole."""
    return target.with_name(f"{target.name}.partial")


def save_state(qmp: Qmp, target: Path, timeout: float = MIGRATE_TIMEOUT) -> None:
    """Pause the VM behind ``qmp`` and write its whole state (RAM, devices) to ``target``;
    the VM stays paused (the caller resumes it, or ends it).

    QEMU reports the migration completed before its writer has drained the pipe, and then
    sends that writer SIGTERM: the writer ignores it and renames its file into place once
    all is written, which is what this waits for (``target`` is whole or absent)."""
    partial = shlex.quote(str(partial_path(target)))
    qmp.execute("stop")
    final = shlex.quote(str(target))  # private: the guest's memory
    command = f'umask 077; trap "" TERM; cat > {partial} && mv {partial} {final}'
    qmp.execute("migrate", uri=f"exec:{command}")
    deadline = time.monotonic() + timeout
    _wait_migration(qmp, timeout)
    while not target.exists():
        if time.monotonic() > deadline:
            raise SandboxError(f"saving the VM state took over {timeout:.0f}s")
        time.sleep(0.01)


def save(qmp: Qmp, root: Path, key: str, initrd: Path, meta: dict[str, Any]) -> None:
    """Pause the VM behind ``qmp``, save its state into the template dir, resume it."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = root / f".partial-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        shutil.copy2(initrd, tmp / "initrd.cpio.gz")
        try:
            save_state(qmp, tmp / "state")
        finally:
            qmp.execute("cont")
        (tmp / "meta.json").write_text(json.dumps({**meta, "saved_at": time.time()}, indent=1))
        final = template_path(root, key)
        if not is_ready(final):
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_migration(qmp: Qmp, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = qmp.execute("query-migrate").get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise SandboxError(f"saving the VM state failed (migration {status})")
        time.sleep(0.02)
    raise SandboxError(f"saving the VM state took over {timeout:.0f}s")


def resume_at(qmp_socket: Path) -> None:
    """``resume`` over a new QMP connection at ``qmp_socket``."""
    qmp = Qmp(qmp_socket)
    try:
        resume(qmp)
    finally:
        qmp.close()


def resume(qmp: Qmp, timeout: float = 30.0) -> None:
    """Wait for an ``-incoming`` VM to finish loading, then let it run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = qmp.execute("query-status").get("status")
        if status in ("paused", "postmigrate", "prelaunch"):
            qmp.execute("cont")
            return
        if status == "running":
            return
        if status in ("internal-error", "shutdown", "guest-panicked"):
            raise SandboxError(f"restoring the VM state failed (vm {status})")
        time.sleep(0.005)
    raise SandboxError("restoring the VM state timed out")
