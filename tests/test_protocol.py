"""The framed agent protocol, and the guest's command runner run directly on the host.

``run_command`` is plain Python, so its timeout, process-group kill, output bounds and
streaming are tested here for real, without booting a sandbox.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time

import pytest

from pyro_mcp.guest.execution import run_command
from pyro_mcp.guest.protocol import (
    HEADER,
    MAX_DATA,
    MAX_JSON,
    FrameTooLarge,
    ProtocolError,
    encode,
    read_frame,
    split_output,
)


class TrickleStream(io.RawIOBase):
    """Hands out at most one byte per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.data[self.pos : self.pos + 1]
        self.pos += len(chunk)
        return chunk


def frame(raw_json: bytes, data: bytes = b"") -> bytes:
    return HEADER.pack(len(raw_json), len(data)) + raw_json + data


# -- framing -----------------------------------------------------------------------------


def test_round_trip_keeps_message_and_data() -> None:
    message = {"id": 7, "op": "exec", "args": {"command": "echo ü", "n": [1, None, True]}}
    payload = bytes(range(256)) * 3
    stream = io.BytesIO(encode(message, payload) + encode({"id": 8, "ok": True}))
    assert read_frame(stream) == (message, payload)
    assert read_frame(stream) == ({"id": 8, "ok": True}, b"")
    with pytest.raises(ProtocolError):
        read_frame(stream)


def test_round_trip_over_a_stream_that_returns_one_byte_at_a_time() -> None:
    message = {"id": 1, "event": "stdout"}
    assert read_frame(TrickleStream(encode(message, b"hello\n"))) == (message, b"hello\n")


def test_header_is_two_big_endian_lengths() -> None:
    encoded = encode({"a": 1}, b"xyz")
    json_len, data_len = HEADER.unpack(encoded[: HEADER.size])
    assert (json_len, data_len) == (len(b'{"a":1}'), 3)
    assert encoded[HEADER.size :] == b'{"a":1}xyz'


@pytest.mark.parametrize(
    ("json_len", "data_len"), [(MAX_JSON + 1, 0), (10, MAX_DATA + 1), (2**32 - 1, 2**32 - 1)]
)
def test_oversized_frame_is_rejected_before_reading_it(json_len: int, data_len: int) -> None:
    # Only the header is there: a reader that trusted the lengths would fail with "closed".
    with pytest.raises(ProtocolError, match="frame too large"):
        read_frame(io.BytesIO(HEADER.pack(json_len, data_len)))


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\x00\x00", encode({"id": 1})[:-2], encode({"id": 1}, b"data")[:-1]],
    ids=["empty", "partial-header", "partial-json", "partial-data"],
)
def test_eof_raises_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError, match="stream closed"):
        read_frame(io.BytesIO(raw))


@pytest.mark.parametrize(
    "raw_json",
    [b"{nope", b"[1, 2]", b'"text"', b"\xff\xfe{}"],
    ids=["bad-syntax", "array", "string", "bad-utf8"],
)
def test_malformed_json_raises_protocol_error(raw_json: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed frame"):
        read_frame(io.BytesIO(frame(raw_json)))


def test_encode_rejects_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        encode({"data": b"bytes are not JSON"})


# -- run_command on the host ---------------------------------------------------------------


def run(command: str, emit=None, **args: object) -> dict:
    events: list[tuple[str, bytes]] = []
    reply, data = run_command(
        {"command": command, **args}, emit or (lambda k, c: events.append((k, c)))
    )
    encode({"id": 1, "ok": True, "result": reply}, data)  # what the agent sends fits a frame
    result = split_output(reply, data)
    result["_events"] = events
    return result


def test_exit_code_and_output_pass_through() -> None:
    result = run("echo out; echo err >&2; exit 3")
    assert result["exit_code"] == 3
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["timed_out"] is False
    assert result["stdout_truncated"] is False
    assert result["stdout_dropped_bytes"] == 0


def test_command_killed_by_a_signal_reports_128_plus_signal() -> None:
    assert run("kill -TERM $$")["exit_code"] == 128 + 15


def test_command_runs_with_the_requested_cwd_and_env(tmp_path) -> None:
    result = run("pwd; echo $GREETING", cwd=str(tmp_path), env={"GREETING": "hi"})
    assert result["stdout"] == f"{tmp_path}\nhi\n"


def test_timeout_returns_124_keeps_partial_output_and_notes_it() -> None:
    started = time.monotonic()
    result = run("echo before; sleep 60; echo after", timeout_seconds=1)
    elapsed = time.monotonic() - started
    assert result["exit_code"] == 124
    assert result["timed_out"] is True
    assert result["stdout"] == "before\n"
    assert result["stderr"].endswith("command timed out after 1s\n")
    assert elapsed < 5, f"a 1 s timeout took {elapsed:.1f}s"


def test_fractional_timeout_is_named_as_given() -> None:
    result = run("sleep 30", timeout_seconds=0.5)
    assert result["exit_code"] == 124
    assert "command timed out after 0.5s" in result["stderr"]


def live_members(pgid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split(None, 3) for line in out.splitlines()]
    # Zombies are dead; they linger only until init reaps them (this host's PID 1 is slow to).
    return [" ".join(r) for r in rows if int(r[1]) == pgid and not r[2].startswith("Z")]


def test_timeout_kills_the_whole_process_group() -> None:
    # $$ is the shell run_command started in a new session, so it is also the group id.
    result = run("echo $$; sh -c 'sleep 60 & sleep 60'", timeout_seconds=1)
    assert result["exit_code"] == 124
    pgid = int(result["stdout"].split()[0])
    deadline = time.monotonic() + 2
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL is asynchronous for the grandchildren
    assert live_members(pgid) == [], "processes survived the timeout"


def test_background_child_holding_the_pipes_does_not_block_the_result() -> None:
    started = time.monotonic()
    result = run("echo $$; sleep 30 & echo done")
    try:
        assert result["exit_code"] == 0
        assert result["stdout"].splitlines()[1] == "done"
        assert time.monotonic() - started < 5
    finally:
        os.killpg(int(result["stdout"].split()[0]), 9)


def test_output_is_bounded_and_dropped_bytes_are_counted() -> None:
    command = "head -c 1000 /dev/zero | tr '\\0' a; head -c 30 /dev/zero >&2"
    result = run(command, max_output_bytes=100)
    assert result["stdout"] == "a" * 100
    assert result["stdout_truncated"] is True
    assert result["stdout_dropped_bytes"] == 900
    assert len(result["stderr"]) == 30
    assert result["stderr_truncated"] is False
    assert result["stderr_dropped_bytes"] == 0


def test_streaming_emits_each_stream_separately_and_in_order() -> None:
    result = run("echo one; echo two >&2; sleep 0.2; echo three", stream=True)
    events = result["_events"]
    stdout = b"".join(c for k, c in events if k == "stdout")
    stderr = b"".join(c for k, c in events if k == "stderr")
    assert stdout == b"one\nthree\n"
    assert stderr == b"two\n"
    assert {k for k, _ in events} == {"stdout", "stderr"}
    # The final result still carries the whole output.
    assert (result["stdout"], result["stderr"]) == ("one\nthree\n", "two\n")


def test_streaming_happens_while_the_command_runs() -> None:
    seen: list[tuple[float, bytes]] = []
    started = time.monotonic()
    run_command(
        {"command": "echo early; sleep 1; echo late", "stream": True},
        lambda kind, chunk: seen.append((time.monotonic() - started, chunk)),
    )
    first = next(t for t, c in seen if b"early" in c)
    last = next(t for t, c in seen if b"late" in c)
    assert last - first >= 0.8, seen


def test_timeout_note_is_streamed_too() -> None:
    result = run("sleep 30", timeout_seconds=0.3, stream=True)
    assert ("stderr", b"command timed out after 0.3s\n") in result["_events"]


def test_no_events_without_stream() -> None:
    assert run("echo quiet")["_events"] == []


def test_result_is_json_serialisable() -> None:
    result = run("printf '\\377 not utf-8'")
    del result["_events"]
    json.dumps(result)
    assert result["stdout"] == "\ufffd not utf-8"


def test_control_bytes_travel_as_data_and_never_outgrow_a_frame() -> None:
    # 1 MiB of NULs kept: as JSON text that was 6 MiB, over the frame limit (issue 10, item 4).
    reply, data = run_command({"command": "head -c 2000000 /dev/zero"}, lambda k, c: None)
    frame_bytes = encode({"id": 1, "ok": True, "result": reply}, data)
    assert len(frame_bytes) < 1024 * 1024 + 4096
    assert reply["stdout_bytes"] == 1024 * 1024 and reply["stdout_truncated"] is True
    assert data == b"\0" * (1024 * 1024)


def test_encode_refuses_a_frame_the_peer_would_reject() -> None:
    with pytest.raises(FrameTooLarge, match="message too large for one frame"):
        encode({"text": "\0" * (MAX_JSON // 6 + 1)})


def test_output_written_while_the_reader_was_busy_is_kept() -> None:
    # The reader is held up (a slow consumer of the first chunk, like a loaded host) while
    # the command writes its last lines and exits: they are in the pipes and must be read,
    # however long ago the previous data came (issue 10, item 5).
    calls: list[bytes] = []

    def slow_emit(kind: str, chunk: bytes) -> None:
        calls.append(chunk)
        if len(calls) == 1:
            time.sleep(1.0)

    result = run("echo s; sleep 0.3; echo MARK; echo ERR >&2", emit=slow_emit, stream=True)
    assert (result["stdout"], result["stderr"]) == ("s\nMARK\n", "ERR\n")
