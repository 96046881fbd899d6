"""The host's /proc, read in one place."""

from __future__ import annotations


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (``fields[0]`` is the state,
    field N of proc(5) is ``fields[N - 3]``), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
