"""One workspace as its operations see it: its record, engine, supervisor channel,
activity and redaction. The operations (shells, services, snapshots, files, disk tools)
are functions over a handle; ``operation`` makes each one redacted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from ..engines.agent_client import AgentGone, Readable
from ..engines.profile import profile_of
from ..errors import StateError
from . import records
from . import secrets as secret_store
from .layout import WorkspaceLayout

if TYPE_CHECKING:
    from .lifecycle import WorkspaceLifecycle
    from .store import Store

AGENT_SLACK_SECONDS = 60.0  # a supervisor call's time limit when the caller names none
P = ParamSpec("P")
R = TypeVar("R")


class Handle:
    """A workspace by id; nothing is looked up until an operation asks."""

    def __init__(self, lifecycle: WorkspaceLifecycle, workspace_id: Any) -> None:
        self.lifecycle = lifecycle
        self.id = workspace_id

    @property
    def store(self) -> Store:
        return self.lifecycle.store

    @property
    def layout(self) -> WorkspaceLayout:
        return self.lifecycle.layout(self.id)

    # -- the record ----------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """Its current record (an expired or unknown workspace raises)."""
        return self.lifecycle.record(self.id)

    def started(self, action: str) -> dict[str, Any]:
        """Its record, which must be started for ``action``."""
        return self.lifecycle.require_started(self.id, action)

    def stopped(self, action: str) -> dict[str, Any]:
        """Its record, which must be stopped for ``action`` (and on a sandbox engine)."""
        record = self.record()
        if record["state"] != "stopped":
            raise StateError(
                f"workspace {self.id!r} must be stopped before {action} "
                f"(run 'pyro workspace stop {self.id}')"
            )
        if not profile_of(record["engine"]).has_guest_workspace:
            raise StateError(f"{action} is unavailable for host_compat workspaces")
        return record

    @staticmethod
    def execution_mode(record: dict[str, Any]) -> str:
        return records.execution_mode(record["engine"])

    # -- its supervisor, its activity, its secrets --------------------------------------------
    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        data: bytes | Readable = b"",
        timeout: float | None = None,
        on_event: Any = None,
    ) -> tuple[dict[str, Any], bytes]:
        """One request to its supervisor (and the guest agent behind it); a supervisor that
        went away leaves the workspace stopped and raises a one-line StateError."""
        lifecycle = self.lifecycle
        try:
            return lifecycle.client(self.id).call(
                op,
                args,
                data,
                on_event=on_event,
                timeout=timeout if timeout is not None else AGENT_SLACK_SECONDS,
            )
        except AgentGone as exc:
            lifecycle.drop_client(self.id)
            record = self.store.get(self.id)
            if record is not None:
                lifecycle.refresh(record)
            raise StateError(f"workspace {self.id!r} stopped during {op}: {exc}") from exc

    def touch(self, when: float | None = None) -> float:
        return self.lifecycle.touch(self.id, when)

    @property
    def redactor(self) -> secret_store.Redactor:
        return self.lifecycle.redactor(self.id)

    def redact(self, text: str) -> str:
        return self.redactor.text(text)


def operation(
    function: Callable[Concatenate[Handle, P], R],
) -> Callable[Concatenate[Handle, P], R]:
    """An operation on one workspace whose result and error message never show one of that
    workspace's secret values."""

    @functools.wraps(function)
    def redacted(ws: Handle, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = function(ws, *args, **kwargs)
        except Exception as exc:
            ws.redactor.error(exc)
            raise
        return cast(R, ws.redactor.value(result))

    return redacted
