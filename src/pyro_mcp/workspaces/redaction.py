"""Redaction of every operation on a workspace: no result or error message shows one of
its secret values (the values themselves are masked by ``secrets.Redactor``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .handle import Handle, operation

if TYPE_CHECKING:
    from .manager import WorkspaceManager

F = TypeVar("F", bound=Callable[..., Any])


def redacted(method: F) -> F:
    """A manager's method on one workspace (its first argument), redacted as every
    operation over a handle is (handle.operation: the one rule)."""

    @functools.wraps(method)
    def wrapper(self: WorkspaceManager, workspace_id: Any, *args: Any, **kwargs: Any) -> Any:
        def call(ws: Handle) -> Any:
            return method(self, ws.id, *args, **kwargs)

        return operation(call)(self.handle(workspace_id))

    wrapper.__pyro_redacted__ = True  # type: ignore[attr-defined]
    return cast(F, wrapper)


C = TypeVar("C", bound=type)


def redact_every_workspace_operation(cls: C) -> C:
    """Class decorator: every public method whose first argument is ``workspace_id`` is
    ``redacted``: no operation forgotten."""
    for name in dir(cls):
        method = getattr(cls, name)
        if name.startswith("_") or not callable(method) or hasattr(method, "__pyro_redacted__"):
            continue
        code = getattr(method, "__code__", None)
        if code is not None and code.co_varnames[1:2] == ("workspace_id",):
            setattr(cls, name, redacted(method))
    return cls
