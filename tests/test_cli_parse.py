"""The CLI parses with just the named command's tree; help and errors must not change."""

from __future__ import annotations

import contextlib
import inspect
import io

import pytest

from pyro_mcp.api import Pyro, operations
from pyro_mcp.cli.main import command_word, parse, parser_for
from pyro_mcp.cli.parser import UsageError, build_parser
from pyro_mcp.cli.runners import EXTRA_COMMANDS

PATHS = sorted(
    {op.cli_path for op in operations() if op.cli_path} | set(EXTRA_COMMANDS),
)


def _help(parser_argv: list[str], subset: bool) -> str:
    """--help as the CLI prints it: from the command's own tree (``parser_for``, as the CLI
    builds it), or from the whole tree."""
    parser = parser_for(parser_argv[0] if subset else None)
    assert parser is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args([*parser_argv, "--help"])
    return out.getvalue()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p))
def test_subcommand_help_is_the_full_parsers(path: tuple[str, ...]) -> None:
    for depth in range(1, len(path) + 1):
        prefix = list(path[:depth])
        assert _help(prefix, subset=True) == _help(prefix, subset=False)


def test_every_declared_command_is_found_by_its_word() -> None:
    every = {op.name for op in operations()}
    by_word = {op.name for word in {p[0] for p in PATHS} for op in operations(word)}
    no_cli = {op.name for op in operations() if not op.cli_path}
    assert by_word == every - no_cli


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["run", "debian:12", "--", "true"], "run"),
        (["--engine", "gvisor", "run", "debian:12"], "run"),
        (["--engine=qemu", "workspace", "list"], "workspace"),
        (["--version"], None),
        ([], None),
    ],
)
def test_command_word(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["workspace", "bogus"], "invalid choice: 'bogus'"),
        (["workspace", "exec"], "the following arguments are required"),
        (["run", "debian:12", "--vcpu-count", "x"], "invalid int value"),
    ],
)
def test_errors_are_the_full_parsers(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as subset_error:
        parse(argv)
    with pytest.raises(UsageError) as full_error:
        build_parser(operations(), EXTRA_COMMANDS).parse_args(argv)
    assert str(subset_error.value) == str(full_error.value)
    assert message in str(subset_error.value)


@pytest.mark.parametrize("op", operations(), ids=lambda op: op.name)
def test_declaration_matches_inspect(op) -> None:
    """The registry reads signatures and docstrings without inspect: same answers as inspect."""
    method = getattr(Pyro, op.name)
    assert op.description == (inspect.getdoc(method) or "").strip()
    expected = [
        (name, parameter.default, parameter.default is inspect.Parameter.empty)
        for name, parameter in inspect.signature(method).parameters.items()
        if name != "self"
        and parameter.kind
        not in (parameter.VAR_POSITIONAL, parameter.KEYWORD_ONLY, parameter.VAR_KEYWORD)
    ]
    got = [
        (p.name, inspect.Parameter.empty if p.required else p.default, p.required)
        for p in op.params
    ]
    assert got == expected
