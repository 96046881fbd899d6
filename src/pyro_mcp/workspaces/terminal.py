"""Render raw PTY output as plain text through a real terminal emulator (pyte).

The screen is the shell's own size, as the programs in it were told; a line that scrolls off
its top goes into a history, so line-oriented output keeps every line and full-screen
programs (top, vim) leave their last frame below it.

pyte costs a few microseconds per character and, at the bottom of the screen, O(rows) per
line feed. Most of a long output is plain lines, so runs of text that need nothing but
``\\r \\n \\b \\t``, colours (SGR) and erase-in-line are laid out here with string slicing, as
pyte would lay them out, when the cursor sits on the bottom row of a scroll region that
starts at the top; everything else (and every run that starts elsewhere) goes to pyte. The
result is the same text either way; the cost is near linear in the characters rendered.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata

import pyte
from pyte import modes
from pyte.screens import Char, StaticDefaultDict
from wcwidth import wcwidth

Line = StaticDefaultDict[int, Char]

# Longest piece of text fed to pyte at once while the fast path cannot take it.
PYTE_CHUNK_ROWS = 2
CONTROLS = re.compile(r"[\r\b\t\x1b]")
# Lines ended by CRLF holding nothing but text, colours and erase-to-end: on a fresh bottom
# row each is its own text, wrapped at the screen's width.
PLAIN_LINES = re.compile(r"(?:(?:[^\r\n\b\t\x1b]++|\x1b\[[0-9;]*+m|\x1b\[0?K)*+\r\n)++")
NO_TEXT = re.compile(r"\x1b\[[0-9;]*m|\x1b\[0?K")
TOKEN = re.compile(r"[^\r\b\t\x1b]+|[\r\b\t]|\x1b\[[0-9;]*m|\x1b\[([012]?)K")


@functools.cache
def simple_run() -> re.Pattern[str]:
    """A run the fast path can lay out: one-cell characters, CR, LF, BS, TAB, SGR and EL."""
    narrow: list[str] = []
    start = -1
    for code in range(0xA0, 0x3001):
        ok = code < 0x3000 and wcwidth(chr(code)) == 1 and not unicodedata.combining(chr(code))
        if ok and start < 0:
            start = code
        elif not ok and start >= 0:
            narrow.append(f"\\u{start:04x}-\\u{code - 1:04x}")
            start = -1
    chars = "\\x20-\\x7e\\r\\n\\b\\t" + "".join(narrow)
    return re.compile(f"(?:[{chars}]++|\\x1b\\[[0-9;]*+m|\\x1b\\[[012]?K)++")


class _Screen(pyte.Screen):
    """A pyte screen that keeps the lines scrolled off its top (as a terminal's scrollback)."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.history: list[str] = []

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if top == 0 and self.cursor.y == bottom:
            self.history.append(self.row_text(self.buffer[0]))
        super().index()

    def erase_in_display(self, how: int = 0, *args: object, **kwargs: object) -> None:
        super().erase_in_display(how, *args, **kwargs)
        if how == 3:  # "erase saved lines", which `clear` sends
            self.history.clear()

    def row_text(self, line: Line) -> str:
        """One row as pyte's ``display`` shows it (a wide character's stub cell skipped)."""
        cells = [line[x].data for x in range(self.columns)]
        text = "".join(cells)
        if len(text) == self.columns and text.isascii():
            return text
        out: list[str] = []
        wide = False
        for x in range(self.columns):
            if wide:
                wide = False
                continue
            data = cells[x]
            wide = bool(data) and wcwidth(data[0]) == 2
            out.append(data)
        return "".join(out)

    def line_from(self, text: str) -> Line:
        line = StaticDefaultDict[int, Char](self.default_char)
        for x, char in enumerate(text):
            if char != " ":
                line[x] = _cell(char)
        return line


class PlainRenderer:
    """Feeds PTY output to a ``cols`` x ``rows`` screen; ``text()`` is what it shows, history
    included."""

    def __init__(self, cols: int, rows: int) -> None:
        self.screen = _Screen(max(1, cols), max(1, rows))
        self.stream = pyte.Stream(self.screen)

    def feed(self, data: str) -> None:
        pos, end = 0, len(data)
        run = simple_run()
        while pos < end:
            if self._fast_ready():
                match = run.match(data, pos)
                if match:
                    self._fast(match.group())
                    pos = match.end()
                    continue
            stop = self._pyte_stop(data, pos)
            self.stream.feed(data[pos:stop])
            pos = stop

    def text(self) -> str:
        screen = self.screen
        rows = screen.history + [screen.row_text(screen.buffer[y]) for y in range(screen.lines)]
        lines = [row.rstrip() for row in rows]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + ("\n" if lines else "")

    def _pyte_stop(self, data: str, pos: int) -> int:
        """Where the piece for pyte ends: after the next LF, before the next ESC, or after a
        couple of screen rows of text, whichever comes first (any cut is correct: the fast
        path only resumes once pyte's parser is back in its ground state)."""
        stop = min(len(data), pos + PYTE_CHUNK_ROWS * self.screen.columns)
        newline = data.find("\n", pos, stop)
        escape = data.find("\x1b", pos + 1, stop)
        if newline >= 0:
            stop = min(stop, newline + 1)
        if escape >= 0:
            stop = min(stop, escape)
        return min(stop, len(data))

    def _fast_ready(self) -> bool:
        screen = self.screen
        top, bottom = screen.margins or (0, screen.lines - 1)
        return (
            getattr(self.stream, "_taking_plain_text", False) is True  # parser in ground state
            and top == 0
            and screen.cursor.y == bottom
            and modes.DECAWM in screen.mode
            and modes.IRM not in screen.mode
            and all(_narrow(char.data) for char in screen.buffer[bottom].values())
        )

    def _fast(self, run: str) -> None:
        screen = self.screen
        cols = screen.columns
        bottom = screen.buffer[screen.cursor.y]
        row = "".join(bottom[x].data for x in range(cols)).rstrip()
        x = screen.cursor.x
        done: list[str] = []  # rows finished and scrolled up, oldest first
        pos, end = 0, len(run)
        while pos < end:
            block = PLAIN_LINES.match(run, pos) if not row and not x else None
            if block:
                done.extend(_plain_rows(cols, block.group()))
                pos = block.end()
                continue
            newline = run.find("\n", pos)
            stop = end if newline < 0 else newline
            row, x = self._piece(run[pos:stop], row, x, done)
            if newline >= 0:
                done.append(row)
                row = ""
                x = 0 if modes.LNM in screen.mode else x
            pos = stop + 1
        self._commit(done, row, x)

    def _piece(self, piece: str, row: str, x: int, done: list[str]) -> tuple[str, int]:
        """Draw a piece of a line (no LF) on ``row`` from column ``x``."""
        cols = self.screen.columns
        hit = CONTROLS.search(piece)
        if hit is None:
            return _draw(cols, row, x, piece, done)
        if hit.start() == len(piece) - 1 and piece[-1] == "\r":
            return _draw(cols, row, x, piece[:-1], done)[0], 0
        return self._tokens(piece, row, x, done)

    def _tokens(self, piece: str, row: str, x: int, done: list[str]) -> tuple[str, int]:
        cols = self.screen.columns
        for token in TOKEN.finditer(piece):
            text = token.group()
            if text == "\r":
                x = 0
            elif text == "\b":  # pyte's cursor_back: a pending wrap first, never past column 0
                x = max(0, (x - 1 if x == cols else x) - 1)
            elif text == "\t":
                stops = sorted(self.screen.tabstops)
                at = bisect.bisect_right(stops, x)
                x = stops[at] if at < len(stops) else cols - 1
            elif text.endswith("K"):
                how = int(token.group(1) or 0)
                if how == 0:
                    row = row[:x]
                elif how == 1:
                    row = " " * min(x + 1, cols) + row[x + 1 :]
                else:
                    row = ""
            elif not text.startswith("\x1b"):  # colours change no text
                row, x = _draw(cols, row, x, text, done)
        return row, x

    def _commit(self, done: list[str], row: str, x: int) -> None:
        """Put the fast path's result back into pyte: ``len(done)`` rows scrolled up."""
        screen = self.screen
        bottom = screen.cursor.y
        if done:
            above: list[Line] = [screen.buffer[y] for y in range(bottom)]
            scrolled = len(done)
            if scrolled >= bottom:
                screen.history.extend(screen.row_text(line) for line in above)
                screen.history.extend(done[: scrolled - bottom])
                kept: list[Line | str] = list(done[scrolled - bottom :])
            else:
                screen.history.extend(screen.row_text(line) for line in above[:scrolled])
                kept = [*above[scrolled:], *done]
            for y, line in enumerate(kept):
                screen.buffer[y] = screen.line_from(line) if isinstance(line, str) else line
        screen.buffer[bottom] = screen.line_from(row)
        screen.cursor.x = x


@functools.cache
def _cell(char: str) -> Char:
    return Char(data=char)


def _plain_rows(cols: int, block: str) -> list[str]:
    """The rows that CRLF-ended lines of text make, each started on a fresh row at column 0."""
    texts = NO_TEXT.sub("", block)[:-2].split("\r\n")
    if max(map(len, texts)) <= cols:
        return texts
    rows: list[str] = []
    for text in texts:
        rows.extend([text[i : i + cols] for i in range(0, len(text), cols)] or [""])
    return rows


def _narrow(data: str) -> bool:
    """One character in one cell (wide characters start at U+1100)."""
    return len(data) == 1 and (data < "\u1100" or wcwidth(data) == 1)


def _draw(cols: int, row: str, x: int, text: str, done: list[str]) -> tuple[str, int]:
    """Draw one-cell characters at column ``x`` with autowrap, as pyte's ``draw`` does: a
    character arriving after the last column first moves to a new row."""
    i, end = 0, len(text)
    while i < end:
        if x >= cols:
            done.append(row)
            row, x = "", 0
        take = min(cols - x, end - i)
        row = row[:x].ljust(x) + text[i : i + take] + row[x + take :]
        x += take
        i += take
    return row, x


def render_plain(output: str, cols: int, rows: int) -> str:
    """What a terminal of ``cols`` x ``rows`` shows after ``output``, scrollback included, as
    plain lines: cursor moves, carriage returns, erases and colours are applied, not stripped."""
    if not output:
        return ""
    renderer = PlainRenderer(cols, rows)
    renderer.feed(output)
    return renderer.text()
