"""Run each request on an idle thread, starting a new thread only when none is idle.

Requests stay concurrent (a long exec never holds up a file read), but a steady stream of
requests reuses threads: starting a thread costs about 1.4 ms inside gVisor, handing work to
an idle one about 0.2 ms. Idle threads end after a while, so a burst leaves nothing behind.
"""

from __future__ import annotations

import queue
import sys
import threading

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

IDLE_SECONDS = 60.0


class Workers:
    def __init__(self, name: str, idle_seconds: float = IDLE_SECONDS) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._tasks: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a task and not yet promised one

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that idle thread will take this task
        self._tasks.put((func, args))
        if start:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                func, args = self._tasks.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody promised us a task: leave
                        self._idle -= 1
                        return
                continue  # a task was promised to us a moment ago: take it
            try:
                func(*args)
            except Exception as exc:  # tasks report their own failures; this is a last resort
                sys.stderr.write(f"{self._name}: task failed: {exc!r}\n")
            del func, args  # an idle thread must not keep a request's data alive
            with self._lock:
                self._idle += 1
