"""Render raw PTY output as plain text through a real terminal emulator (pyte)."""

from __future__ import annotations

import pyte

MAX_SCREEN_LINES = 20000


def render_plain(output: str, cols: int, rows: int) -> str:
    """What a terminal of ``cols`` columns would show after ``output``, as plain lines.

    The screen is made tall enough that nothing scrolls away, so line-oriented output keeps
    every line and full-screen programs (top, vim) leave their last frame. Cursor moves,
    carriage returns, erases and colours are applied, not stripped.
    """
    if not output:
        return ""
    height = min(MAX_SCREEN_LINES, max(rows, output.count("\n") + rows + 1))
    screen = pyte.Screen(max(1, cols), height)
    stream = pyte.Stream(screen)
    stream.feed(output)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + ("\n" if lines else "")
