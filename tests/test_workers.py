"""The worker pool behind the guest agent and the supervisor (pure logic, no sandbox)."""

from __future__ import annotations

import threading
import time

import pytest

from pyro_mcp.guest.workers import Workers


def _pool_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_sequential_tasks_reuse_one_thread() -> None:
    workers = Workers("test-reuse")
    seen: list[int] = []
    for _ in range(20):
        done = threading.Event()
        workers.submit(lambda d=done: (seen.append(threading.get_ident()), d.set()))
        assert done.wait(5)
        deadline = time.monotonic() + 5
        while workers._idle != 1 and time.monotonic() < deadline:  # back to idle
            time.sleep(0.001)
    assert len(set(seen)) == 1
    assert len(_pool_threads("test-reuse")) == 1


def test_blocked_tasks_never_hold_up_new_ones() -> None:
    workers = Workers("test-concurrent")
    release = threading.Event()
    started = threading.Semaphore(0)
    for _ in range(3):
        workers.submit(lambda: (started.release(), release.wait(5)))
    for _ in range(3):
        assert started.acquire(timeout=5), "a task waited for another one to finish"
    quick = threading.Event()
    workers.submit(quick.set)
    assert quick.wait(5)
    release.set()


def test_idle_threads_end_and_a_failing_task_keeps_the_pool_working(
    capsys: pytest.CaptureFixture[str],
) -> None:
    workers = Workers("test-idle", idle_seconds=0.05)

    def boom() -> None:
        raise RuntimeError("hostile task")

    workers.submit(boom)
    done = threading.Event()
    workers.submit(done.set)
    assert done.wait(5)
    deadline = time.monotonic() + 5
    while _pool_threads("test-idle") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _pool_threads("test-idle")
    assert "hostile task" in capsys.readouterr().err
    again = threading.Event()
    workers.submit(again.set)
    assert again.wait(5)
