"""PTY shells (PRODUCT_SPEC §2.13)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

from ..validation import ID_PATTERN, MAX_IDLE_MS
from .base import OperationsBase
from .registry import FULL, HumanOutput, Param, operation
from .render import id_only, kv_line
from .workspace_files import SecretEnv
from .workspaces import WorkspaceId

if TYPE_CHECKING:  # the shapes are for mypy and the MCP schema: not on the CLI's path
    from .results_work import ShellInfo, ShellOutput

ShellId = Annotated[
    str,
    Param(
        "The shell's id (12 hex characters).",
        cli="positional",
        metavar="SHELL_ID",
        pattern=ID_PATTERN,
    ),
]
SHELL_KEYS = ["workspace_id", "shell_id", "state", "cwd", "cols", "rows"]


def _render_summary(data: dict[str, Any]) -> HumanOutput:
    extra: list[str] = [k for k in ("input_length", "signal", "closed", "exit_code") if k in data]
    return HumanOutput(stdout=kv_line("workspace-shell", data, SHELL_KEYS + extra) + "\n")


def _render_read(data: dict[str, Any]) -> HumanOutput:
    footer = kv_line(
        "workspace-shell-read",
        data,
        [
            "workspace_id",
            "shell_id",
            "state",
            "cursor",
            "next_cursor",
            "truncated",
            "plain",
            "wait_for_idle_ms",
        ],
    )
    return HumanOutput(stdout=data["output"], stderr=footer + "\n")


class ShellOperations(OperationsBase):
    @operation(
        mcp="shell_open",
        cli=("workspace", "shell", "open"),
        profiles=FULL,
        render=_render_summary,
        cli_outputs=(id_only("shell_id", "shell"),),
    )
    def open_shell(
        self,
        workspace_id: WorkspaceId,
        cwd: Annotated[str, Param("Starting directory under /workspace.")] = "/workspace",
        cols: Annotated[int, Param("Terminal width.", ge=1, le=1000)] = 120,
        rows: Annotated[int, Param("Terminal height.", ge=1, le=1000)] = 30,
        secret_env: SecretEnv = None,
    ) -> ShellInfo:
        """Open an interactive bash on a PTY inside the workspace (prompt 'pyro$ ')."""
        from ..workspaces import shells

        return cast(
            "ShellInfo", shells.shell_open(self._ws(workspace_id), cwd, cols, rows, secret_env)
        )

    @operation(
        mcp="shell_read",
        cli=("workspace", "shell", "read"),
        profiles=FULL,
        read_only=True,
        render=_render_read,
    )
    def read_shell(
        self,
        workspace_id: WorkspaceId,
        shell_id: ShellId,
        cursor: Annotated[
            int, Param("Character offset to read from (the previous next_cursor).", ge=0)
        ] = 0,
        max_chars: Annotated[
            int,
            Param(
                "Return at most this many characters (1-1048576; MCP calls default to 4096: "
                "read on from next_cursor).",
                ge=1,
                le=1048576,
                mcp_default=4096,
            ),
        ] = 65536,
        plain: Annotated[
            bool, Param("Render through a terminal emulator to plain text (no escape sequences).")
        ] = False,
        wait_for_idle_ms: Annotated[
            int | None,
            Param(
                "Wait until the shell has been quiet this long (1-10000 ms; 300 suits chat).",
                ge=1,
                le=MAX_IDLE_MS,
            ),
        ] = None,
    ) -> ShellOutput:
        """Read shell output from a cursor; output keeps buffering while nobody reads."""
        from ..workspaces import shells

        return cast(
            "ShellOutput",
            shells.shell_read(
                self._ws(workspace_id), shell_id, cursor, max_chars, plain, wait_for_idle_ms
            ),
        )

    @operation(
        mcp="shell_write",
        cli=("workspace", "shell", "write"),
        profiles=FULL,
        destructive=True,  # what it types runs as commands
        reaches_network=True,
        render=_render_summary,
    )
    def write_shell(
        self,
        workspace_id: WorkspaceId,
        shell_id: ShellId,
        input: Annotated[str, Param("Text to type into the shell.")],
        append_newline: Annotated[
            bool,
            Param(
                "Press Enter after the input.",
                cli_help="Press Enter after the input (CLI: --no-newline turns it off).",
                cli="--no-newline",
                cli_invert=True,
            ),
        ] = True,
    ) -> ShellInfo:
        """Type input into the shell (followed by Enter unless append_newline is false)."""
        from ..workspaces import shells

        return cast(
            "ShellInfo", shells.shell_write(self._ws(workspace_id), shell_id, input, append_newline)
        )

    @operation(
        mcp="shell_signal",
        cli=("workspace", "shell", "signal"),
        profiles=FULL,
        destructive=True,  # KILL ends what runs
        render=_render_summary,
    )
    def signal_shell(
        self,
        workspace_id: WorkspaceId,
        shell_id: ShellId,
        signal_name: Annotated[
            str,
            Param(
                "HUP, INT, TERM or KILL (to the foreground job).",
                cli="--signal",
                choices=("HUP", "INT", "TERM", "KILL"),
            ),
        ] = "INT",
    ) -> ShellInfo:
        """Send a signal to what runs in the shell, like a keyboard would (INT = Ctrl-C)."""
        from ..workspaces import shells

        return cast("ShellInfo", shells.shell_signal(self._ws(workspace_id), shell_id, signal_name))

    @operation(
        mcp="shell_close",
        cli=("workspace", "shell", "close"),
        profiles=FULL,
        destructive=True,
        render=_render_summary,
    )
    def close_shell(self, workspace_id: WorkspaceId, shell_id: ShellId) -> ShellInfo:
        """Close the shell (HUP, then KILL after 5 s)."""
        from ..workspaces import shells

        return cast("ShellInfo", shells.shell_close(self._ws(workspace_id), shell_id))
