"""The services a workspace's supervisor started, kept on the host so that `start` can start
them again: a plain stop keeps no sandbox's memory, so its processes are gone (a QEMU
workspace resumed after `stop --suspend` keeps them: suspend.py, no restart then).

One JSON file in the workspace's private directory (``services.json``): each service's start
arguments as its client sent them (command, cwd, readiness, secret names, published ports;
never a secret's value), dropped when the service is stopped and all dropped by a reset (a
fresh system). The supervisor starts them again, in their start order, before it reports the
workspace started; each one's outcome is then shown by the service calls as ``restarted``
(true: running again; false: its ``stop_reason`` says why not).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Start = Callable[[dict[str, Any]], dict[str, Any]]
# All readiness checks of a start's restarts share this (a start waits for them, and for
# at most lifecycle.SUPERVISOR_START_TIMEOUT in all): a service not ready by then failed.
RESTART_BUDGET_SECONDS = 120.0


class ServiceRecords:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcome: dict[str, bool] = {}  # name -> came back (this supervisor's restarts)

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, records: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records))
        tmp.replace(self.path)

    def clear(self) -> None:
        self.outcome.clear()
        self.path.unlink(missing_ok=True)

    def after(self, op: str, request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """Keep the records in step with a service call, and mark restarted services."""
        name = request.get("name")
        if op == "service_start" and isinstance(name, str):
            records = {k: v for k, v in self.load().items() if k != name}
            self._save({**records, name: request})  # last started, last restarted
            self.outcome.pop(name, None)
        elif op == "service_stop" and isinstance(name, str):
            records = self.load()
            if records.pop(name, None) is not None:
                self._save(records)
        if op == "service_list":
            result["services"] = [self.mark(s) for s in result.get("services", [])]
            return result
        return self.mark(result)

    def mark(self, service: dict[str, Any]) -> dict[str, Any]:
        name = service.get("service_name")
        if name in self.outcome:
            return {**service, "restarted": self.outcome[name]}
        return service

    def restart(self, start: Start, budget: float = RESTART_BUDGET_SECONDS) -> list[str]:
        """Start every recorded service again, their readiness within ``budget`` seconds in
        all; the errors of those that could not be started."""
        errors: list[str] = []
        deadline = time.monotonic() + budget
        for name, request in self.load().items():
            left = max(1.0, deadline - time.monotonic())
            wanted = request.get("ready_timeout_seconds")
            timeout = min(wanted, left) if isinstance(wanted, (int, float)) else left
            try:
                result = start({**request, "ready_timeout_seconds": timeout})
            except Exception as exc:  # said in last_error; the others still come back
                errors.append(f"service {name!r} did not come back: {exc}")
                continue
            self.outcome[name] = result.get("state") == "running"
        return errors
