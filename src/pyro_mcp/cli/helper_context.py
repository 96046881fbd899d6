"""Is a caller of the CLI helper in the helper's own security context?

The helper runs commands for callers of the same user only, and only for those that could
have run the command themselves with the same reach: a same-user process confined by
namespaces, a chroot, seccomp, no_new_privs (and so Landlock), fewer capabilities, other
groups, other resource limits, another cgroup or niceness must not get its command run
outside its confinement. Any difference, or anything unreadable, means "no": the caller
then runs the command in its own process.
"""

from __future__ import annotations

import os

NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
STATUS_FIELDS = (
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
)


def _status(pid: int | str) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def mismatch(pid: int) -> str | None:
    """Why the process ``pid`` is not in our security context, or None when it is."""
    if pid <= 0:
        return "the caller's process is not visible"
    try:
        for ns in NAMESPACES:
            if os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"):
                return f"another {ns} namespace"
        if os.readlink(f"/proc/{pid}/root") != os.readlink("/proc/self/root"):
            return "another root directory"
        theirs, ours = _status(pid), _status("self")
        for field in STATUS_FIELDS:
            if theirs.get(field) != ours.get(field):
                return f"another {field}"
        for what in ("limits", "cgroup"):
            if _read(f"/proc/{pid}/{what}") != _read(f"/proc/self/{what}"):
                return f"other {what}"
        if os.getpriority(os.PRIO_PROCESS, pid) != os.getpriority(os.PRIO_PROCESS, 0):
            return "another niceness"
    except OSError as exc:
        return f"cannot inspect the caller ({exc.strerror})"
    return None


def umask_of(pid: int) -> int:
    """The caller's umask (applied to the command's child), 0o022 if unknown."""
    try:
        return int(_status(pid).get("Umask", "0022"), 8)
    except (OSError, ValueError):
        return 0o022
