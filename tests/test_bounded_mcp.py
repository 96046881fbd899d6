"""Issue 14a through the official MCP client and a real gVisor sandbox: each oversized
result of the issue stays under 16 KiB (the JSON of the whole tool result) with its cut
marked, and the rest reads page by page, byte-exact."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import short_tmp_dir
from workspace_fixtures import McpClient, run_cli

pytestmark = pytest.mark.guest

LIMIT = 16 * 1024
FILES = 3000


def _expected_lines(count: int) -> bytes:
    return "".join(f"{i} é\t\x01\n" for i in range(1, count + 1)).encode()


PRINT_LINES = "seq 1 {n} | sed 's/$/ é\\t\\x01/'"


class Bounded:
    """Calls that return the whole tool result and check its size."""

    def __init__(self, client: McpClient) -> None:
        self.client = client

    def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = self.client.call(tool, **arguments)
        assert result.isError is False, (tool, result.content)
        size = len(result.model_dump_json(by_alias=True, exclude_none=True).encode())
        assert size < LIMIT, (tool, arguments, size)
        assert isinstance(result.structuredContent, dict)
        return result.structuredContent

    def read_stream(self, workspace_id: str, sequence: int, stream: str) -> bytes:
        pages, offset = [], 0
        while offset is not None:
            got = self.call(
                "workspace_logs",
                workspace_id=workspace_id,
                sequence=sequence,
                stream=stream,
                offset=offset,
            )
            pages.append(got["entries"][0][stream].encode())
            offset = got["page"]["next_offset"]
        return b"".join(pages)


@pytest.fixture(scope="module")
def ws(state_dir: Path) -> Iterator[tuple[Bounded, str]]:
    host_dir = short_tmp_dir("pyro-bounded-")
    seed = host_dir / "seed"
    (seed / "many").mkdir(parents=True)
    for i in range(FILES):
        (seed / "many" / f"file-{i:04d}.txt").write_text(f"line one of {i}\nline two\n")
    with McpClient(state_dir, roots=(host_dir,)) as client:
        calls = Bounded(client)
        wid = client.ok("workspace_create", environment="debian:12", seed_path=str(seed))[
            "workspace_id"
        ]
        try:
            yield calls, wid
        finally:
            client.ok("workspace_delete", workspace_id=wid)
            shutil.rmtree(host_dir, ignore_errors=True)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_exec_output_is_cut_and_reads_back_byte_exact(
    ws: tuple[Bounded, str], state_dir: Path
) -> None:
    calls, wid = ws
    expected = _expected_lines(20000)  # ~200 KB, control characters and UTF-8 included
    done = calls.call("workspace_exec", workspace_id=wid, command=PRINT_LINES.format(n=20000))
    assert done["exit_code"] == 0 and done["stdout_truncated"] is True
    assert done["stdout_bytes"] == len(expected)
    assert (
        f"read them with workspace logs sequence={done['sequence']} stream=stdout"
        in (done["stdout"])
    )
    head = done["stdout"].split("\n[pyro: bytes ")[0].encode()
    assert expected.startswith(head) and len(head) > 1000
    assert _sha(calls.read_stream(wid, done["sequence"], "stdout")) == _sha(expected)
    kept = state_dir / "workspaces" / wid / "history" / f"{done['sequence']}.stdout"
    assert kept.read_bytes() == expected and kept.stat().st_mode & 0o777 == 0o600


def test_exec_of_megabytes_keeps_the_first_mib_on_the_host(ws: tuple[Bounded, str]) -> None:
    calls, wid = ws
    done = calls.call("workspace_exec", workspace_id=wid, command="seq 1 300000")
    expected = "".join(f"{i}\n" for i in range(1, 300001)).encode()[: 1024 * 1024]
    assert done["stdout_truncated"] is True and done["stdout_bytes"] == len(expected)
    middle = calls.call(
        "workspace_logs",
        workspace_id=wid,
        sequence=done["sequence"],
        stream="stdout",
        offset=500000,
        limit=3000,
    )
    assert middle["page"]["total_bytes"] == len(expected)
    assert middle["entries"][0]["stdout"].encode() == expected[500000:503000]


def test_logs_of_ten_big_outputs_are_paged(ws: tuple[Bounded, str]) -> None:
    calls, wid = ws
    big = "head -c 1000000 /dev/zero | tr '\\0' x"
    for _ in range(10):
        calls.call("workspace_exec", workspace_id=wid, command=big)
    first = calls.call("workspace_logs", workspace_id=wid)
    total = first["total"]
    assert total >= 10 and first["next_offset"] is not None
    assert any(e.get("stdout_truncated") for e in first["entries"])
    sequences, offset = [], 0
    while offset is not None:
        got = calls.call("workspace_logs", workspace_id=wid, offset=offset)
        sequences += [e["sequence"] for e in got["entries"]]
        offset = got["next_offset"]
    assert sequences == list(range(1, total + 1))
    last = calls.call("workspace_logs", workspace_id=wid, tail=2)
    assert [e["sequence"] for e in last["entries"]] == [total - 1, total]
    assert last["entries"][-1]["stdout_bytes"] == 1000000


def test_diff_of_thousands_of_files_is_paged(ws: tuple[Bounded, str]) -> None:
    calls, wid = ws
    change = 'for f in many/*; do echo changed >> "$f"; done'
    calls.call("workspace_exec", workspace_id=wid, command=change)
    first = calls.call("workspace_diff", workspace_id=wid)
    assert first["patch_omitted"] is True and first["patch"] == ""
    assert first["summary"]["modified"] >= FILES and first["next_offset"] is not None
    assert all("+changed" in e["text_patch"] for e in first["entries"])
    # Each page compares the whole tree again (~1 s here): these pages ask for more.
    paths, offset, pages = [], 0, 0
    while offset is not None:
        got = calls.client.ok(
            "workspace_diff", workspace_id=wid, offset=offset, max_result_bytes=200000
        )
        paths += [e["path"] for e in got["entries"] if e["path"].startswith("many/")]
        offset, pages = got["next_offset"], pages + 1
    assert pages > 1
    assert paths == [f"many/file-{i:04d}.txt" for i in range(FILES)]


def test_recursive_file_list_is_paged(ws: tuple[Bounded, str]) -> None:
    calls, wid = ws
    first = calls.call("workspace_file_list", workspace_id=wid, recursive=True)
    assert first["total"] > FILES and first["next_offset"] == len(first["entries"])
    paths, offset = [], 0
    while offset is not None:
        got = calls.call("workspace_file_list", workspace_id=wid, recursive=True, offset=offset)
        paths += [e["path"] for e in got["entries"]]
        offset = got["next_offset"]
    assert len(paths) == first["total"] == len(set(paths))
    assert "/workspace/many/file-2999.txt" in paths


def test_file_read_defaults_to_a_small_read_and_more_on_request(ws: tuple[Bounded, str]) -> None:
    calls, wid = ws
    calls.call("workspace_exec", workspace_id=wid, command="seq 1 15000 > big.txt")
    read = calls.call("workspace_file_read", workspace_id=wid, path="big.txt")
    assert read["truncated"] is True and read["max_bytes"] == 4096
    assert len(read["content"].encode()) == 4096 and read["size_bytes"] > 70000
    more = calls.client.ok("workspace_file_read", workspace_id=wid, path="big.txt", max_bytes=65536)
    assert len(more["content"].encode()) == 65536


def test_the_cli_prints_a_page_exactly(ws: tuple[Bounded, str], state_dir: Path) -> None:
    calls, wid = ws
    done = calls.call("workspace_exec", workspace_id=wid, command=PRINT_LINES.format(n=300))
    seq = str(done["sequence"])
    argv = ("workspace", "logs", wid, "--sequence", seq, "--stream", "stdout")
    page = run_cli(*argv, "--offset", "7", "--limit", "49", home=state_dir)
    assert page.returncode == 0, page.stderr
    assert page.stdout.encode() == _expected_lines(300)[7:56]  # lines 2-8


def test_vm_run_output_is_cut_and_says_it_is_not_kept(ws: tuple[Bounded, str]) -> None:
    calls, _ = ws
    done = calls.call("vm_run", environment="debian:12", command="seq 1 300000")
    assert done["exit_code"] == 0 and done["stdout_truncated"] is True
    assert done["stdout_bytes"] == 1024 * 1024 and "a VM keeps no history" in done["stdout"]
    assert done["stdout"].startswith("1\n2\n3\n")


def test_reset_clears_the_kept_output(ws: tuple[Bounded, str], state_dir: Path) -> None:
    calls, wid = ws
    kept = state_dir / "workspaces" / wid / "history"
    assert any(kept.iterdir())
    calls.call("workspace_reset", workspace_id=wid)
    assert not kept.exists() and calls.call("workspace_logs", workspace_id=wid)["total"] == 0
    # Long output is kept in a file (short output in the history's row): a new one.
    command = "printf fresh; head -c 20000 /dev/zero | tr '\\0' x"
    done = calls.call("workspace_exec", workspace_id=wid, command=command)
    assert done["sequence"] == 1 and (kept / "1.stdout").read_text() == "fresh" + "x" * 20000


def test_service_logs_are_cut_unless_more_is_asked(state_dir: Path) -> None:
    line = "x" * 199
    command = (
        f"for i in $(seq 1 300); do echo {line}; echo {line} >&2; done; touch ready; sleep 300"
    )
    with McpClient(state_dir, "workspace-full") as client:
        calls = Bounded(client)
        wid = client.ok("workspace_create", environment="debian:12")["workspace_id"]
        try:
            service = {"workspace_id": wid, "service_name": "chatty"}
            calls.call("service_start", **service, command=command, ready_file="ready")
            cut = calls.call("service_logs", **service)
            assert cut["stdout_truncated"] and cut["stderr_truncated"], cut.keys()
            assert "cut here; ask for fewer tail_lines" in cut["stdout"]
            whole = client.ok("service_logs", **service, max_result_bytes=200000)
            assert whole["stdout"].count(line) == 200 and "stdout_truncated" not in whole
        finally:
            client.ok("workspace_delete", workspace_id=wid)


def test_snapshot_and_workspace_lists_are_paged(ws: tuple[Bounded, str], state_dir: Path) -> None:
    calls, wid = ws
    with McpClient(state_dir, "workspace-full") as client:
        full = Bounded(client)
        for i in range(80):  # ~230 bytes each: the whole list is over 16 KiB
            client.ok("snapshot_create", workspace_id=wid, name=f"s{i:03d}-{'n' * 40}")
        names, offset = [], 0
        while offset is not None:
            got = full.call("snapshot_list", workspace_id=wid, offset=offset)
            assert got["total"] == 81 and got["count"] == len(got["snapshots"])
            names += [s["snapshot_name"] for s in got["snapshots"]]
            offset = got["next_offset"]
        assert len(names) == 81 and len(set(names)) == 81 and names[0] == "baseline"
        other = client.ok("workspace_create", environment="debian:12")["workspace_id"]
        try:
            first = calls.call("workspace_list", limit=1)
            assert first["count"] == 1 and first["next_offset"] == 1 and first["total"] >= 2
            rest = calls.call("workspace_list", offset=1)
            seen = {w["workspace_id"] for w in first["workspaces"] + rest["workspaces"]}
            assert {wid, other} <= seen
        finally:
            client.ok("workspace_delete", workspace_id=other)
