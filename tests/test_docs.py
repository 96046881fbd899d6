"""The docs run as written (convention: docs/use-cases/README.md, "How these docs are tested").

Every ```bash, ```sh and ```python block in README.md, CHANGELOG.md, examples/README.md and
docs/**/*.md is run as written:
bash -euo pipefail (or the checkout's Python) from the repository root, with the checkout's
.venv/bin first on PATH, PYRO_ENGINE=gvisor and a fresh PYRO_HOME. It must exit 0 and leave
no workspace behind. A block that must not run carries `<!-- not-run: reason -->` on the
line before its fence. Every relative link must resolve to a file (and heading).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyro_mcp import Pyro
from pyro_mcp.api import operations
from pyro_mcp.smoke.scenarios import SCENARIOS
from support import short_tmp_dir

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "examples" / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
]
RUNNABLE = ("bash", "sh", "python")
DATA = ("console", "json", "toml", "text", "")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
BLOCK_TIMEOUT = 240


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the marker's reason; None when unmarked

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence))
            and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = NOT_RUN.match(previous.strip())
        blocks.append(
            Block(
                path,
                start + 1,
                lang,
                "\n".join(body) + "\n",
                marker.group(1).strip() if marker else None,
            )
        )
    return blocks


ALL_BLOCKS = [b for f in DOC_FILES for b in parse_blocks(f)]
TO_RUN = [b for b in ALL_BLOCKS if b.lang in RUNNABLE and b.not_run is None]


def venv_bin() -> Path:
    candidate = ROOT / ".venv" / "bin"
    return candidate if (candidate / "pyro").exists() else Path(sys.executable).parent


def test_the_doc_set_is_there() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOC_FILES}
    for expected in (
        "README.md",
        "docs/install.md",
        "docs/first-run.md",
        "docs/host-requirements.md",
        "docs/public-contract.md",
        "docs/troubleshooting.md",
        "docs/integrations.md",
        "docs/roadmap/llm-chat-ergonomics.md",
        "docs/use-cases/README.md",
        *(f"docs/use-cases/{name}.md" for name in SCENARIOS),
    ):
        assert expected in names, f"{expected} is missing"
    assert len(TO_RUN) >= 10, "suspiciously few runnable blocks: is the parser broken?"


def test_every_block_follows_the_convention() -> None:
    problems = []
    for block in ALL_BLOCKS:
        if block.not_run is not None and not block.not_run:
            problems.append(f"{block.where}: a not-run marker needs a reason")
        if block.lang not in RUNNABLE + DATA:
            problems.append(
                f"{block.where}: fence language {block.lang!r}; use bash/sh/python (run) "
                "or console/json/toml/text (not run)"
            )
        if block.lang in RUNNABLE and not block.code.strip():
            problems.append(f"{block.where}: an empty {block.lang} block")
    for path in DOC_FILES:
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if NOT_RUN.match(line.strip()):
                following = next((ln for ln in lines[n + 1 :] if ln.strip()), "")
                if not FENCE.match(following):
                    problems.append(
                        f"{path.relative_to(ROOT)}:{n + 1}: a not-run marker must come right "
                        "before a fenced block"
                    )
    assert not problems, "\n".join(problems)


def _leftover_workspaces(home: Path) -> list[str]:
    with Pyro(base_dir=home) as pyro:
        left = [w["workspace_id"] for w in pyro.list_workspaces()["workspaces"]]
        for workspace_id in left:
            pyro.delete_workspace(workspace_id)
    return left


@pytest.mark.guest
@pytest.mark.parametrize("block", TO_RUN, ids=[f"{b.where}-{b.lang}" for b in TO_RUN])
def test_block_runs_as_written(block: Block) -> None:
    home = short_tmp_dir("pyro-doc-")
    env = {
        **os.environ,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYRO_ENGINE": "gvisor",
        "PYRO_HOME": str(home),
        "UV_FROZEN": "1",  # a doc's `uv run` must never re-lock the project
    }
    if block.lang == "python":
        argv = [str(venv_bin() / "python"), "-c", block.code]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.code]
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
        left = _leftover_workspaces(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, (
        f"{block.where} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )
    assert not left, f"{block.where} left workspaces behind: {left}"


# -- no shell glue -----------------------------------------------------------------------
GLUE = ("$(cat", "python3 -c")  # the CLI's --id-only, --content-only, --*-file replace them
GLUE_FILES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted(p for p in (ROOT / "examples").rglob("*") if p.is_file()),
]


def test_no_shell_glue_in_docs_and_examples() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{n}: {glue!r} (use the CLI's flags instead): {line.strip()}"
        for path in GLUE_FILES
        for n, line in enumerate(path.read_text().splitlines(), 1)
        for glue in GLUE
        if glue in line
    ]
    assert len(GLUE_FILES) > 20, "suspiciously few files: is the glob broken?"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_recipe_has_a_cli_script_that_runs(name: str) -> None:
    """Each recipe's CLI script is among the blocks run as written (test_block_runs_as_written)."""
    path = ROOT / "docs" / "use-cases" / f"{name}.md"
    run = [b for b in TO_RUN if b.path == path and b.lang == "bash" and "pyro workspace" in b.code]
    assert run, f"{name}: no runnable bash block using `pyro workspace`"


# -- links -------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """Lines outside fenced blocks, inline code removed."""
    out, fence = [], None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            continue
        out.append((n, INLINE_CODE.sub("", line)))
    return out


def heading_slugs(path: Path) -> set[str]:
    """GitHub-style anchors of a file's headings (inline code kept, punctuation dropped)."""
    seen: dict[str, int] = {}
    result = set()
    fence = None
    for line in path.read_text().splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            continue
        h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not h:
            continue
        slug = re.sub(r"[^\w\- ]", "", h.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def test_relative_links_resolve() -> None:
    problems = []
    checked = 0
    for path in DOC_FILES:
        for n, line in prose_lines(path):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                checked += 1
                file_part, _, fragment = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}:{n}: {target}"
                if not dest.exists():
                    problems.append(f"{where}: no such file")
                elif fragment and dest.suffix == ".md" and fragment not in heading_slugs(dest):
                    problems.append(f"{where}: no heading #{fragment} in {dest.name}")
    assert checked > 20, "suspiciously few links: is the link parser broken?"
    assert not problems, "\n".join(problems)


# -- the recipe index agrees with the smokes and the profiles ----------------------------
PROFILE_TOOLS = {
    profile: {op.mcp_name for op in operations() if op.mcp_name and profile in op.profiles}
    for profile in ("vm-run", "workspace-core", "workspace-full")
}
RECOMMENDED = {
    "cold-start-validation": "workspace-full",
    "repro-fix-loop": "workspace-core",
    "parallel-workspaces": "workspace-core",
    "untrusted-inspection": "workspace-core",
    "review-eval": "workspace-full",
}


def test_recipe_index_matches_the_smokes() -> None:
    assert set(RECOMMENDED) == set(SCENARIOS)
    index = (ROOT / "docs/use-cases/README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    stories = re.search(r"^STORIES := (.*)$", makefile, re.M)
    assert stories and set(stories.group(1).split()) == set(SCENARIOS)
    for name, profile in RECOMMENDED.items():
        row = next(ln for ln in index.splitlines() if f"]({name}.md)" in ln)
        assert f"`{profile}`" in row and f"`make smoke-{name}`" in row, row
        recipe = (ROOT / f"docs/use-cases/{name}.md").read_text()
        assert f"| Recommended MCP profile | `{profile}`" in recipe, name
        assert f"`make smoke-{name}`" in recipe, name


@pytest.mark.parametrize("name", sorted(RECOMMENDED))
def test_recipe_tools_are_in_the_recommended_profile(name: str) -> None:
    """The MCP tools a recipe's flow table names must exist in its recommended profile."""
    text = (ROOT / f"docs/use-cases/{name}.md").read_text()
    table = text.split("## The flow", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("|") and "---" not in ln][1:]
    named = {t for row in rows for t in re.findall(r"`([a-z_]+)`", row.split("|")[-2])}
    assert named, f"{name}: no MCP tools found in the flow table"
    missing = named - PROFILE_TOOLS[RECOMMENDED[name]]
    assert not missing, f"{name}: {sorted(missing)} are not in {RECOMMENDED[name]}"
