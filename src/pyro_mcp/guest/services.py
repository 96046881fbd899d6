"""Guest-side services: long-running processes with readiness checks and logs (§2.12)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

from . import limits, paths, secrets
from .execution import base_env, shell_status

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


LOG_DIR = "/run/pyro-services"
MAX_LOG_READ = 1024 * 1024


class Service:
    def __init__(
        self,
        name: str,
        command: str,
        cwd: str,
        readiness: dict[str, Any] | None,
        env: dict[str, str],
        log_dir: str,
    ) -> None:
        self.name = name
        self.command = command
        self.cwd = cwd
        self.readiness = readiness
        self.started_at = time.time()
        self.started_clock = time.monotonic()
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.ready_at: float | None = None
        self.state = "running"
        self.stop_reason: str | None = None
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
        self.stdout_path = os.path.join(log_dir, f"{name}.stdout")
        self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-lc", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def refresh(self) -> None:
        code = self.proc.poll()  # reaps: a zombie is never "running"
        if code is not None and self.state == "running":
            self.state = "exited"
            self.exit_code = shell_status(code)
            self.ended_at = time.time()
            if limits.notes_for(self.proc.pid, self.started_clock):
                self.stop_reason = "resource_limit"

    def payload(self) -> dict[str, Any]:
        self.refresh()
        return {
            "service_name": self.name,
            "state": self.state,
            "command": self.command,
            "cwd": self.cwd,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "pid": self.proc.pid,
            "readiness": self.readiness,
            "ready_at": self.ready_at,
            "stop_reason": self.stop_reason,
        }

    def kill_group(self, grace: float) -> str:
        reason = "sigterm"
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                reason = "sigkill"
        else:
            self.proc.wait()
        # Nothing of the group may outlive the service (children that kept the group).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return reason


SERVICES: dict[str, Service] = {}


def _ready(check: dict[str, Any], cwd: str, root: str) -> bool:
    kind = check.get("type")
    if kind == "file":
        path = str(check["path"])
        return os.path.exists(path if path.startswith("/") else os.path.join(root, path))
    if kind == "tcp":
        host, _, port = str(check["address"]).rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
                return True
        except OSError:
            return False
    if kind == "http":
        try:
            with urllib.request.urlopen(str(check["url"]), timeout=2) as response:  # noqa: S310
                return bool(200 <= response.status < 400)
        except Exception:
            return False
    if kind == "command":
        try:
            done = subprocess.run(
                ["/bin/sh", "-lc", str(check["command"])],
                cwd=cwd,
                env=base_env(None),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0
    raise ValueError(f"unknown readiness type {kind!r}")


def start(args: dict[str, Any]) -> dict[str, Any]:
    name = str(args["name"])
    root = str(args.get("root") or paths.ROOT)
    old = SERVICES.get(name)
    if old is not None:
        old.refresh()
        if old.state == "running":
            raise ValueError(f"service {name!r} is already running")
    cwd = paths.normalize(str(args.get("cwd") or root), root=root)
    os.close(paths.open_dir(cwd, root=root))
    env = {**base_env(None), **secrets.env_for(args.get("secret_env"))}
    readiness = args.get("readiness")
    service = Service(
        name, str(args["command"]), cwd, readiness, env, str(args.get("log_dir") or LOG_DIR)
    )
    SERVICES[name] = service
    if not readiness:
        service.ready_at = service.started_at
        return service.payload()
    deadline = time.monotonic() + float(args.get("ready_timeout_seconds") or 30)
    interval = max(0.01, float(args.get("ready_interval_ms") or 500) / 1000)
    while True:
        service.refresh()
        if service.state != "running":
            service.state, service.stop_reason = "failed", "process_exited_before_ready"
            break
        if _ready(readiness, cwd, root):
            service.ready_at = time.time()
            break
        if time.monotonic() >= deadline:
            service.kill_group(1.0)
            service.state, service.stop_reason = "failed", "readiness_timeout"
            service.ended_at = time.time()
            break
        time.sleep(interval)
    return service.payload()


def get(name: str) -> Service:
    service = SERVICES.get(name)
    if service is None:
        raise ValueError(f"service {name!r} does not exist")
    return service


def stop(name: str) -> dict[str, Any]:
    service = get(name)
    service.refresh()
    if service.state == "running":
        service.stop_reason = service.kill_group(5.0)
        service.state = "stopped"
        service.ended_at = time.time()
        code = service.proc.returncode
        service.exit_code = None if code is None else shell_status(code)
    return service.payload()


def _tail(path: str, lines: int | None) -> tuple[str, bool]:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            if size > MAX_LOG_READ:
                handle.seek(size - MAX_LOG_READ)
            data = handle.read()
    except FileNotFoundError:
        return "", False
    truncated = size > MAX_LOG_READ
    text = secrets.redact(data).decode("utf-8", errors="replace")
    if lines is not None:
        parts = text.splitlines(keepends=True)
        if len(parts) > lines:
            truncated = True
            text = "".join(parts[-lines:])
    return text, truncated


def logs(name: str, tail_lines: int | None) -> dict[str, Any]:
    service = get(name)
    out, out_cut = _tail(service.stdout_path, tail_lines)
    err, err_cut = _tail(service.stderr_path, tail_lines)
    return {
        **service.payload(),
        "stdout": out,
        "stderr": err,
        "tail_lines": tail_lines,
        "truncated": out_cut or err_cut,
    }


def list_all() -> list[dict[str, Any]]:
    return [SERVICES[name].payload() for name in sorted(SERVICES)]
