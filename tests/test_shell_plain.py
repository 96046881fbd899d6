"""``shell read --plain``: rendering through pyte, near linear in the characters read.

The unit tests compare the renderer with the one it replaced (a pyte screen tall enough that
nothing scrolls away) and pin what plain promises: carriage returns and erases applied, no
line lost, a full-screen program's last frame. The guest test reads 1 MiB of a real shell's
output in one plain read.
"""

from __future__ import annotations

import random
import re
import time

import pyte
import pytest

from pyro_mcp import Pyro
from pyro_mcp.workspaces.terminal import render_plain
from workspace_fixtures import *  # noqa: F403

MIB = 1024 * 1024


def tall_screen_render(output: str, cols: int, rows: int) -> str:
    """The old rendering: one pyte screen tall enough that no line scrolls off it."""
    screen = pyte.Screen(cols, len(output) + rows + 1)
    pyte.Stream(screen).feed(output)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + ("\n" if lines else "")


PIECES = [
    "abc",
    "x" * 13,
    "hello world",
    "é",
    "中",
    "├──",
    "\r",
    "\r\n",
    "\r\n",
    "\n",
    "\b",
    "\t",
    "\x07",
    "\x1b[31m",
    "\x1b[0m",
    "\x1b[K",
    "\x1b[1K",
    "\x1b[2K",
    "\x1b[3C",
    "\x1b[2D",
    "\x1b]0;title\x07",
    "\x1b[?2004h",
]


def test_line_output_renders_as_the_tall_screen_did() -> None:
    """Random line-oriented output on small screens (so it scrolls a lot): same text."""
    rnd = random.Random(10)
    compared = 0
    for _ in range(400):
        cols, rows = rnd.randint(1, 12), rnd.randint(1, 6)
        data = "".join(rnd.choice(PIECES) for _ in range(rnd.randint(1, 80)))
        try:
            expected = tall_screen_render(data, cols, rows)
        except (IndexError, AssertionError):  # pyte's display fails on some wide-char cuts
            continue
        assert render_plain(data, cols, rows) == expected, (data, cols, rows)
        compared += 1
    assert compared > 300


def test_carriage_returns_backspaces_and_erases_apply() -> None:
    progress = "".join(f"\rprogress {n:3d}%" for n in range(0, 101, 5)) + "\r\n"
    assert render_plain("pyro$ make\r\n" + progress, 80, 24) == "pyro$ make\nprogress 100%\n"
    assert render_plain("abcdef\r\x1b[Kxy\r\n", 80, 24) == "xy\n"
    assert render_plain("abcdef\b\b\x1b[K!\r\n", 80, 24) == "abcd!\n"
    assert render_plain("a\tb\r\n", 80, 24) == "a       b\n"
    assert render_plain("\x1b[1;31merror\x1b[0m: x\r\n", 80, 24) == "error: x\n"
    wrapped = render_plain("0123456789ab\r\n", 5, 3)
    assert wrapped == "01234\n56789\nab\n", "long lines wrap at the screen's width"


def test_no_line_is_lost_however_far_it_scrolled() -> None:
    lines = [f"line {n}" for n in range(50000)]
    out = render_plain("".join(f"{line}\r\n" for line in lines) + "pyro$ ", 120, 30)
    assert out.splitlines() == [*lines, "pyro$"]


def test_a_full_screen_program_leaves_its_last_frame_below_the_history() -> None:
    before = "".join(f"line {n}\r\n" for n in range(50))
    frames = "".join(
        f"\x1b[H\x1b[2J\x1b[1;1Hframe {f}\x1b[5;3Hbody {f}\x1b[10;1Hstatus {f}" for f in (1, 2, 3)
    )
    out = render_plain(before + frames, 40, 10).splitlines()
    # 41 lines had scrolled off; the screen (10 rows) then holds only the last frame.
    assert out == [f"line {n}" for n in range(41)] + ["frame 3", "", "", "", "  body 3"] + [
        "",
        "",
        "",
        "",
        "status 3",
    ]
    cleared = render_plain(before + "\x1b[H\x1b[2J\x1b[3Jafter clear\r\n", 40, 10)
    assert cleared == "after clear\n", "`clear` erases the saved lines too (ESC [ 3 J)"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "line", ["y", "x" * 79, "\x1b[01;34mdir\x1b[0m  file.txt\x1b[K", "├── fichier-é.txt", "x" * 300]
)
def test_a_mebibyte_renders_in_well_under_two_seconds(line: str) -> None:
    data = (line + "\r\n") * (MIB // (len(line) + 2) + 1)
    started = time.monotonic()
    out = render_plain(data[:MIB], 120, 30)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"1 MiB took {elapsed:.2f} s"
    assert out.count("\n") >= MIB // (len(line) + 2) - 1


# -- on a real shell -----------------------------------------------------------------------------
@pytest.mark.guest
@pytest.mark.timeout(180)
def test_plain_read_of_a_mebibyte_of_shell_output_is_fast_and_whole(
    ws_pyro: Pyro, new_workspace
) -> None:
    wid = new_workspace()["workspace_id"]
    sid = ws_pyro.open_shell(wid)["shell_id"]
    start = ws_pyro.read_shell(wid, sid, wait_for_idle_ms=300)["next_cursor"]
    ws_pyro.write_shell(wid, sid, "seq 1 150000; echo $((6*7))DONE")
    raw, deadline = "", time.monotonic() + 90
    while "42DONE" not in raw and time.monotonic() < deadline:
        more = ws_pyro.read_shell(wid, sid, cursor=start + len(raw), max_chars=MIB)["output"]
        raw += more
        time.sleep(0 if more else 0.1)
    assert "42DONE" in raw, "the shell did not finish printing"
    first_line = re.search(r"(?<=[\r\n])1\r\n2\r\n", raw)  # after the echo (and bash's
    assert first_line is not None, repr(raw[:300])  # bracketed-paste switch, "\x1b[?2004l\r")
    begin = start + first_line.start()
    assert len(raw) - (begin - start) > MIB

    started = time.monotonic()
    first = ws_pyro.read_shell(wid, sid, cursor=begin, max_chars=MIB, plain=True)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"a plain read of 1 MiB took {elapsed:.2f} s"
    assert (first["next_cursor"], first["truncated"]) == (begin + MIB, True)
    head = first["output"].splitlines()
    assert head[:-1] == [str(n) for n in range(1, len(head))], "every line, in order"
    rest = ws_pyro.read_shell(wid, sid, cursor=first["next_cursor"], max_chars=MIB, plain=True)
    tail = rest["output"].splitlines()
    tail = tail[: tail.index("42DONE")]
    assert "".join(head + tail) == "".join(str(n) for n in range(1, 150001))
    assert "\x1b" not in first["output"] + rest["output"]
    assert "\r" not in first["output"] + rest["output"]
    ws_pyro.close_shell(wid, sid)
