"""The declaration machinery: ``@operation``, ``Param``, and reading declarations back."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("vm-run", "workspace-core", "workspace-full")
VM_RUN = frozenset(PROFILES)
CORE = frozenset({"workspace-core", "workspace-full"})
FULL = frozenset({"workspace-full"})
NO_MCP: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Param:
    """Metadata for one parameter, carried in ``Annotated[T, Param(...)]``."""

    help: str
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    choices: tuple[str, ...] | None = None
    # CLI shape: None → ``--flag-name``; "positional"; "remainder" (everything after ``--``);
    # or an explicit flag such as "--label".
    cli: str | None = None
    metavar: str | None = None
    in_core: bool = True  # False: omitted from the workspace-core MCP profile
    cli_only: bool = False
    mcp: bool = True  # False: not exposed as an MCP argument
    cli_append: bool = False  # repeatable CLI flag collecting a list
    cli_invert: bool = False  # a bool defaulting to True, switched off by the flag (--no-x)
    mcp_name: str | None = None  # the argument's name in the MCP tool, if it differs
    sdk_only: bool = False  # neither a CLI flag nor an MCP argument
    cli_group: str | None = None  # CLI flags of one group exclude each other
    cli_convert: Callable[[Any], Any] | None = None  # CLI value -> SDK value
    # More repeatable CLI flags feeding the same list parameter: ((flag, convert), ...)
    cli_also: tuple[tuple[str, Callable[[Any], list[Any]]], ...] = ()


@dataclass(frozen=True)
class HumanOutput:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


Renderer = Callable[[Any], HumanOutput]


@dataclass(frozen=True)
class ParamInfo:
    name: str
    annotation: Any  # the plain type (without Annotated)
    default: Any  # inspect.Parameter.empty when required
    meta: Param

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class Operation:
    name: str  # SDK method
    mcp_name: str | None
    cli_path: tuple[str, ...] | None
    profiles: frozenset[str]
    read_only: bool
    destructive: bool
    idempotent: bool
    summary: str
    description: str
    params: tuple[ParamInfo, ...]
    render: Renderer | None
    cli_runner: str | None  # name of a custom CLI runner in pyro_mcp.cli.runners
    extra: dict[str, Any] = field(default_factory=dict)

    def mcp_params(self, profile: str) -> list[ParamInfo]:
        return [
            p
            for p in self.params
            if p.meta.mcp
            and not p.meta.cli_only
            and not p.meta.sdk_only
            and (p.meta.in_core or profile != "workspace-core")
        ]


@dataclass(frozen=True)
class _Decl:
    mcp: str | None
    cli: tuple[str, ...] | None
    profiles: frozenset[str]
    read_only: bool
    destructive: bool
    idempotent: bool
    render: Renderer | None
    cli_runner: str | None


F = typing.TypeVar("F", bound=Callable[..., Any])


def operation(
    *,
    mcp: str | None = None,
    cli: tuple[str, ...] | None = None,
    profiles: frozenset[str] = NO_MCP,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    render: Renderer | None = None,
    cli_runner: str | None = None,
) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func.__pyro_operation__ = _Decl(  # type: ignore[attr-defined]
            mcp, cli, profiles, read_only, destructive, idempotent, render, cli_runner
        )
        return func

    return decorate


def _split_annotated(hint: Any) -> tuple[Any, Param]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, Param):
                return base, extra
    raise TypeError(f"parameter annotation {hint!r} lacks Param(...) metadata")


def read_operation(func: Callable[..., Any]) -> Operation:
    decl: _Decl = func.__pyro_operation__  # type: ignore[attr-defined]
    hints = typing.get_type_hints(func, include_extras=True)
    params = []
    for name, parameter in inspect.signature(func).parameters.items():
        if name == "self" or parameter.kind in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
            parameter.KEYWORD_ONLY,
        ):
            continue  # keyword-only parameters are SDK-side hooks (callbacks), not surface args
        base, meta = _split_annotated(hints[name])
        params.append(ParamInfo(name, base, parameter.default, meta))
    doc = inspect.getdoc(func) or ""
    summary, _, _rest = doc.partition("\n")
    return Operation(
        name=func.__name__,
        mcp_name=decl.mcp,
        cli_path=decl.cli,
        profiles=decl.profiles,
        read_only=decl.read_only,
        destructive=decl.destructive,
        idempotent=decl.idempotent,
        summary=summary.strip(),
        description=doc.strip(),
        params=tuple(params),
        render=decl.render,
        cli_runner=decl.cli_runner,
    )


def collect(cls: type) -> list[Operation]:
    """All operations declared on ``cls`` (the SDK class), in definition order."""
    seen: dict[str, Operation] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if callable(value) and hasattr(value, "__pyro_operation__"):
                seen[name] = read_operation(value)
    return list(seen.values())
