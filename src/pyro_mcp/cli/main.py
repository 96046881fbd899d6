"""Entry point of ``pyro``: parse, call the operation, print, exit with the right code."""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from typing import Any

from ..api import Pyro, operations
from ..errors import PyroError
from ..operations.registry import CliOutput, Operation, ParamInfo
from .launch import command_word
from .output import BuildProgress, emit_error, emit_json, notice, read_value_file
from .parser import Parser, UsageError, build_parser, print_help_and_exit
from .runners import EXTRA_COMMANDS, RUNNERS, remainder_command


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so sandboxes are cleaned up


def parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse with the tree of just the named command (building all ~50 subcommands costs
    ~30 ms a start). A parse error is parsed again with the whole tree, and help is built
    the same way in both, so help and errors are exactly the full parser's."""
    word = command_word(argv)
    if word is not None:
        parser = parser_for(word)
        if parser is not None:
            try:
                return parser, parser.parse_args(argv)
            except UsageError:
                pass
    parser = parser_for(None)
    assert parser is not None
    return parser, parser.parse_args(argv)


_PARSERS: dict[str | None, Parser | None] = {}


def parser_for(word: str | None) -> Parser | None:
    """The tree of one command word (None: all of them), built once per process; the warm
    CLI helper builds them before it forks, so its children start with them."""
    if word not in _PARSERS:
        if word is None:
            _PARSERS[word] = build_parser(operations(), EXTRA_COMMANDS)
        else:
            ops = operations(word)
            extra = {path: v for path, v in EXTRA_COMMANDS.items() if path[0] == word}
            _PARSERS[word] = build_parser(ops, extra) if ops or extra else None
    return _PARSERS[word]


def _arguments(op: Operation, args: Any, tail: list[str] | None) -> dict[str, Any]:
    """The SDK arguments of one command, from its parsed flags and its ``--`` remainder."""
    kwargs = {}
    for p in op.params:
        value = remainder_command(tail) if p.meta.cli == "remainder" else getattr(args, p.name)
        value = _from_file(p, args, value)
        if p.meta.cli_convert is not None and value is not None:
            value = p.meta.cli_convert(value)
        for index, (_flag, convert) in enumerate(p.meta.cli_also):
            extra = getattr(args, f"{p.name}__also{index}", None)
            if extra:
                value = [*(value or []), *convert(extra)]
        kwargs[p.name] = value
    output = chosen_output(op, args)
    if output is not None:
        kwargs.update(output.call_with)
    return kwargs


def _from_file(param: ParamInfo, args: Any, value: Any) -> Any:
    """The value of a parameter given by its ``cli_file`` flag (``--text-file PATH``)."""
    path = getattr(args, f"{param.name}__file", None) if param.meta.cli_file else None
    if path is None:
        return value
    return read_value_file(f"{param.meta.cli_file} {path}", path, param.meta.max_length)


def chosen_output(op: Operation, args: Any) -> CliOutput | None:
    """The CLI-only output flag given (``--id-only``, ``--content-only``), if any."""
    return next((o for o in op.cli_outputs if getattr(args, o.dest, False)), None)


def _show(op: Operation, result: Any, as_json: bool, output: CliOutput | None) -> int:
    """Print a result (its human rendering, JSON, or the part an output flag asks for) and
    return the exit code."""
    if output is not None:
        sys.stdout.flush()
        sys.stdout.buffer.write(output.show(result))
        sys.stdout.flush()
        if isinstance(result, dict) and result.get("truncated"):
            stop = result.get("max_bytes")
            notice("note")(f"the content stops at {stop} bytes (see --max-bytes)")
        return 0
    rendered = op.render(result) if op.render else None
    if as_json:
        emit_json(result)
    elif rendered is not None:
        sys.stdout.write(rendered.stdout)
        sys.stderr.write(rendered.stderr)
    else:
        emit_json(result)
    return rendered.exit_code if rendered is not None else 0


def run_cli(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    from ..workspaces.supervisor_start import SPARES

    SPARES.enabled = False  # one command: a supervisor started ahead would end unused
    if isinstance(sys.stdout, io.TextIOWrapper):  # a guest file name that is not UTF-8
        sys.stdout.reconfigure(errors="surrogateescape")  # prints its bytes, as ls does
    tail: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1 :]
    as_json = "--json" in argv
    try:
        parser, args = parse(argv)
    except UsageError as exc:
        emit_error(str(exc), as_json)
        return 2
    op: Operation | None = getattr(args, "_operation", None)
    runner = getattr(args, "_runner", None)
    pyro: Pyro | None = None
    build_progress = BuildProgress("pull")
    try:
        pyro = Pyro(backend_name=getattr(args, "engine", None))
        pyro.manager.progress = build_progress
        pyro.manager.notify = notice("engine")
        if runner is not None:
            return int(runner(pyro, args))
        if op is None:
            print_help_and_exit(getattr(args, "_group", parser))
        kwargs = _arguments(op, args, tail)
        if op.cli_runner:
            return RUNNERS[op.cli_runner](pyro, kwargs, as_json)
        return _show(op, getattr(pyro, op.name)(**kwargs), as_json, chosen_output(op, args))
    except (PyroError, ValueError, RuntimeError, OSError) as exc:
        emit_error(str(exc), as_json)
        return 1
    except KeyboardInterrupt:
        emit_error("interrupted", as_json)
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # never a traceback for users; PYRO_DEBUG=1 shows it
        if os.environ.get("PYRO_DEBUG"):
            import traceback

            traceback.print_exc()
        emit_error(f"internal error: {type(exc).__name__}: {exc}", as_json)
        return 1
    finally:
        build_progress.close()
        if pyro is not None:
            pyro.close()
