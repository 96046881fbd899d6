"""Redaction of every operation on a workspace: no result or error message shows one of
its secret values (the values themselves are masked by ``secrets.Redactor``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .lifecycle import WorkspaceLifecycle

F = TypeVar("F", bound=Callable[..., Any])


def redacted(method: F) -> F:
    """An operation on one workspace (its first argument) whose result and error message
    never show one of that workspace's secret values."""

    @functools.wraps(method)
    def wrapper(self: WorkspaceLifecycle, workspace_id: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = method(self, workspace_id, *args, **kwargs)
        except Exception as exc:
            self.redactor(workspace_id).error(exc)
            raise
        return self.redactor(workspace_id).value(result)

    wrapper.__pyro_redacted__ = True  # type: ignore[attr-defined]
    return cast(F, wrapper)


C = TypeVar("C", bound=type)


def redact_every_workspace_operation(cls: C) -> C:
    """Class decorator: every public method whose first argument is ``workspace_id`` (the
    manager's own and its mixins', not the lifecycle's plumbing) is ``redacted``: one rule,
    no operation forgotten."""
    plumbing = set(vars(WorkspaceLifecycle))
    for name in dir(cls):
        method = getattr(cls, name)
        if name in plumbing:
            continue
        if name.startswith("_") or not callable(method) or hasattr(method, "__pyro_redacted__"):
            continue
        code = getattr(method, "__code__", None)
        if code is not None and code.co_varnames[1:2] == ("workspace_id",):
            setattr(cls, name, redacted(method))
    return cls
