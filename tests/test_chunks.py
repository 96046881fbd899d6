"""Archives in bounded chunks (issue 13): the Chunks pipe, and uploads/downloads between the
host client and a real agent over pipes (no sandbox: the agent re-rooted in a temp dir)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp.engines.agent_client import AgentClient, AgentInvalid
from pyro_mcp.guest.agent import Agent
from pyro_mcp.guest.chunks import CHUNK_BYTES, Chunks, ChunkWriter, Uploads

MIB = 1024 * 1024


def test_a_writer_blocks_while_the_limit_waits_and_the_reader_gets_every_byte() -> None:
    chunks = Chunks(limit=2)
    sent = [bytes([i]) * 1000 for i in range(10)]
    writer = threading.Thread(target=lambda: [chunks.put(c) for c in sent] and chunks.end())
    writer.start()
    time.sleep(0.2)
    assert writer.is_alive()  # 2 wait, the third put blocks
    assert len(chunks._chunks) == 2
    assert chunks.read() == b"".join(sent)
    writer.join(timeout=5)
    assert not writer.is_alive()


def test_close_unblocks_the_writer_and_drops_the_rest() -> None:
    chunks = Chunks(limit=1)
    chunks.put(b"a")
    writer = threading.Thread(target=lambda: [chunks.put(b"b") for _ in range(5)])
    writer.start()
    time.sleep(0.1)
    chunks.close()
    writer.join(timeout=5)
    assert not writer.is_alive()
    assert chunks.read() == b""


def test_an_end_with_an_error_is_raised_to_the_reader() -> None:
    chunks = Chunks()
    chunks.put(b"abc")
    chunks.end("the source failed")
    assert chunks.read(2) == b"ab"
    assert chunks.read(1) == b"c"
    with pytest.raises(ValueError, match="the source failed"):
        chunks.read(1)


def test_uploads_route_chunks_to_their_request_only() -> None:
    uploads = Uploads()
    body = uploads.body({"id": 7, "op": "tar_in", "upload": 1}, b"")
    assert isinstance(body, Chunks)
    assert uploads.body({"id": 8, "op": "exec"}, b"x") == b"x"
    assert uploads.route({"id": 7}, b"one") and uploads.route({"id": 9}, b"lost")
    assert uploads.route({"id": 7, "end": 1}, b"")
    assert not uploads.route({"id": 10, "op": "exec"}, b"")
    assert body.read() == b"one"


def test_a_chunk_writer_sends_at_most_one_mib_at_a_time() -> None:
    sent: list[bytes] = []
    out = ChunkWriter(sent.append)
    out.write(bytes(CHUNK_BYTES + 10))
    out.write(b"x")
    out.flush()
    assert [len(c) for c in sent] == [CHUNK_BYTES, 11]


@pytest.fixture
def client() -> Iterator[AgentClient]:
    """A host client talking to a real agent over two pipes."""
    to_agent, from_host = os.pipe()
    to_host, from_agent = os.pipe()
    agent = Agent(os.fdopen(to_agent, "rb"), os.fdopen(from_agent, "wb"))
    threading.Thread(target=_serve, args=(agent,), daemon=True).start()
    client = AgentClient(os.fdopen(to_host, "rb"), os.fdopen(from_host, "wb"), name="test")
    yield client
    client.close()


def _serve(agent: Agent) -> None:
    try:
        agent.serve()
    except Exception:
        pass  # the host closed the stream


def big_tar(path: Path, size: int) -> str:
    data = os.urandom(size)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(data).hexdigest()


def test_an_upload_larger_than_the_buffers_unpacks_and_a_download_streams_back(
    client: AgentClient, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    sha = big_tar(tmp_path / "in.tar", 20 * MIB)
    with (tmp_path / "in.tar").open("rb") as source:
        result, _ = client.call(
            "tar_in", {"dest": str(root), "root": str(root)}, source, timeout=60
        )
    assert result["bytes_written"] == 20 * MIB
    assert hashlib.sha256((root / "big.bin").read_bytes()).hexdigest() == sha
    # other requests go on between the chunks and after them: the stream stayed in step
    assert client.call("file_list", {"path": str(root), "root": str(root)})[0]["entries"]

    got: list[int] = []
    out = io.BytesIO()

    def on_event(kind: str, data: bytes) -> None:
        got.append(len(data))
        out.write(data)

    info, payload = client.call(
        "tar_out", {"path": str(root), "root": str(root), "stream": True}, on_event=on_event
    )
    assert payload == b"" and info["bytes_written"] == 20 * MIB
    assert max(got) <= CHUNK_BYTES and len(got) > 20
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        member = tar.extractfile("big.bin")
        assert member is not None
        assert hashlib.sha256(member.read()).hexdigest() == sha


def test_a_bad_member_mid_upload_fails_at_once_and_the_stream_stays_usable(
    client: AgentClient, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        for name in ("ok.txt", "../escape"):
            info = tarfile.TarInfo(name)
            info.size = 4 * MIB
            tar.addfile(info, io.BytesIO(bytes(4 * MIB)))
        filler = tarfile.TarInfo("after.bin")
        filler.size = 40 * MIB
        tar.addfile(filler, io.BytesIO(bytes(40 * MIB)))
    with (tmp_path / "bad.tar").open("rb") as source, pytest.raises(AgentInvalid, match=r"'\.\.'"):
        client.call("tar_in", {"dest": str(root), "root": str(root)}, source, timeout=60)
    assert not (tmp_path / "escape").exists() and not (root / "after.bin").exists()
    assert client.call("file_list", {"path": str(root), "root": str(root)}, timeout=10)[0]


def test_an_upload_to_an_op_that_reads_none_is_refused(client: AgentClient) -> None:
    with pytest.raises(Exception, match="unknown op"):
        client.call("file_list", {"path": "/"}, io.BytesIO(b"x" * 100), timeout=10)
