"""Build the argparse tree from the operation declarations."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any, NoReturn

from ..engines import ENGINE_CHOICES
from ..operations.registry import Operation, ParamInfo
from ..version import __version__


class UsageError(Exception):
    """Bad command-line words; shown as one ``[error]`` line."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def base_type(annotation: Any) -> Any:
    """``int | None`` → ``int``: what the CLI string must convert to."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_param(parser: argparse.ArgumentParser, param: ParamInfo) -> None:
    meta = param.meta
    target: Any = parser
    if meta.cli_group:
        groups = parser.__dict__.setdefault("_pyro_groups", {})
        if meta.cli_group not in groups:
            groups[meta.cli_group] = parser.add_mutually_exclusive_group()
        target = groups[meta.cli_group]
    if meta.sdk_only:
        parser.set_defaults(**{param.name: param.default})
        return
    help_text = meta.cli_help or meta.help
    if not param.required and param.default not in (None, False, [], {}) and not meta.cli_invert:
        help_text += f" (default: {param.default})"
    if meta.cli == "positional":
        kwargs: dict[str, Any] = {"help": help_text, "metavar": meta.metavar or param.name.upper()}
        if not param.required:
            kwargs.update(nargs="?", default=param.default)
        parser.add_argument(param.name, **kwargs)
        return
    if meta.cli == "remainder":
        # Everything after the first `--` (split off before parsing): see finish_usage().
        parser.epilog = (
            f"{meta.metavar or param.name.upper()} is everything after `--`. {help_text} "
            "One argument that holds spaces is taken as a whole command line: "
            "-- 'make test | tail'."
        )
        parser.set_defaults(_remainder=meta.metavar or param.name.upper())
        return
    flag = meta.cli or flag_name(param.name)
    if param.annotation is bool:
        action = "store_false" if meta.cli_invert else "store_true"
        parser.add_argument(flag, dest=param.name, action=action, help=help_text)
        return
    kwargs = {"dest": param.name, "help": help_text, "default": param.default}
    if meta.cli_append:
        kwargs.update(action="append", default=None)
    if meta.cli_file:  # the value, or the file holding it: exactly one when required
        target = parser.add_mutually_exclusive_group(required=param.required)
    elif param.required:
        kwargs["required"] = True
    scalar = base_type(param.annotation)
    if scalar in (int, float) and not meta.cli_append:
        kwargs["type"] = scalar
    if meta.choices:
        kwargs["choices"] = meta.choices
    if meta.metavar:
        kwargs["metavar"] = meta.metavar
    target.add_argument(flag, **kwargs)
    _add_alternates(parser, target, param, flag)


def _add_alternates(
    parser: argparse.ArgumentParser, target: Any, param: ParamInfo, flag: str
) -> None:
    """The CLI-only flags giving the same parameter another way: ``cli_file`` (in the
    parameter's exclusive group) and ``cli_also``."""
    if param.meta.cli_file:
        target.add_argument(
            param.meta.cli_file,
            dest=f"{param.name}__file",
            metavar="PATH",
            help=f"Read {flag}'s value from the file PATH (- reads stdin).",
        )
    for index, (extra_flag, _convert) in enumerate(param.meta.cli_also):
        parser.add_argument(
            extra_flag,
            dest=f"{param.name}__also{index}",
            action="append",
            default=None,
            metavar="NAME=" + _ALSO_METAVARS.get(extra_flag.rsplit("-", 1)[-1], "VALUE"),
            help=f"(see {flag})",
        )


_ALSO_METAVARS = {"file": "PATH", "host": "HOST", "header": "HEADER"}  # --secret-file…


def common_options() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=argparse.SUPPRESS,
        help="Sandbox engine (default: $PYRO_ENGINE or auto, the strongest that boots here).",
    )
    return common


def build_parser(ops: list[Operation], extra: dict[tuple[str, ...], Any]) -> Parser:
    """``extra`` maps a CLI path to a function(subparser) for commands without an operation."""
    parser = Parser(
        prog="pyro",
        description="Disposable, isolated Linux sandboxes and workspaces for coding agents.",
    )
    parser.add_argument("--version", action="version", version=f"pyro {__version__}")
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=None,
        help="Sandbox engine (default: $PYRO_ENGINE or auto, the strongest that boots here).",
    )
    common = common_options()
    groups: dict[tuple[str, ...], argparse._SubParsersAction[Any]] = {
        (): parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    }
    commands: list[tuple[tuple[str, ...], str, str, Any]] = []
    for op in ops:
        if op.cli_path:
            commands.append((op.cli_path, op.summary, op.cli_description, op))
    for path, (summary, builder) in extra.items():
        commands.append((path, summary, summary, builder))
    for path, summary, description, target in sorted(commands, key=lambda c: c[0]):
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix not in groups:
                group = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = group.add_subparsers(
                    dest="_".join(prefix) + "_command", metavar="COMMAND", parser_class=Parser
                )
                group.set_defaults(_group=group)
        sub = groups[path[:-1]].add_parser(
            path[-1],
            help=summary,
            description=description,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if isinstance(target, Operation):
            for param in target.params:
                add_param(sub, param)
            outputs = sub.add_mutually_exclusive_group()
            outputs.add_argument("--json", action="store_true", help="Print the result as JSON.")
            for output in target.cli_outputs:
                outputs.add_argument(
                    output.flag, dest=output.dest, action="store_true", help=output.help
                )
            remainder = sub.get_default("_remainder")
            if remainder:
                usage = sub.format_usage().removeprefix("usage: ").strip()
                sub.usage = f"{usage} -- {remainder} ..."
            sub.set_defaults(_operation=target)
        else:
            target(sub)
    return parser


def print_help_and_exit(parser: argparse.ArgumentParser) -> NoReturn:
    parser.print_help(sys.stderr)
    sys.exit(2)
