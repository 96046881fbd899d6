"""CLI commands that need more than "call, then print": streaming runs, demo, mcp serve."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ..api import Pyro
from ..calls import interruptible
from ..errors import ValidationError
from ..manager import join_command
from ..operations.registry import PROFILES
from ..workspaces.records import NETWORK_POLICIES
from .output import emit_json

if TYPE_CHECKING:
    from ..mcp.http import HttpSettings


def remainder_command(words: list[str] | str | None) -> str:
    if isinstance(words, str):
        return words
    words = list(words or [])
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise ValidationError("command is required after `--`")
    return join_command(words)


def _write(stream_name: str, chunk: bytes) -> None:
    target = sys.stdout if stream_name == "stdout" else sys.stderr
    target.buffer.write(chunk)
    target.flush()


def run(pyro: Pyro, kwargs: dict[str, Any], as_json: bool) -> int:
    kwargs["command"] = remainder_command(kwargs.get("command"))
    if as_json:
        result = pyro.run_in_vm(**kwargs)
        emit_json(result)
        return int(result["exit_code"])

    def phase(name: str) -> None:
        sys.stderr.write(f"[run] phase={name}\n")
        sys.stderr.flush()

    result = pyro.run_in_vm(**kwargs, on_output=_write, on_phase=phase)
    sys.stderr.write(
        f"[run] environment={result['environment']} engine={result['engine']} "
        f"execution_mode={result['execution_mode']} exit_code={result['exit_code']} "
        f"duration_ms={result['duration_ms']}\n"
    )
    return int(result["exit_code"])


def workspace_exec(pyro: Pyro, kwargs: dict[str, Any], as_json: bool) -> int:
    kwargs["command"] = remainder_command(kwargs.get("command"))
    if not as_json:
        kwargs["on_output"] = _write
    # Ctrl-C cancels the command in the guest and shows what ran (exit 130, cancelled).
    result = interruptible(lambda: pyro.exec_workspace(**kwargs))
    if as_json:
        emit_json(result)
        return int(result["exit_code"])
    sys.stderr.write(
        f"[workspace-exec] workspace_id={result['workspace_id']} sequence={result['sequence']} "
        f"cwd={result['cwd']} execution_mode={result['execution_mode']} "
        f"exit_code={result['exit_code']} duration_ms={result['duration_ms']}\n"
    )
    return int(result["exit_code"])


RUNNERS = {"run": run, "workspace_exec": workspace_exec}


def add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "mode",
        nargs="?",
        choices=["ollama"],
        help="ollama: a local model drives the vm_* tools (needs an Ollama server).",
    )
    parser.add_argument(
        "--network",
        action="store_true",
        help="Fetch https://example.com from inside the sandbox instead.",
    )
    parser.add_argument(
        "--base-url",
        default="http://localhost:11434/v1",
        help="Ollama's OpenAI-compatible endpoint (demo ollama).",
    )
    parser.add_argument("--model", default="llama3.2:3b", help="Model name (demo ollama).")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log each model step.")
    parser.set_defaults(_runner=demo)


def demo(pyro: Pyro, args: argparse.Namespace) -> int:
    if args.mode == "ollama":
        from .ollama_demo import run_ollama_demo

        return run_ollama_demo(pyro, args.base_url, args.model, args.verbose)
    if args.network:
        command = (
            'python3 -c "import urllib.request as u; '
            "r = u.urlopen('https://example.com', timeout=20); print(r.status, len(r.read()))\""
        )
    else:
        command = "git --version"
    result = pyro.run_in_vm(environment="debian:12", command=command, network=args.network)
    emit_json(result)
    return int(result["exit_code"])


def add_mcp_serve(parser: argparse.ArgumentParser) -> None:
    _add_http_flags(parser)
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="workspace-full",
        help="Which tools to expose: vm-run (1 tool), workspace-core (recommended for chat "
        "hosts) or workspace-full (everything; the 3.x default).",
    )
    parser.add_argument(
        "--host-root",
        action="append",
        metavar="DIR",
        help="A directory whose contents the model may seed, sync and export into "
        "(repeatable; relative paths start at the first). Default: the directory the server "
        "starts in, unless it is /, your home directory, /tmp or a system directory.",
    )
    parser.add_argument(
        "--allow-host-compat",
        action="store_true",
        help="Let tools run UNISOLATED on the host when no sandbox engine works (no tool "
        "can ask for this; every result then says so).",
    )
    parser.add_argument(
        "--network-ceiling",
        choices=NETWORK_POLICIES,
        default="off",
        help="The most network a model's sandboxes may get (default: off, no network); a "
        "model may ask for less, never more.",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="A host models' sandboxes may reach: exact name or *.suffix (repeatable; needs "
        "--network-ceiling egress or above). Unset: any public host. A model's allow_hosts "
        "must stay within these; without one, a workspace gets this list.",
    )
    _add_secret_flags(parser)
    parser.set_defaults(_runner=mcp_serve)


def _add_secret_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret",
        action="append",
        metavar="NAME[=@FILE]",
        help="Declare a secret tools may use by name: NAME=@FILE reads FILE, NAME reads the "
        "server's environment variable NAME (repeatable). Models never see values.",
    )
    parser.add_argument(
        "--secret-host",
        action="append",
        metavar="NAME=HOST",
        help="Broker secret NAME: the egress proxy adds it to requests to HOST (exact or "
        "*.suffix; repeatable); the sandbox holds only a placeholder. Every declared secret "
        "needs this, or --secret-plain.",
    )
    parser.add_argument(
        "--secret-plain",
        action="append",
        metavar="NAME",
        help="Let declared secret NAME enter the sandbox as a plain value (the weaker mode: "
        "code in the sandbox can read and send it).",
    )


def _add_http_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (default: the client starts the server) or http (streamable HTTP at "
        "/mcp; every request needs the bearer token).",
    )
    parser.add_argument(
        "--port", type=int, metavar="N", help="HTTP port (default 8765; 0: any free port)."
    )
    parser.add_argument(
        "--bind",
        metavar="HOST",
        help="Listen on HOST instead of 127.0.0.1 (needs --token-file or PYRO_MCP_TOKEN).",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="Read the HTTP bearer token from FILE (else PYRO_MCP_TOKEN, else one is "
        "generated and shown once).",
    )


def _http_settings(args: argparse.Namespace) -> HttpSettings | None:
    """The HTTP settings (None for stdio), checked before anything starts."""
    from ..mcp.http import HttpSettings

    if args.transport == "http":
        return HttpSettings.from_args(args.bind, args.port, args.token_file, os.environ)
    given = [flag for flag in ("port", "bind", "token_file") if getattr(args, flag) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ValidationError(f"{flag} applies to --transport http only")
    return None


def mcp_serve(pyro: Pyro, args: argparse.Namespace) -> int:
    from ..mcp.policy import HOST_COMPAT_NOTICE, OperatorPolicy
    from ..mcp.stdio import serve_stdio
    from ..workspaces.supervisor_start import SPARES

    SPARES.enabled = True  # a long-lived server: its next supervisor is started ahead

    http = _http_settings(args)
    policy = OperatorPolicy.from_args(
        args.host_root,
        args.allow_host_compat,
        args.secret,
        secret_hosts=args.secret_host,
        plain_secrets=args.secret_plain,
        network_ceiling=args.network_ceiling,
        allow_hosts=args.allow_host,
    )
    if policy.allow_host_compat:
        sys.stderr.write(f"[mcp] warning: {HOST_COMPAT_NOTICE}\n")
    for name in policy.plain_secret_names:
        sys.stderr.write(
            f"[mcp] note: secret {name} is plain (its value enters the sandbox); "
            f"--secret-host {name}=HOST brokers it\n"
        )
    server = pyro.create_server(profile=args.profile, policy=policy)
    try:
        if http is None:
            serve_stdio(server)
        else:
            from ..mcp.http import serve_http

            serve_http(server, http)
    finally:
        pyro.close()
    return 0


EXTRA_COMMANDS = {
    ("demo",): ("Run a one-shot demo in debian:12 and print the JSON result.", add_demo),
    ("mcp", "serve"): ("Serve the MCP tools over stdio or streamable HTTP.", add_mcp_serve),
}
