"""Read a stopped VM workspace's ext4 disk on the host without mounting it or writing files.

The image is the guest's own: root in the guest can put any bytes in it, so nothing in it is
trusted. ``debugfs`` (user space, catastrophic mode: no bitmaps) only ever prints to a pipe.
Directories are listed with ``ls -l`` (which escapes odd bytes in names, so one entry is one
line) and files read with ``cat <inode>``, by inode number, walking a path one entry at a
time: a crafted name (``..``, one holding ``/`` or a newline, a duplicate), a directory
linked into itself or a symlink can never steer a read, let alone a write, on the host (an
earlier ``rdump`` of the whole image could be made to write anywhere, and to fill the disk).
Each tool call has one time limit and one budget for listings and paths; debugfs runs with
``RLIMIT_FSIZE`` 0 and bounded memory and CPU (a crafted superblock can make it allocate
the size of the image), and a line that does not parse is an error. The image root is
/workspace (its ``lost+found`` is left out).
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StateError, ValidationError
from ..guest.files import MAX_LIST_ENTRIES, MAX_LIST_PATH_BYTES
from ..guest.paths import relative

ROOT_INODE = 2
# `ls -l`: inode, mode, (type), uid, gid, size, date, time, name. debugfs writes every byte
# of a name below 32 or from 127 up, and a backslash, as \xHH: one entry is one line.
LS_LINE = re.compile(r" *(\d+) +([0-7]+) +\(\d+\) +-?\d+ +-?\d+ +(\d+) +\S+ +\S+ (.*)")
ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
FAST_LINK = re.compile(r'Fast link dest: "(.*)"')
TIMEOUT_SECONDS = 120.0  # for a whole tool call, however many debugfs runs it takes
MAX_CALL_BYTES = 32 * 1024 * 1024  # of directory listings, per tool call
DEBUGFS_MEMORY = 1024 * 1024 * 1024  # a crafted superblock can make it allocate the image


def parts_of(guest_path: str) -> list[str]:
    """``/workspace/a/b`` (normalised) → ``["a", "b"]``."""
    return [p for p in relative(guest_path).split("/") if p]


@dataclass(frozen=True)
class Entry:
    name: str
    inode: int
    mode: int
    size: int

    @property
    def kind(self) -> str:
        if stat.S_ISLNK(self.mode):
            return "symlink"
        if stat.S_ISDIR(self.mode):
            return "directory"
        if stat.S_ISREG(self.mode):
            return "file"
        return "special"


ROOT = Entry("", ROOT_INODE, stat.S_IFDIR | 0o755, 0)


def _confine() -> None:  # in the child: pipes only, bounded memory and CPU
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (DEBUGFS_MEMORY, DEBUGFS_MEMORY))
    cpu = int(TIMEOUT_SECONDS)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))


class DiskImage:
    def __init__(self, image: Path) -> None:
        """One per tool call: the time and listing budgets are the call's."""
        self.image = image
        self.deadline = time.monotonic() + TIMEOUT_SECONDS
        self.budget = MAX_CALL_BYTES

    def _debugfs(self, request: str, limit: int) -> bytes:
        """stdout of one debugfs request, cut at ``limit`` bytes (the rest is not read)."""
        out, err = bytearray(), bytearray()
        deadline = self.deadline
        with (
            subprocess.Popen(
                ["debugfs", "-c", "-R", request, str(self.image)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_confine,  # noqa: PLW1509 - setrlimit only, no locks taken
            ) as proc,
            selectors.DefaultSelector() as sel,
        ):
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, (out, limit))
            sel.register(proc.stderr, selectors.EVENT_READ, (err, 4096))
            while sel.get_map() and len(out) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    proc.kill()
                    raise StateError("reading the workspace disk took too long")
                for key, _ in sel.select(timeout=left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buffer, cap = key.data
                    buffer += chunk[: max(0, cap - len(buffer))]  # the rest is dropped
            early = len(out) >= limit
            if early:
                proc.kill()  # enough was read: nothing more is wanted
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:  # pipes closed, yet it runs on
                proc.kill()
                raise StateError("reading the workspace disk took too long") from exc
        if code < 0 and not early:  # e.g. SIGXFSZ: it tried to write a file
            raise StateError(f"cannot read the workspace disk: debugfs ended by signal {-code}")
        for line in err.decode("utf-8", "replace").splitlines():
            if line and not line.startswith("debugfs "):  # the version banner
                raise StateError(f"cannot read the workspace disk: {line[:300]}")
        return bytes(out[:limit])

    def listdir(self, directory: Entry) -> list[Entry]:
        raw = self._debugfs(f"ls -l <{directory.inode}>", self.budget + 1)
        if len(raw) > self.budget:
            raise StateError("the workspace disk holds more directory entries than can be listed")
        self.budget -= len(raw)
        entries = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            match = LS_LINE.fullmatch(line.decode("ascii", "replace"))
            if match is None:
                raise StateError("the workspace disk holds a malformed directory entry")
            inode, mode, size, shown = match.groups()
            name = ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), shown.encode("ascii"))
            if name in (b".", b"..") or b"/" in name or b"\0" in name:
                continue  # never a name a path can go through
            text = os.fsdecode(name)  # odd bytes as surrogates, as the live list has them
            entries.append(Entry(text, int(inode), int(mode, 8), int(size)))
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise StateError("the workspace disk holds a directory with duplicate names")
        return sorted(entries, key=lambda e: e.name)

    def lookup(self, parts: list[str]) -> Entry:
        """The entry at /workspace/<parts>; no symlink is ever gone through."""
        entry = ROOT
        for index, part in enumerate(parts):
            if entry.kind == "symlink":
                raise ValidationError(
                    f"refusing to go through a symlinked directory: {parts[index - 1]!r}"
                )
            if entry.kind != "directory":
                raise ValidationError(f"not a directory: {parts[index - 1]!r}")
            found = [e for e in self.listdir(entry) if e.name == part]
            if not found or (entry.inode == ROOT_INODE and part == "lost+found"):
                raise ValidationError(
                    f"workspace path does not exist: /workspace/{'/'.join(parts)}"
                )
            entry = found[0]
        return entry

    def read(self, entry: Entry, max_bytes: int) -> bytes:
        return self._debugfs(f"cat <{entry.inode}>", max_bytes)

    def link_target(self, entry: Entry) -> str:
        shown = os.fsdecode(self._debugfs(f"stat <{entry.inode}>", 64 * 1024))
        fast = FAST_LINK.search(shown)
        if fast is not None:
            return fast.group(1)
        return os.fsdecode(self.read(entry, 4096))

    def entries(self, guest_path: str, recursive: bool) -> list[dict[str, Any]]:
        """The live file list's entries for /workspace/<parts>, read from the image."""
        top = self.lookup(parts_of(guest_path))
        if top.kind == "special":
            raise ValidationError(f"{guest_path} is a special file, not a file")
        pending = [(guest_path, top)] if top.kind == "directory" else []
        found = [] if pending else [(guest_path, top)]
        seen: set[int] = set()  # a crafted image may link a directory into itself
        path_bytes = 0
        while pending and len(found) < MAX_LIST_ENTRIES and path_bytes < MAX_LIST_PATH_BYTES:
            where, directory = pending.pop()
            if directory.inode in seen:
                continue
            seen.add(directory.inode)
            for child in self.listdir(directory):
                if directory.inode == ROOT_INODE and child.name == "lost+found":
                    continue
                if child.kind == "special" or len(found) >= MAX_LIST_ENTRIES:
                    continue
                child_path = f"{where.rstrip('/')}/{child.name}"
                path_bytes += len(child_path)
                found.append((child_path, child))
                if recursive and child.kind == "directory":
                    pending.append((child_path, child))
        return [
            {
                "path": where,
                "artifact_type": entry.kind,
                "size_bytes": entry.size if entry.kind == "file" else 0,
                "link_target": self.link_target(entry) if entry.kind == "symlink" else None,
            }
            for where, entry in sorted(found, key=lambda item: item[0])
        ]
