"""The declaration machinery: ``@operation``, ``Param``, and reading declarations back."""

from __future__ import annotations

import functools
import sys
import typing
from collections.abc import Callable
from typing import Any, NamedTuple

PROFILES = ("vm-run", "workspace-core", "workspace-full")
VM_RUN = frozenset(PROFILES)
CORE = frozenset({"workspace-core", "workspace-full"})
FULL = frozenset({"workspace-full"})
NO_MCP: frozenset[str] = frozenset()


class _Required:
    """The type of ``REQUIRED``."""

    def __repr__(self) -> str:
        return "REQUIRED"


# ``ParamInfo.default`` of a parameter without a default (the caller must pass it).
REQUIRED: Any = _Required()


class Param(NamedTuple):
    """Metadata for one parameter, carried in ``Annotated[T, Param(...)]``.

    ``help`` is written for a model and a human alike (no CLI syntax); ``cli_help``, when
    set, is the CLI's own wording. ``ge``/``le``/``gt`` and ``max_length`` are enforced
    for every caller (operations/checks.py) and shown in the MCP schema, as are
    ``pattern`` (ids: shown only; a wrong one "does not exist") and ``items`` (the JSON
    schema of a list's items, when the Python type says less).
    """

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
    cli_append: bool = False  # repeatable CLI flag collecting a list
    cli_invert: bool = False  # a bool defaulting to True, switched off by the flag (--no-x)
    mcp_name: str | None = None  # the argument's name in the MCP tool, if it differs
    sdk_only: bool = False  # neither a CLI flag nor an MCP argument
    cli_group: str | None = None  # CLI flags of one group exclude each other
    cli_convert: Callable[[Any], Any] | None = None  # CLI value -> SDK value
    # More repeatable CLI flags feeding the same list parameter: ((flag, convert), ...)
    cli_also: tuple[tuple[str, Callable[[Any], list[Any]]], ...] = ()
    # A CLI-only flag giving this string parameter from a file instead (PATH, or - for
    # stdin), e.g. "--text-file"; the two flags exclude each other. Never an MCP argument.
    cli_file: str | None = None
    # MCP-only handling by the operator's policy (mcp/policy.py): "operator" (not offered;
    # the value is the operator's server setting), "host_path" (held to the host roots) or
    # "secret_names" (names of secrets the operator declared, instead of values), or a network
    # role held to the operator's ceiling: "network_policy", "network", "allow_hosts".
    mcp_role: str | None = None
    cli_help: str | None = None
    pattern: str | None = None
    max_length: int | None = None
    items: dict[str, Any] | None = None
    # The default of MCP tool calls when it differs from the SDK's and CLI's (results bounded
    # by default over MCP, issue 14); REQUIRED: the same default.
    mcp_default: Any = REQUIRED
    # The upper bound is the operator's lifetime ceiling (PYRO_MAX_TTL_SECONDS), read when a
    # value is checked and when the MCP schema is built, not at import.
    ceiling: bool = False

    def upper(self) -> float | None:
        """``le``, or the operator's ceiling where the bound is theirs."""
        if not self.ceiling:
            return self.le
        from ..validation import max_ttl_seconds

        return max_ttl_seconds()


class HumanOutput(NamedTuple):
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


Renderer = Callable[[Any], HumanOutput]


class CliOutput(NamedTuple):
    """A CLI-only output flag of an operation (never an SDK or MCP argument): set, the CLI
    prints ``show(result)`` (bytes) alone on stdout instead of the rendering; ``call_with``
    fixes SDK arguments for it (e.g. encoding=base64 to get the exact bytes)."""

    flag: str
    help: str
    show: Callable[[Any], bytes]
    call_with: tuple[tuple[str, Any], ...] = ()

    @property
    def dest(self) -> str:
        return "_output_" + self.flag.lstrip("-").replace("-", "_")


class ParamInfo(NamedTuple):
    name: str
    annotation: Any  # the plain type (without Annotated)
    default: Any  # REQUIRED when required
    meta: Param

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Operation(NamedTuple):
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
    reaches_network: bool  # runs guest code that may reach the network, when it has one
    cli_note: str | None  # said in CLI help only (after the description)
    cli_outputs: tuple[CliOutput, ...]  # CLI-only flags printing one part of the result

    @property
    def cli_description(self) -> str:
        return f"{self.description}\n\n{self.cli_note}" if self.cli_note else self.description

    def mcp_params(self, profile: str) -> list[ParamInfo]:
        return [
            p
            for p in self.params
            if not p.meta.sdk_only
            and p.meta.mcp_role != "operator"
            and (p.meta.in_core or profile != "workspace-core")
        ]


class _Decl(NamedTuple):
    mcp: str | None
    cli: tuple[str, ...] | None
    profiles: frozenset[str]
    read_only: bool
    destructive: bool
    idempotent: bool
    render: Renderer | None
    cli_runner: str | None
    reaches_network: bool
    cli_note: str | None
    cli_outputs: tuple[CliOutput, ...]


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
    reaches_network: bool = False,
    cli_note: str | None = None,
    cli_outputs: tuple[CliOutput, ...] = (),
) -> Callable[[F], F]:
    """Declare an SDK method as an operation. SDK calls are checked against the ``Param``
    ranges and lengths (the one home of those rules) before the method runs."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            _check_call(checked, args, kwargs)
            return func(self, *args, **kwargs)

        checked.__pyro_operation__ = _Decl(  # type: ignore[attr-defined]
            mcp,
            cli,
            profiles,
            read_only,
            destructive,
            idempotent,
            render,
            cli_runner,
            reaches_network,
            cli_note,
            cli_outputs,
        )
        return typing.cast(F, checked)

    return decorate


_CHECKED: dict[Callable[..., Any], tuple[tuple[str, ...], tuple[ParamInfo, ...]]] = {}


def _check_call(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    from .checks import check_value, has_checks

    known = _CHECKED.get(func)
    if known is None:
        params = read_operation(func).params
        known = _CHECKED[func] = (
            tuple(p.name for p in params),
            tuple(p for p in params if has_checks(p)),
        )
    names, checked = known
    if not checked:
        return
    given = dict(zip(names, args, strict=False))
    given.update(kwargs)
    for param in checked:
        if param.name in given:
            check_value(param, given[param.name], param.name)


def _split_annotated(hint: Any) -> tuple[Any, Param]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, Param):
                return base, extra
    raise TypeError(f"parameter annotation {hint!r} lacks Param(...) metadata")


def _decl(func: Callable[..., Any]) -> _Decl:
    decl: _Decl = func.__pyro_operation__  # type: ignore[attr-defined]
    return decl


def _cleandoc(doc: str) -> str:
    """``inspect.cleandoc`` (without importing inspect, ~10 ms of the CLI's start)."""
    lines = doc.expandtabs().split("\n")
    margin = sys.maxsize
    for line in lines[1:]:
        content = len(line.lstrip())
        if content:
            margin = min(margin, len(line) - content)
    lines[0] = lines[0].lstrip()
    if margin < sys.maxsize:
        lines[1:] = [line[margin:] for line in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


class _Annotations:
    """Something ``typing.get_type_hints`` reads annotations from."""

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations


def _param_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The parameters' annotations, evaluated; the result type is left out (the shapes are
    imported only for mypy and the MCP schema: mcp/schema.py result_type)."""
    params = {k: v for k, v in func.__annotations__.items() if k != "return"}
    return typing.get_type_hints(_Annotations(params), func.__globals__, include_extras=True)


def read_operation(func: Callable[..., Any]) -> Operation:
    decl = _decl(func)
    func = getattr(func, "__wrapped__", func)  # the declared method, not its checking wrapper
    hints = _param_hints(func)
    params = []
    # The positional-or-keyword parameters, read from the code object (what
    # inspect.signature gives, without importing inspect). *args, keyword-only parameters
    # (SDK-side hooks such as callbacks, not surface args) and **kwargs come after them in
    # co_varnames and are left out.
    code = func.__code__
    names = code.co_varnames[: code.co_argcount]
    defaults = func.__defaults__ or ()
    first_default = len(names) - len(defaults)
    for index, name in enumerate(names):
        if name == "self":
            continue
        default = defaults[index - first_default] if index >= first_default else REQUIRED
        base, meta = _split_annotated(hints[name])
        params.append(ParamInfo(name, base, default, meta))
    doc = func.__doc__
    doc = _cleandoc(doc) if isinstance(doc, str) else ""
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
        reaches_network=decl.reaches_network,
        cli_note=decl.cli_note,
        cli_outputs=decl.cli_outputs,
    )


def collect(cls: type, cli_word: str | None = None) -> list[Operation]:
    """All operations declared on ``cls`` (the SDK class): base classes from the last to
    the first, each in definition order (MCP reorders them: mcp/server.py TOOL_ORDER).

    ``cli_word``: only those whose CLI command starts with that word (the CLI reads just
    the declarations of the command it runs; reading them all costs ~15 ms a start).
    """
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if callable(value) and hasattr(value, "__pyro_operation__"):
                found[name] = value
    if cli_word is not None:
        found = {
            name: func for name, func in found.items() if (_decl(func).cli or ("",))[0] == cli_word
        }
    return [read_operation(func) for func in found.values()]
